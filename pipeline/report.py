"""The report folder of a run, rebuilt from the Store alone (no detection is recomputed).

``<data-dir>/reports/<run-id>/``: ``index.html`` (self-contained, offline: local PNGs, inline CSS, no script),
``alerts.json``, ``detections.geojson``, ``columns.geojson``, ``alerts.geojson`` (+ one GeoJSON per alert under
``alerts/``), ``aois.geojson`` (outlines, zones and egress roads, as ``basewatch aoi export`` writes them),
``observations.csv``, ``chips/*.png`` and ``plots/*.png``. The folder is built next to its final
place and swapped in, so a reader never sees half a report. ``<data-dir>/reports/latest`` is a relative symlink to
the newest run's folder; where symlinks are impossible it is a small folder whose ``index.html`` redirects there
and whose ``RUN_ID`` file names it.

Every string from configs or data reaches HTML through Jinja2 autoescaping; nothing is marked safe.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from shapely.geometry import MultiPoint, mapping

from pipeline.aoi_geojson import aoi_features
from pipeline.atomic import write_text_atomic
from pipeline.chips import Chip, cluster_points, render_chip, true_colour, window_around
from pipeline.config import BasewatchConfig, load_aoi
from pipeline.errors import BasewatchError, StoreError
from pipeline.geotiff import read_scene
from pipeline.objects import column_feature, feature_collection, object_feature, write_geojson
from pipeline.plots import overview_image, series_point, time_series_plot
from pipeline.types import AOI, Alert, ChangeEvent, Detection, Scene

log = logging.getLogger(__name__)

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
CSV_FIELDS = ("simulated", "aoi", "acquisition_id", "datetime", "sensor", "model", "valid_fraction", "cloud_cover",
              "large_aircraft", "large_aircraft_confident", "small_aircraft", "helicopter", "vehicle", "vessel",
              "outbound_columns", "outbound_vehicles", "inbound_columns", "inbound_vehicles", "events")


# ---------------------------------------------------------------- the alerts.json schema (shared with notify)


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def run_envelope(run) -> dict:
    """The alerts.json header: which run, whether its scenes were simulated, source and model."""
    return {"run_id": run.id, "simulated": bool(run.simulated), "source": run.source, "model": run.model}


def alert_record(alert: Alert, evidence: list[str] | None = None) -> dict:
    """One alert in the alerts.json schema (DESIGN.md); ``evidence`` = chip paths (relative to the report)."""
    return {
        "id": alert.id,
        "aoi": alert.aoi,
        "kind": alert.kind,
        "severity": alert.severity,
        "confidence": round(float(alert.confidence), 4),
        "status": alert.status,
        "first_seen": iso(alert.first_seen),
        "last_seen": iso(alert.last_seen),
        "acquisitions": list(alert.acquisitions),
        "baseline": alert.baseline,
        "current": alert.current,
        "evidence": list(evidence or []),
        "evidence_detections": list(alert.evidence),
    }


def sort_alerts(alerts: list[Alert]) -> list[Alert]:
    """Most severe first, then most confident, then newest."""
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), -a.confidence,
                                         -a.last_seen.timestamp(), a.aoi, a.kind))


def slug(text: str) -> str:
    """A file-name-safe version of an id (alert ids and acquisition ids contain ':' and '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80] or "x"


# ---------------------------------------------------------------- gathering from the store


@dataclass
class EvidencePair:
    """Before/after chips of one place for one alert."""

    before: Chip | None
    after: Chip
    centre: tuple[float, float]


@dataclass
class AlertView:
    alert: Alert
    record: dict
    pairs: list[EvidencePair] = field(default_factory=list)
    geojson: str = ""
    baseline_acquisition: str | None = None
    current_acquisition: str | None = None
    in_run: bool = True  # raised/updated by this run (else: still open from an earlier run)


@dataclass
class AcquisitionRow:
    acquisition_id: str
    when: datetime
    sensor: str
    valid_fraction: float
    cloud_cover: float | None
    counts: dict
    outbound_vehicles: int
    inbound_vehicles: int
    observed: bool
    events: list[str] = field(default_factory=list)  # what the diff concluded from this pass: "kind confidence"


@dataclass
class AOIView:
    name: str
    title: str
    country: str
    time_series: str | None = None
    overview: str | None = None
    overview_caption: str = ""
    rows: list[AcquisitionRow] = field(default_factory=list)
    alerts: list[AlertView] = field(default_factory=list)


def _aoi(name: str) -> AOI | None:
    try:
        return load_aoi(name)
    except BasewatchError as exc:
        log.warning("report: AOI %r has no config file any more (%s); drawn without zones", name, exc)
        return None


def _run_config(run) -> BasewatchConfig:
    try:
        return BasewatchConfig.model_validate(run.config)
    except Exception:  # noqa: BLE001 - an old run's config may not validate with today's models
        log.warning("report: run %s config does not validate with this basewatch; using defaults", run.id)
        return BasewatchConfig()


class _Scenes:
    """Scene GeoTIFFs by acquisition, read once each (and their true-colour rendering)."""

    def __init__(self, store):
        self.store = store
        self._cache: dict[tuple[str, str], tuple[Scene, object] | None] = {}

    def get(self, aoi: str, acquisition_id: str) -> tuple[Scene, object] | None:
        key = (aoi, acquisition_id)
        if key not in self._cache:
            rec = self.store.acquisition(aoi, acquisition_id)
            try:
                scene = read_scene(rec.scene_path) if rec else None
            except BasewatchError as exc:
                log.warning("report: scene of %s/%s unreadable (%s); no chips for it", aoi, acquisition_id, exc)
                scene = None
            self._cache[key] = (scene, true_colour(scene)) if scene is not None else None
            if len(self._cache) > 6:  # keep memory bounded on long runs
                oldest = next(iter(self._cache))
                if oldest != key:
                    del self._cache[oldest]
        return self._cache[key]


DRAWDOWN_KINDS = ("asset_drawdown", "asset_drop")
"""Alerts about assets that left: their chips centre on the assets of the "before" pass."""


def _counted_class(alert: Alert) -> str:
    """The detection class an alert's figures count (for centring chips without evidence ids)."""
    if "moored_vessels" in alert.current:
        return "vessel"
    if "column" in alert.kind or "vehicle" in alert.kind or "parked_vehicles" in alert.current:
        return "vehicle"
    return "large_aircraft"


def _model_filter(store, aoi: str, model: str) -> str | None:
    return model if model in store.models(aoi) else None


def _evidence_pairs(store, scenes: _Scenes, alert: Alert, model: str | None, cfg: BasewatchConfig, chips_dir: Path,
                    prefix: str, min_valid: float) -> tuple[list[EvidencePair], str | None, str | None]:
    """Chips of the alert's evidence: the alert acquisition (after) and the last clear one before every look the
    alert rests on (before)."""
    acquisitions = {r.acquisition.id: r for r in store.acquisitions(alert.aoi)}
    current_id = next((a for a in reversed(alert.acquisitions) if a in acquisitions), None)
    evidence = store.detections_by_id(list(alert.evidence))
    if current_id is None and evidence:
        current_id = evidence[-1].id.split(":")[0] if evidence[-1].id else None
    if current_id is None or current_id not in acquisitions:
        return [], None, None
    current = acquisitions[current_id]
    # the looks the judgement rests on: a drawdown confirmed on its second low look lists the first one in its
    # figures, and "before" must come from ahead of it (the assets still there), not be that first low look
    looks = [*alert.acquisitions, *alert.current.get("acquisitions", [])]
    first_alert_time = min((acquisitions[a].acquisition.datetime for a in looks if a in acquisitions),
                           default=current.acquisition.datetime)
    earlier = [r for r in acquisitions.values() if r.acquisition.datetime < first_alert_time]
    clear = [r for r in earlier if r.valid_fraction >= min_valid]
    before = max(clear or earlier, key=lambda r: r.acquisition.datetime) if (clear or earlier) else None

    after_scene = scenes.get(alert.aoi, current.acquisition.id)
    if after_scene is None:
        return [], before.acquisition.id if before else None, current.acquisition.id
    scene, rgb = after_scene
    after_dets = store.detections(alert.aoi, current.acquisition.id, model)
    before_dets = store.detections(alert.aoi, before.acquisition.id, model) if before else []
    wanted = _counted_class(alert)
    before_points = [(d.x, d.y) for d in before_dets if d.cls == wanted]
    points = [(d.x, d.y) for d in evidence]
    if alert.kind in DRAWDOWN_KINDS:
        # a drawdown's evidence is what is left; the pair should show what left: where it stood, then gone
        points = before_points or points
    if not points:  # no evidence ids: centre on what the alert counts (aircraft, vehicles or the ships that left)
        points = [(d.x, d.y) for d in after_dets if d.cls == wanted] or before_points
    if not points:
        minx, miny, maxx, maxy = scene.grid.bounds
        points = [((minx + maxx) / 2, (miny + maxy) / 2)]
    size = cfg.report.chip_size_px
    centres = cluster_points(points, radius_m=size * scene.grid.pixel_size * 0.3,
                             limit=max(1, cfg.report.max_chips_per_alert))
    before_scene = scenes.get(alert.aoi, before.acquisition.id) if before else None
    highlight = list(alert.evidence)
    pairs = []
    for n, (x, y) in enumerate(centres, start=1):
        window = window_around(scene.grid, x, y, size)
        after = render_chip(scene, window, chips_dir / f"{prefix}-{n}-after.png", detections=after_dets,
                            highlight=highlight, label=f"alert date ({alert.kind})", rgb=rgb)
        before_chip = None
        if before_scene is not None:
            bscene, brgb = before_scene
            bwindow = window_around(bscene.grid, x, y, size)
            before_chip = render_chip(bscene, bwindow, chips_dir / f"{prefix}-{n}-before.png",
                                      detections=before_dets, highlight=highlight, label="baseline", rgb=brgb)
        pairs.append(EvidencePair(before=before_chip, after=after, centre=(x, y)))
    return pairs, before.acquisition.id if before else None, current.acquisition.id


def _alert_feature(alert: Alert, record: dict, evidence: list[Detection], aoi: AOI | None) -> dict:
    props = {"class": "alert", **{k: v for k, v in record.items() if k != "id"}, "id": alert.id}
    if evidence:
        geom = mapping(MultiPoint([(d.lon, d.lat) for d in evidence]))
    elif aoi is not None:
        geom = mapping(aoi.outline)
    else:
        geom = None
    return {"type": "Feature", "geometry": geom, "properties": props}


def _safely(what: str, fn, *args, **kwargs) -> bool:
    """Run one figure; a failure is logged with its traceback and leaves that figure out, not the report."""
    try:
        fn(*args, **kwargs)
        return True
    except Exception:  # noqa: BLE001 - the run calls the report last; one bad figure must not lose the rest
        log.exception("report: %s failed; left out of the report", what)
        return False


def _write_text(path: Path, text: str) -> Path:
    return write_text_atomic(path, text)


# ---------------------------------------------------------------- the report


def render_report(store, run_id: str, data_dir: Path) -> Path:
    """Write ``<data-dir>/reports/<run-id>/`` from the Store and point ``reports/latest`` at it if it is the newest.

    Returns the report folder. Raises StoreError for an unknown run id.
    """
    data_dir = Path(data_dir)
    run = store.run(run_id)
    reports = data_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    final = reports / run.id
    _sweep_stale(reports)
    work = Path(tempfile.mkdtemp(prefix=f".{run.id}.", dir=reports))
    try:
        _build(store, run, work)
        _readable(work)
        _swap_in(work, final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    if store.latest_run_id() == run.id:
        point_latest(reports, run.id)
    log.info("report: %s", final / "index.html")
    return final


def _build(store, run, out: Path) -> None:
    cfg = _run_config(run)
    min_valid = cfg.diff.min_zone_valid
    (out / "chips").mkdir()
    (out / "plots").mkdir()
    (out / "alerts").mkdir()
    envelope = run_envelope(run)
    scenes = _Scenes(store)
    detection_features, column_features, alert_features, csv_rows = [], [], [], []
    aoi_views: list[AOIView] = []
    records: list[dict] = []
    open_records: list[dict] = []  # still-open alerts raised by earlier runs at these AOIs
    run_alerts = sort_alerts(store.run_alerts(run.id))

    loaded: list[AOI] = []
    for aoi_name in run.aois:
        aoi = _aoi(aoi_name)
        loaded += [aoi] if aoi else []
        model = _model_filter(store, aoi_name, run.model)
        view = AOIView(name=aoi_name, title=aoi.title if aoi else aoi_name, country=aoi.country if aoi else "")
        fname = slug(aoi_name)
        observations = [o for o in store.observations(aoi_name, model)
                        if o.acquisition.datetime.date() <= run.end]
        acq_records = {r.acquisition.id: r for r in store.acquisitions(aoi_name)}
        aoi_alerts = [a for a in run_alerts if a.aoi == aoi_name]
        events_of: dict[str, list[str]] = {}
        for e in store.events(aoi_name, model):
            events_of.setdefault(e.acquisition_id, []).append(event_label(e))
        for obs in observations:
            p = series_point(obs)
            rec = acq_records.get(obs.acquisition.id)
            cloud = rec.acquisition.cloud_cover if rec else obs.acquisition.cloud_cover
            view.rows.append(AcquisitionRow(obs.acquisition.id, obs.acquisition.datetime, obs.acquisition.sensor,
                                            obs.valid_fraction, cloud, dict(obs.counts), p.outbound_vehicles,
                                            p.inbound_vehicles, obs.valid_fraction >= min_valid,
                                            events_of.get(obs.acquisition.id, [])))
            csv_rows.append({
                "simulated": str(bool(run.simulated)).lower(), "aoi": aoi_name, "acquisition_id": obs.acquisition.id,
                "datetime": iso(obs.acquisition.datetime), "sensor": obs.acquisition.sensor, "model": obs.model,
                "valid_fraction": f"{obs.valid_fraction:.4f}", "cloud_cover": "" if cloud is None else f"{cloud:.2f}",
                "large_aircraft": p.large_aircraft, "large_aircraft_confident": p.large_aircraft_confident,
                "small_aircraft": p.small_aircraft, "helicopter": p.helicopter,
                "vehicle": p.vehicle, "vessel": p.vessel, "outbound_columns": p.outbound_columns,
                "outbound_vehicles": p.outbound_vehicles,
                "inbound_columns": p.inbound_columns, "inbound_vehicles": p.inbound_vehicles,
                "events": "; ".join(events_of.get(obs.acquisition.id, [])),
            })
            extra = {"aoi": aoi_name, "acquisition_id": obs.acquisition.id, "datetime": iso(obs.acquisition.datetime),
                     "simulated": bool(run.simulated)}
            for det in store.detections(aoi_name, obs.acquisition.id, obs.model):
                detection_features.append(object_feature(det, **extra))
            for col in obs.columns:
                column_features.append(column_feature(col, **extra))
        if observations:
            if _safely(f"time series of {aoi_name}", time_series_plot, observations,
                       out / "plots" / f"{fname}-timeseries.png", title=view.title, alerts=aoi_alerts,
                       window_days=cfg.diff.baseline_window_days, min_history=cfg.diff.min_history,
                       min_valid=min_valid, simulated=run.simulated):
                view.time_series = f"plots/{fname}-timeseries.png"
            clear = [o for o in observations if o.valid_fraction >= min_valid]
            latest = (clear or observations)[-1]
            got = scenes.get(aoi_name, latest.acquisition.id)
            if got is not None and aoi is not None and _safely(
                    f"overview of {aoi_name}", overview_image, got[0], aoi,
                    store.detections(aoi_name, latest.acquisition.id, latest.model), list(latest.columns),
                    out / "plots" / f"{fname}-overview.png", title=view.title):
                view.overview = f"plots/{fname}-overview.png"
                acq = latest.acquisition
                view.overview_caption = (f"{acq.datetime:%Y-%m-%d %H:%M} UTC, {acq.sensor}, "
                                         f"{latest.valid_fraction:.0%} cloud-free")
        run_ids = {a.id for a in run_alerts}
        still_open = [a for a in sort_alerts(store.alerts(aoi_name, model=model))
                      if a.status != "closed" and a.id not in run_ids]
        for n, alert in enumerate(aoi_alerts + still_open, start=1):
            in_run = alert.id in run_ids
            prefix = f"{fname}-{n:02d}-{slug(alert.kind)}"
            try:
                pairs, before_id, current_id = _evidence_pairs(store, scenes, alert, model, cfg, out / "chips",
                                                               prefix, min_valid)
            except BasewatchError as exc:
                log.warning("report: no chips for alert %s (%s)", alert.id, exc)
                pairs, before_id, current_id = [], None, None
            except Exception:  # noqa: BLE001 - a chip must never cost the whole report (the run calls us last)
                log.exception("report: chips of alert %s failed", alert.id)
                pairs, before_id, current_id = [], None, None
            chip_paths = []
            for pair in pairs:
                if pair.before is not None:
                    chip_paths.append(f"chips/{pair.before.path.name}")
                chip_paths.append(f"chips/{pair.after.path.name}")
            record = alert_record(alert, chip_paths)
            evidence = store.detections_by_id(list(alert.evidence))
            feature = _alert_feature(alert, record, evidence, aoi)
            feature["properties"]["in_run"] = in_run
            geojson_name = f"alerts/{prefix}.geojson"
            write_geojson(feature_collection([feature], simulated=bool(run.simulated), run_id=run.id),
                          out / geojson_name)
            alert_features.append(feature)
            (records if in_run else open_records).append(record)
            view.alerts.append(AlertView(alert, record, pairs, geojson_name, before_id, current_id, in_run))
        aoi_views.append(view)

    # alerts of AOIs outside the run's list (should not happen, but never drop one silently)
    known = {v.name for v in aoi_views}
    for alert in run_alerts:
        if alert.aoi not in known:
            record = alert_record(alert)
            records.append(record)
            alert_features.append(_alert_feature(alert, record, store.detections_by_id(list(alert.evidence)), None))

    for recs in (records, open_records):
        recs.sort(key=lambda r: (SEVERITY_ORDER.get(r["severity"], 9), -r["confidence"], r["aoi"], r["kind"]))
    foreign = {"simulated": bool(run.simulated), "run_id": run.id}
    _write_text(out / "alerts.json", json.dumps({**envelope, "alerts": records, "open_alerts": open_records},
                                                indent=1, default=str))
    write_geojson(feature_collection(detection_features, **foreign), out / "detections.geojson")
    write_geojson(feature_collection(column_features, **foreign), out / "columns.geojson")
    write_geojson(feature_collection(alert_features, **foreign), out / "alerts.geojson")
    write_geojson(feature_collection([f for a in loaded for f in aoi_features(a)], **foreign), out / "aois.geojson")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows)
    _write_text(out / "observations.csv", buf.getvalue())

    all_views = sort_alerts_views([av for v in aoi_views for av in v.alerts])
    html = _environment().get_template("report.html.j2").render(
        run=run, envelope=envelope, aois=aoi_views, alerts=[v for v in all_views if v.in_run],
        open_alerts=[v for v in all_views if not v.in_run], cfg=cfg,
        n_detections=len(detection_features), n_columns=len(column_features), min_valid=min_valid,
        generated=datetime.now().astimezone(),
    )
    _write_text(out / "index.html", html)


def sort_alerts_views(views: list[AlertView]) -> list[AlertView]:
    order = {id(a): i for i, a in enumerate(sort_alerts([v.alert for v in views]))}
    return sorted(views, key=lambda v: order[id(v.alert)])


def event_label(event: ChangeEvent) -> str:
    """A change event as the acquisitions table and observations.csv show it: 'outbound_columns 0.75'. Events
    under alerts.min_confidence are listed too: they say what the diff saw even where no alert was raised."""
    return f"{event.kind} {event.confidence:.2f}"


def format_figure(value) -> str:
    """Baseline/current figures for people: numbers rounded, nested dicts as 'key value' pairs, lists joined."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"
    if isinstance(value, dict):
        if any(isinstance(v, dict) for v in value.values()):  # nested per signal: "airlift (count 4); ..."
            return "; ".join(f"{str(k).replace('_', ' ')} ({format_figure(v)})" if isinstance(v, dict)
                             else f"{str(k).replace('_', ' ')} {format_figure(v)}" for k, v in value.items())
        return ", ".join(f"{str(k).replace('_', ' ')} {format_figure(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, dict) and {"kind", "when"} <= set(v) for v in value):
            return "; ".join(_signal_line(v) for v in sorted(value, key=lambda v: str(v["when"])))
        return ("; " if any(isinstance(v, dict) for v in value) else ", ").join(format_figure(v) for v in value)
    return str(value)


def _signal_line(signal: dict) -> str:
    """One signal behind a withdrawal, as an analyst reads it: '2024-12-18 outbound columns (confidence 0.75)'."""
    confidence = signal.get("confidence")
    shown = "" if confidence is None else f" (confidence {format_figure(float(confidence))})"
    return f"{str(signal['when'])[:10]} {str(signal['kind']).replace('_', ' ')}{shown}"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("pipeline", "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "–" if v is None else f"{v:.0%}"
    env.filters["dt"] = lambda v: "–" if v is None else v.strftime("%Y-%m-%d %H:%M UTC")
    env.filters["day"] = lambda v: "–" if v is None else v.strftime("%Y-%m-%d")
    env.filters["figure"] = format_figure
    return env


# ---------------------------------------------------------------- folder swaps


def _sweep_stale(reports: Path, older_than_s: float = 3600.0) -> None:
    """Remove half-built folders a killed report generation left behind (hidden, older than an hour)."""
    now = time.time()
    for path in reports.glob(".*"):
        try:
            if path.is_dir() and not path.is_symlink() and now - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _readable(folder: Path) -> None:
    """Temp files are created 0600; a report is meant to be read by others (a web server, a colleague)."""
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _swap_in(work: Path, final: Path) -> None:
    """Replace ``final`` by ``work`` with renames only (the old folder is removed after the swap)."""
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, final)


def point_latest(reports: Path, run_id: str) -> Path:
    """Make ``reports/latest`` reach ``reports/<run_id>``: a relative symlink, else a redirect folder."""
    latest = reports / "latest"
    try:
        tmp = reports / f".latest.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_id, tmp, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(tmp, latest)
        return latest
    except OSError as exc:
        log.info("report: symlinks unavailable here (%s); reports/latest is a redirect folder", exc)
    if latest.is_symlink():
        latest.unlink()
    latest.mkdir(exist_ok=True)
    _write_text(latest / "RUN_ID", run_id + "\n")
    target = html.escape(f"../{run_id}/index.html", quote=True)
    _write_text(latest / "index.html",
                f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={target}">'
                f'<title>basewatch latest report</title><a href="{target}">latest report: {html.escape(run_id)}</a>\n')
    return latest


def resolve_run_id(store, run_id: str | None) -> str:
    """``None``/``latest`` -> the newest run id; otherwise the id as given (validated by the store)."""
    if run_id in (None, "", "latest"):
        latest = store.latest_run_id()
        if latest is None:
            raise StoreError(f"{store.path}: no run recorded yet; run `basewatch run` first")
        return latest
    store.run(run_id)
    return run_id


def report_command(run_id: str | None, data_dir: Path) -> Path:
    """`basewatch report [RUN_ID|latest]`: regenerate a run's report from the Store."""
    from pipeline.store import STORE_FILENAME, open_store

    if not (Path(data_dir) / STORE_FILENAME).exists():
        raise StoreError(f"{data_dir}: no basewatch store here ({STORE_FILENAME}); pass --data-dir of an earlier run")
    with open_store(data_dir) as store:
        return render_report(store, resolve_run_id(store, run_id), Path(data_dir))
