"""Pydantic models for every file a user edits, and loaders whose errors name file, line and field.

The models are the documentation: every field has a description, unknown keys are refused.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import LineString, Polygon

from pipeline.errors import ConfigError
from pipeline.types import AOI, EgressRoad, Zone

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
DEFAULT_SCENARIO = PROJECT_ROOT / "seeds" / "syria-drawdown-2024-12.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- AOI files

LonLat = tuple[float, float]


def _check_lonlat(points: list[LonLat]) -> list[LonLat]:
    for lon, lat in points:
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"coordinate ({lon}, {lat}) is not lon/lat in degrees (lon -180..180, lat -90..90)")
    return points


def _polygon(points: list[LonLat]) -> Polygon:
    poly = Polygon(points)
    if not poly.is_valid or poly.area <= 0:
        raise ValueError("polygon is not valid (self-intersecting or zero area); list corners in order")
    return poly


class ZoneFile(Strict):
    name: str = Field(description="Zone name, unique in the AOI (e.g. 'west_apron').")
    kind: Literal["runway", "apron", "vehicle_park", "pier", "water", "built", "vegetation", "other"] = Field(
        description="What the zone is; decides land cover in the simulator and which counts the diff reads."
    )
    polygon: list[LonLat] = Field(min_length=3, description="Outline corners as [lon, lat] pairs.")

    _lonlat = field_validator("polygon")(_check_lonlat)

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, v: list[LonLat]) -> list[LonLat]:
        _polygon(v)
        return v


class RoadFile(Strict):
    name: str = Field(description="Road name.")
    line: list[LonLat] = Field(
        min_length=2, description="Vertices as [lon, lat]; the FIRST vertex is at the base (outbound = away from it)."
    )

    _lonlat = field_validator("line")(_check_lonlat)


class AOIFile(Strict):
    name: str = Field(description="Short identifier used on the command line (e.g. 'khmeimim').")
    title: str = Field(description="Human-readable name shown in reports.")
    country: str = Field(default="", description="Country, for reports.")
    outline: list[LonLat] = Field(min_length=3, description="AOI outline corners as [lon, lat] pairs.")
    zones: list[ZoneFile] = Field(default_factory=list, description="Named zones inside the outline.")
    roads: list[RoadFile] = Field(default_factory=list, description="Egress roads, first vertex at the base.")

    _lonlat = field_validator("outline")(_check_lonlat)

    @field_validator("outline")
    @classmethod
    def _valid_outline(cls, v: list[LonLat]) -> list[LonLat]:
        poly = _polygon(v)
        minx, miny, maxx, maxy = poly.bounds
        if maxx - minx > 1.0 or maxy - miny > 1.0:
            raise ValueError("outline spans more than 1 degree; an AOI is a base, not a region")
        return v

    @model_validator(mode="after")
    def _unique_zone_names(self) -> AOIFile:
        names = [z.name for z in self.zones]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"zone names must be unique, repeated: {', '.join(dupes)}")
        return self

    def to_aoi(self) -> AOI:
        return AOI(
            name=self.name,
            title=self.title,
            country=self.country,
            outline=_polygon(self.outline),
            zones=tuple(Zone(z.name, z.kind, _polygon(z.polygon)) for z in self.zones),
            roads=tuple(EgressRoad(r.name, LineString(r.line)) for r in self.roads),
        )


# ---------------------------------------------------------------- default.yaml


class SourceConfig(Strict):
    kind: Literal["auto", "simulated", "sentinelhub", "files"] = Field(
        default="auto",
        description="Where scenes come from. 'auto': Sentinel Hub when credentials exist, else the simulator.",
    )
    profile: Literal["sentinelhub", "cdse"] = Field(
        default="cdse", description="Sentinel Hub endpoint profile: commercial Sentinel Hub or Copernicus CDSE."
    )
    sh_config_profile: str | None = Field(
        default=None, description="Profile name in sentinelhub-py's config.toml (None: its default profile)."
    )
    max_cloud: float = Field(default=80.0, ge=0, le=100, description="Skip acquisitions cloudier than this (%).")
    files_dir: str | None = Field(default=None, description="Folder of interchange GeoTIFFs for kind 'files'.")
    max_concurrency: int = Field(default=2, ge=1, le=16, description="Parallel Process API requests.")
    max_retries: int = Field(default=4, ge=0, le=20, description="Retries of a temporary download failure.")
    retry_backoff_s: float = Field(
        default=2.0, ge=0, description="First retry delay (s); grows each attempt (x3 in sentinelhub-py's retries)."
    )
    timeout_s: float = Field(default=120.0, gt=0, description="HTTP timeout of one request (seconds).")


class DetectorConfig(Strict):
    name: Literal["learned", "classical"] = Field(
        default="learned", description="'learned' (committed PyTorch weights) or 'classical' (heuristic baseline)."
    )
    weights: str = Field(
        default="models/weights/basewatch_centernet.pt",
        description="Checkpoint of the learned detector, relative to the project root or absolute.",
    )
    score_threshold: float = Field(default=0.4, ge=0, le=1, description="Minimum detection score kept.")
    window: int = Field(default=512, ge=64, le=4096, description="Inference window size (pixels).")
    overlap: int = Field(default=32, ge=0, le=512, description="Overlap between windows (pixels).")
    batch_size: int = Field(default=4, ge=1, le=64, description="Windows per forward pass.")
    norm_neighbourhood: int = Field(
        default=0, ge=0, le=4096, description="Side (px) of the neighbourhood whose median and spread normalise "
        "each pixel of the learned detector's input (models/centernet.py InputNorm); 0 = one median and spread per "
        "inference window. 256 keeps objects on ground much brighter than the window's usual visible and cuts "
        "false aircraft on real scenes, but the alert rules are tuned to 0 (MODEL_CARD): for reviews, not runs.")
    precision: Literal["float32", "bfloat16"] = Field(
        default="float32", description="Arithmetic of the networks' convolutions (detector, verifiers, heading "
        "network): bfloat16 (torch autocast) runs them two to three times as fast on CPUs with AVX-512 BF16 or AMX, "
        "with scores moving by up to ~0.01 against thresholds calibrated in float32 (MODEL_CARD).")
    tta_views: Literal[1, 4, 8] = Field(
        default=1, description="Test-time augmentation: average the learned detector over this many flipped / "
        "transposed views of each window (1 = off). Steadier scores on marginal objects at 4 or 8 x the time: "
        "for reviews rather than scheduled runs (models/tta.py).")
    heading_views: Literal[1, 4, 8] = Field(
        default=1, description="Read moving vehicles' headings as the mean over this many flipped views, for each "
        "window with a vehicle peak (1 = off). Detections and scores stay the single view's, so counts and "
        "surges do not move; only headings (and so column directions) do. Costs up to this many x the time on "
        "such windows (models/tta.py heading_over_views).")
    heading_weights: str | None = Field(
        default=None, description="Heading network (models/heading_net.py) that re-reads each moving vehicle's "
        "heading from a 15 px crop around its detection; null = the detector's own heading (or heading_views). "
        "Detections and scores are unchanged; it replaces heading_views when set.")
    verifier_weights: str | None = Field(
        default=None, description="Verifier (models/verify_net.py) that takes a second look at every peak of its "
        "class (large aircraft) scoring at least its training floor, from a 25 px crop around it, and keeps the peak "
        "only when its probability reaches the verifier's calibrated threshold; the kept aircraft then report that "
        "probability as their score. null = the detector's scores and thresholds alone.")
    verifier_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Verifier probability that keeps a peak; None = the threshold "
        "calibrated into the verifier's checkpoint.")
    vehicle_verifier_weights: str | None = Field(
        default=None, description="Verifier (models/verify_net.py) for moving-vehicle peaks, as verifier_weights is "
        "for large aircraft: peaks from its floor up are kept when its probability reaches its threshold and report "
        "that probability; rejected peaks scoring at least column_candidate_score stay column candidates. "
        "null = the detector's vehicle scores and threshold.")
    vehicle_verifier_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Vehicle verifier probability that keeps a peak; None = the threshold "
        "calibrated into its checkpoint.")
    vehicle_verifier_floor: Annotated[float, Field(ge=0, le=1)] | Literal["detector"] | None = Field(
        default=None, description="Lowest detector score of a moving-vehicle peak shown to the vehicle verifier; "
        "None = the floor it was trained from (in its checkpoint; it may then admit peaks fainter than the "
        "detector's own threshold); 'detector' = the detector's vehicle threshold, so the verifier only removes "
        "trucks the detector alone would report (a filter: it cannot add a false one).")
    vehicle_verifier_faint_floor: float | None = Field(
        default=None, ge=0, le=1, description="With the vehicle verifier as a filter (vehicle_verifier_floor "
        "'detector'): moving-vehicle peaks from this score up to the detector's threshold are shown to it as well "
        "and kept only when its probability reaches vehicle_verifier_faint_threshold (stricter than its own, "
        "because such peaks are mostly clutter); None = fainter peaks are never shown to it (MODEL_CARD_verifier).")
    vehicle_verifier_faint_threshold: float = Field(
        default=0.95, ge=0, le=1, description="Vehicle verifier probability that keeps a peak below the detector's "
        "threshold (vehicle_verifier_faint_floor).")
    threads: int = Field(default=0, ge=0, le=64, description="Torch CPU threads; 0 = number of cores.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where the network runs: auto = a CUDA GPU when torch sees one, else the CPU "
        "(results agree to float rounding; the committed weights were measured on the CPU).")
    class_thresholds: dict[str, float] | None = Field(
        default=None,
        description="Per-class score thresholds of the learned detector (e.g. {vehicle: 0.5}); None: the thresholds "
        "calibrated into the checkpoint (MODEL_CARD.md), or score_threshold for a checkpoint without them.",
    )
    column_candidate_score: float | None = Field(
        default=0.25, ge=0, le=1, description="Moving-vehicle peaks between this and the vehicle threshold are "
        "candidates that only count when they extend a column (columns.candidate_gap_m); None = no candidates.")
    candidate_verifier_floor: float = Field(
        default=0.0, ge=0, le=1, description="A moving-vehicle peak the vehicle verifier rejects stays a column "
        "candidate only when its probability reaches this; 0 = every reject scoring column_candidate_score. Why: "
        "rejects far under the verifier's threshold are clutter, and a chain of them behind two real trucks on a "
        "sand track made an 11-vehicle 'column' (MODEL_CARD_verifier).")


class ColumnsConfig(Strict):
    max_gap_m: float = Field(
        default=200.0, gt=0, description="Largest gap between consecutive vehicles (bridges one missed truck)."
    )
    heading_tolerance_deg: float = Field(default=35.0, gt=0, le=90, description="Heading spread within a column.")
    min_vehicles: int = Field(default=3, ge=2, description="Fewest moving vehicles that make a column.")
    road_buffer_m: float = Field(default=60.0, ge=0, description="Distance from an egress road counted as on it.")
    candidate_gap_m: float = Field(
        default=120.0, ge=0, description="Faint vehicle peaks (detector.column_candidate_score) this close to a "
        "confident moving truck, on its line of travel and on an egress road, join its column; 0 = never.")
    candidate_axis_deg: float = Field(default=15.0, gt=0, le=90,
                                      description="How far off the line of travel a faint peak may sit.")
    single_truck_candidates: int = Field(
        default=0, ge=0, description="A chain of faint candidates behind one sure truck is a column too when at "
        "least this many of them read, on their own, the truck's direction within heading_tolerance_deg; 0 = two "
        "sure trucks are always needed. Why: olive trucks on a grey road can leave one truck of a column above the "
        "detector's threshold and the rest just under it. Tried at 3 (29 Nov): 136 replays 110 -> 113 matching "
        "everything, but one withdrawal lost and false columns doubled (the heading network reads road edges along "
        "the road), so off.")
    road_axis_deg: float = Field(
        default=50.0, ge=0, le=90, description="On an egress road the road gives the line of travel: two trucks on "
        "it within max_gap_m, each heading within this of the road's axis and the same way along it (or one slow, "
        "see flip_speed_mps), join one column even when their headings differ by more than heading_tolerance_deg, "
        "and faint candidates are looked for along the road; 0 = headings only.")
    candidate_votes: bool = Field(
        default=False, description="Whether admitted faint candidates vote on their column's direction. They repeat "
        "the heading of the truck that vouched for them, so their votes only multiply that truck's: a truck read "
        "backwards outvoted its column through the candidates it admitted. True: the rule before 27 Nov.")
    flip_speed_mps: float = Field(
        default=12.0, ge=0, description="A truck estimated slower than this may have its direction read backwards "
        "(a band offset of about a pixel): it still links to a column on its axis, which the faster trucks orient; "
        "0 = never.")
    unsure_heading_deg: float = Field(
        default=0.0, ge=0, le=180, description="With the heading network (detector.heading_weights): a confident "
        "moving vehicle whose network heading and the detector's own heading differ by more than this is treated by "
        "the column stage as a faint candidate: it joins a column only where two sure trucks vouch for it, takes "
        "the column's heading and cannot vouch or vote. Why: the network reads a direction into any crop, road "
        "edges included, so false detections on a road agree with each other and with a real truck there; the "
        "detector's own heading scatters on them. Detections and counts are unchanged. 0 = off.")
    contested_ratio: float = Field(
        default=0.0, ge=0, description="A column on an egress road gets direction unknown when confident trucks "
        "heading the other way along that road within max_gap_m of its members, in no column of their own, weigh "
        "(by score) at least this fraction of the members agreeing with it: a column is rarely read backwards whole. "
        "Meant for the heading network (detector.heading_weights), whose reversed trucks agree and chain; 0.4 "
        "removed 2 of its first training's 5 false withdrawals over seeds 1-32 (README). 0 = off (default).")


class VesselsConfig(Strict):
    """Ships moored at an AOI's piers (pipeline/vessels.py ``vessels_in_aoi``), for AOIs with water and pier zones."""

    enabled: bool = Field(default=True, description="Count ships at the piers of AOIs that have water zones.")
    ndwi_water: float = Field(default=0.15, ge=-1, le=1, description="NDWI above which a pixel is water (a hazy "
                              "scene's own land/water split may set it lower).")
    min_length_m: float = Field(default=40.0, ge=0, description="Shorter runs along a pier (boats) are not ships.")
    berth_contrast: float = Field(default=0.04, gt=0, description="Along a pier, B08 above the side's free-water "
                                  "level that marks a hull (raise it where a real pier's edge is uneven).")
    berth_m: float = Field(default=80.0, ge=0, description="A vessel within this of a pier zone is moored there "
                           "(counted in that pier's zone: what `asset_drawdown` of moored vessels reads).")

    def rule(self):
        from pipeline.vessels import VesselRule

        return VesselRule(ndwi_water=self.ndwi_water, min_length_m=self.min_length_m,
                          berth_contrast=self.berth_contrast)


class DiffConfig(Strict):
    baseline_window_days: int = Field(default=30, ge=1, description="History used for the baseline.")
    min_history: int = Field(default=2, ge=1, description="Fewest valid observations for a baseline.")
    min_zone_valid: float = Field(default=0.6, ge=0, le=1, description="Zone cloud-free fraction to count it.")
    surge_factor: float = Field(default=2.0, gt=1, description="Large aircraft >= factor x baseline is a surge ...")
    surge_sigma: float = Field(
        default=2.0, gt=0, description="... or >= baseline + sigma x max(sqrt(baseline), spread): a significant "
        "rise over a count that scatters like a Poisson count (a detector's steady false positives inflate the "
        "baseline, and a doubling of the inflated count is too much to ask) ...")
    surge_min_increase: int = Field(default=2, ge=1, description="... and always at least this many more aircraft.")
    surge_single_pass_increase: int | None = Field(
        default=4, ge=1, description="With only one valid earlier pass in the baseline window (min_history asks for "
        "more), an airlift surge is still raised when large aircraft rise by at least this many over that pass (and "
        "pass the usual threshold); its confidence is halved for the short history. Why: a run that starts just "
        "before an airlift, with an earlier pass clouded, otherwise cannot see transports arriving in numbers. "
        "None = surges need min_history passes, like every other baseline.")
    surge_min_score: float = Field(
        default=0.55, ge=0, le=1, description="Large aircraft scoring below this are left out of surge counts: "
        "marginal peaks (fighters, clutter) come and go between passes and hide a rise. Truth and labels, which have "
        "no score, always count. Applied when a scene is observed, so stored observations keep the value they were "
        "made with.")
    surge_not_falling: bool = Field(
        default=True, description="No airlift surge while the confident count is below the previous look's: a level "
        "already past its peak is a surge continuing or ending, and a short baseline (two or three passes) would "
        "re-raise it on one marginal aircraft (MODEL_CARD, bfloat16). False: the rule before 27 Nov.")
    drawdown_fraction: float = Field(default=0.6, gt=0, lt=1, description="Parked assets below this x baseline.")
    outbound_min_vehicles: int = Field(default=5, ge=1, description="Outbound vehicles that raise an event.")
    cooccurrence_days: int = Field(default=7, ge=1, description="Window in which events make a withdrawal.")
    cooccurrence_max_days: int = Field(
        default=14, ge=1, description="Passes clouded over (valid fraction under min_zone_valid) do not use up the "
        "co-occurrence window, which they may stretch up to this: a surge on the last clear pass and columns on the "
        "next clear one still co-occur.")
    moored_min_drop: float = Field(
        default=3.0, ge=0, description="Ships fewer than expected at the piers before a low count is a drop. Why: "
        "a base's ships rotate one at a time, and at 10 m a narrow hull (submarine, corvette) is missed now and "
        "then, so a count of 4-6 ships moves by one or two between passes; ships leaving for anchorages empty the "
        "piers. At 2, routine months gave false withdrawals in 2 of 16 replays (seeds 17-32).")
    min_parked_baseline: float = Field(
        default=3.0, ge=0, description="Parked assets a baseline needs before a drawdown can be judged."
    )
    mass_outbound_columns: int = Field(
        default=2, ge=1,
        description="Egress roads with outbound columns in one scene that alone indicate withdrawal activity.",
    )
    surge_corroborating_vehicles: int = Field(
        default=0, ge=0,
        description="Net outbound vehicles on egress roads that, too few for an outbound_columns event, still count "
        "as the departure beside an airlift surge in the same co-occurrence window. Why: at 10 m half of a column's "
        "trucks go unseen, so a 10-truck column often shows 3 or 4; an airlift with trucks leaving is what an "
        "analyst calls withdrawal. 0: off (the rule before 27 Nov).",
    )


class AlertsConfig(Strict):
    close_after_days: int = Field(default=15, ge=1, description="Close an alert not seen again for this long.")
    min_confidence: float = Field(default=0.2, ge=0, le=1, description="Events below this confidence stay silent.")
    severity: dict[str, Literal["low", "medium", "high"]] = Field(
        default_factory=lambda: {"withdrawal_activity": "high", "asset_drawdown": "medium",
                                 "airlift_surge": "medium", "outbound_columns": "low"},
        description="Event kinds that raise alerts, with their severity (one step lower under confidence 0.5).",
    )


class ReportConfig(Strict):
    chip_size_px: int = Field(default=96, ge=16, le=1024, description="Side of an evidence chip (pixels).")
    max_chips_per_alert: int = Field(default=6, ge=0, le=50, description="Evidence chips shown per alert.")


class ScheduleEntry(Strict):
    name: str = Field(description="Schedule name.")
    cron: str = Field(description="Cron expression (minute hour day month weekday), UTC.")
    aois: list[str] = Field(description="AOI names run on this schedule.")


class NotifyConfig(Strict):
    webhook_url: str | None = Field(
        default=None, description="POST new alerts here (env BASEWATCH_WEBHOOK_URL overrides)."
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for e-mail notifications.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection with STARTTLS.")
    mail_from: str | None = Field(default=None, description="Sender address.")
    mail_to: list[str] = Field(default_factory=list, description="Recipients.")
    max_attempts: int = Field(default=4, ge=1, le=20, description="Delivery attempts per tick.")
    retry_backoff_s: float = Field(default=2.0, ge=0, description="First delivery retry delay; doubles each attempt.")
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one webhook POST or SMTP session (seconds).")


class BasewatchConfig(Strict):
    data_dir: str = Field(default="./basewatch-data", description="Folder for cache, store and reports.")
    scenario: str = Field(
        default="seeds/syria-drawdown-2024-12.yaml",
        description="Scenario replayed by default: its sites, window and expectations.",
    )
    aois: list[str] = Field(
        default_factory=lambda: ["khmeimim", "tartus", "al_khadim"], description="AOIs a plain run covers."
    )
    source: SourceConfig = Field(default_factory=SourceConfig, description="Imagery source.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Detector.")
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig, description="Vehicle column grouping.")
    vessels: VesselsConfig = Field(default_factory=VesselsConfig, description="Vessels at piers.")
    diff: DiffConfig = Field(default_factory=DiffConfig, description="Baselines and change rules.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert rules.")
    report: ReportConfig = Field(default_factory=ReportConfig, description="Report options.")
    schedules: list[ScheduleEntry] = Field(default_factory=list, description="Scheduled runs.")
    notify: NotifyConfig = Field(default_factory=NotifyConfig, description="Notifications of new alerts.")

    def hash(self) -> str:
        """Stable short hash of the resolved config, stored with each run."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- seed scenarios


class PhaseFile(Strict):
    name: str = Field(description="Phase name (e.g. 'routine', 'drawdown').")
    start: date = Field(description="First day of the phase; it lasts until the next phase starts.")
    parked_aircraft: dict[str, int] = Field(
        default_factory=dict, description="Aircraft type -> number parked on aprons (e.g. {'An-124': 2})."
    )
    parked_vehicles: int = Field(default=0, ge=0, description="Trucks parked in vehicle parks / on piers.")
    outbound_columns: int = Field(default=0, ge=0, description="Columns leaving along egress roads per scene.")
    inbound_columns: int = Field(default=0, ge=0, description="Columns arriving along egress roads per scene.")
    vehicles_per_column: tuple[int, int] = Field(default=(6, 14), description="Min and max trucks in a column.")
    local_traffic: int = Field(default=4, ge=0, description="Isolated moving vehicles on roads per scene.")
    moored_vessels: int = Field(default=0, ge=0, description="Ships moored alongside the AOI's piers; from 3 up, "
                                "one more or fewer on some passes (ships come and go).")


class SiteFile(Strict):
    aoi: str = Field(description="AOI name (configs/aois/<name>.yaml).")
    first_pass: datetime = Field(description="A Sentinel-2 overpass time (UTC) over the site.")
    revisit_days: float = Field(default=5.0, gt=0, description="Days between simulated overpasses.")
    cloud_probability: float = Field(default=0.2, ge=0, le=1, description="Chance a scene has clouds.")
    clear_dates: list[date] = Field(
        default_factory=list, description="Dates rendered cloud-free (the passes public reports rest on)."
    )
    cloudy_dates: dict[date, float] = Field(
        default_factory=dict,
        description="Dates rendered with this cloud fraction (0-1), e.g. to hide a drawdown in a scenario test.",
    )
    phases: list[PhaseFile] = Field(min_length=1, description="Activity phases in date order.")

    @model_validator(mode="after")
    def _phases_sorted(self) -> SiteFile:
        starts = [p.start for p in self.phases]
        if starts != sorted(starts):
            raise ValueError("phases must be in date order")
        return self


class ExpectationFile(Strict):
    id: str = Field(description="Short identifier.")
    claim: str = Field(description="The reported claim, paraphrased.")
    aoi: str = Field(description="AOI the claim is about.")
    kind: str = Field(description="Alert kind that would confirm it (or 'no_abandonment').")
    start: date = Field(description="Earliest date it may be seen.")
    end: date = Field(description="Latest date it may be seen.")
    expect: Literal["present", "absent"] = Field(default="present", description="Whether the alert should fire.")
    max_confidence: float | None = Field(
        default=None, ge=0, le=1, description="If set, a present alert's confidence must not exceed this (clouds)."
    )


class SourceDocument(Strict):
    title: str
    publisher: str
    date: date
    path: str = Field(description="Where the document is kept (relative to the shared folder).")


class ScenarioFile(Strict):
    name: str = Field(description="Scenario identifier.")
    title: str = Field(description="Human-readable title.")
    source_document: SourceDocument | None = Field(default=None, description="The report it is distilled from.")
    start: date = Field(description="First day of the window.")
    end: date = Field(description="Last day of the window.")
    seed: int = Field(default=0, description="Master seed: same seed, same pixels.")
    sites: list[SiteFile] = Field(min_length=1, description="Sites replayed.")
    expectations: list[ExpectationFile] = Field(default_factory=list, description="Checkable claims.")

    @model_validator(mode="after")
    def _window(self) -> ScenarioFile:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


# ---------------------------------------------------------------- loading with good errors


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {where}: YAML syntax error: {problem}") from None
    return data, node


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line number."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key:
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
        if node is None:
            break
    return line


def _format_validation(path: Path, exc: ValidationError, node: yaml.Node | None) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = "".join(f"{'.' if i else ''}{p}" for i, p in enumerate(loc))
        line = _line_of(node, loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check the spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        where = f"line {line}: " if line else ""
        lines.append(f"{path}: {where}{field + ': ' if field else ''}{msg}")
    return "\n".join(lines)


def _load_model(path: Path, model: type[BaseModel]):
    data, node = _read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: line 1: expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc, node)) from None


def load_config(path: str | Path | None = None) -> BasewatchConfig:
    """Load default.yaml (or the given file)."""
    return _load_model(Path(path) if path else DEFAULT_CONFIG, BasewatchConfig)


def aoi_dir(config_path: str | Path | None = None) -> Path:
    base = Path(config_path).resolve().parent if config_path else DEFAULT_CONFIG.parent
    return base / "aois"


def read_aoi_file(path: str | Path) -> AOIFile:
    """An AOI file as written (lon/lat lists), checked; errors name file, line and field."""
    return _load_model(Path(path), AOIFile)


def load_aoi_file(path: str | Path) -> AOI:
    return read_aoi_file(path).to_aoi()


def aoi_path(name: str, config_path: str | Path | None = None) -> Path:
    """configs/aois/<name>.yaml, or ``name`` itself when it is the path of an AOI file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    path = aoi_dir(config_path) / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(list_aoi_names(config_path)) or "none"
        raise ConfigError(f"AOI '{name}' not found: no file {path} (known AOIs: {known})")
    return path


def load_aoi(name: str, config_path: str | Path | None = None) -> AOI:
    """Load configs/aois/<name>.yaml, or a path to an AOI file."""
    return load_aoi_file(aoi_path(name, config_path))


def list_aoi_names(config_path: str | Path | None = None) -> list[str]:
    return sorted(p.stem for p in aoi_dir(config_path).glob("*.yaml"))


def weights_or_none(text: str) -> str | None:
    """A weights path given on a command line, or None for 'none': the config's second-stage network switched off."""
    return None if text.lower() == "none" else text


def resolve_path(p: str | Path) -> Path:
    """A path from a config: absolute, relative to cwd if it exists there, else to the project root."""
    p = Path(p)
    if p.is_absolute() or p.exists():
        return p
    return PROJECT_ROOT / p


def load_scenario(path: str | Path | None = None) -> ScenarioFile:
    return _load_model(resolve_path(path) if path else DEFAULT_SCENARIO, ScenarioFile)
