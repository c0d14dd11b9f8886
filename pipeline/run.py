"""One `basewatch run`: wires source -> detector -> columns -> observe -> diff -> alerts -> store -> report.

It only wires; every stage is its own module. Incremental and kill-safe: an acquisition the store already holds
for the current model is skipped, and everything one acquisition produces (observation, detections, columns,
events, and the AOI's replayed alerts) is committed in one transaction, so a run killed at any point and re-run
ends with the same store content as an uninterrupted one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from pyproj import CRS

from pipeline.alerts import replay
from pipeline.columns import admit_candidates, group_columns
from pipeline.config import BasewatchConfig, ScenarioFile, load_aoi, load_scenario, resolve_path
from pipeline.diff import compare
from pipeline.errors import BasewatchError, ConfigError, ModelError, SceneError, SourceError
from pipeline.georef import lonlat_to_map
from pipeline.geotiff import write_scene
from pipeline.observe import not_observed, observe, prepare_detections
from pipeline.store import RunRecord, Store, open_store
from pipeline.types import AOI, Alert, Detection, Scene
from pipeline.vessels import VESSEL, vessels_in_aoi

log = logging.getLogger(__name__)


@dataclass
class AOISummary:
    """What a run did at one AOI."""

    acquisitions: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    new_alerts: int = 0


@dataclass
class RunResult:
    run_id: str
    report_dir: Path | None
    processed: int
    skipped: int
    new_alerts: list[Alert]
    failures: list[str]
    simulated: bool = False
    source: str = ""
    model: str = ""
    per_aoi: dict[str, AOISummary] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- wiring helpers


def make_source(config: BasewatchConfig, *, kind: str, data_dir: Path, scenario: ScenarioFile):
    """The imagery source: the fetcher's selector when present, else the simulator directly."""
    try:
        from pipeline.sources.select import make_source as select_source
    except ImportError:
        select_source = None
    if select_source is not None:
        return select_source(config, kind=kind, data_dir=data_dir, scenario=scenario)
    if kind not in ("auto", "simulated"):
        raise ConfigError(f"source kind {kind!r} is not available in this build; use --source simulated")
    from pipeline.sources.simulated import SimulatedSource

    return SimulatedSource(scenario)


def make_detector(config: BasewatchConfig) -> tuple[object, str | None]:
    """The configured detector, or the classical one (with a note saying so) while learned weights are missing."""
    from pipeline.detect import make_detector as build

    cfg = config.detector
    if cfg.name == "learned" and not resolve_path(cfg.weights).exists():
        note = (f"learned detector weights {cfg.weights} not found; fell back to the classical detector "
                "(train or fetch the weights, or pass --detector classical to silence this)")
        log.warning(note)
        return build(cfg.model_copy(update={"name": "classical"})), note
    try:
        return build(cfg), None
    except ModelError:
        raise
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"cannot load detector weights {cfg.weights}: {exc}") from None


def model_id(detector) -> str:
    return getattr(detector, "model_id", None) or f"{detector.name}-{detector.version}"


def scene_path(data_dir: Path, aoi: str, acquisition_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", acquisition_id)
    return data_dir / "scenes" / aoi / f"{safe}.tif"


STALE_PART_S = 3600.0


def _sweep_partial_files(data_dir: Path) -> None:
    """Temp files a killed run left behind (atomic writes never leave a half file under the real name).

    Only old ones: a run working beside this one (a schedule tick, a second shell) may be writing a fresh one."""
    now = time.time()
    for tmp in (data_dir / "scenes").glob("*/.*.part"):
        try:
            if now - tmp.stat().st_mtime > STALE_PART_S:
                tmp.unlink()
        except FileNotFoundError:
            pass


def _in_aoi_crs(detections, aoi: AOI, scene: Scene):
    """Detections with x/y in the AOI's UTM CRS (column grouping works there), whatever the scene CRS."""
    if CRS.from_user_input(scene.crs) == aoi.crs:
        return detections
    crs = aoi.crs.to_string()
    return [replace(d, x=xy[0], y=xy[1]) for d in detections for xy in [lonlat_to_map(crs, d.lon, d.lat)]]


# ---------------------------------------------------------------- one acquisition


@dataclass(frozen=True)
class ForColumns:
    """One scene's detections ordered for the column stage: the sure ones, then ``unsure`` detections whose heading
    the column stage ignores (columns.unsure_heading_deg, not admitted to a column), then ``admitted`` candidates
    (faint peaks, or unsure detections, that extend a column), each with the column's heading."""

    detections: list[Detection]
    unsure: int = 0
    admitted: int = 0


def detect_for_columns(detector, scene: Scene, aoi: AOI, config: BasewatchConfig) -> ForColumns:
    """The detector's detections plus the faint moving-vehicle candidates that extend a column on an egress road
    (pipeline/columns.py ``admit_candidates``): an admitted candidate keeps its own low score and takes the heading
    of the column. A detection with an unsure heading is a candidate for the column stage and a detection for
    everything else. Detectors without candidates (classical, truth) are used as they are."""
    with_candidates = getattr(detector, "detect_with_candidates", None)
    if with_candidates is None:
        return ForColumns(detector.detect(scene))
    found = with_candidates(scene, config.columns.unsure_heading_deg)
    sure = [d for i, d in enumerate(found.detections) if i not in found.unsure]
    doubtful = [found.detections[i] for i in sorted(found.unsure)]
    pool = found.candidates + doubtful
    admitted = admit_candidates(_in_aoi_crs(sure, aoi, scene), _in_aoi_crs(pool, aoi, scene), aoi, config.columns)
    left = [d for k, d in enumerate(doubtful) if len(found.candidates) + k not in admitted]
    joined = [replace(pool[i], heading_deg=round(heading, 1)) for i, heading in sorted(admitted.items())]
    return ForColumns(sure + left + joined, unsure=len(left), admitted=len(joined))


def rediff(store: Store, run_id: str, aoi: AOI, model: str, config: BasewatchConfig, since, fresh=None) -> dict:
    """Re-derive events of every observation at/after ``since`` and replay the AOI's alerts (inside the caller's
    transaction). Normally only the newest observation is affected; an older acquisition added later (history
    extended with --start) re-scores the ones after it. Returns what changed in the alerts."""
    # what the diff of an observation at/after ``since`` can look at: its baseline window, and the baseline
    # windows of the observations in its co-occurrence window
    reach = timedelta(days=2 * config.diff.baseline_window_days + config.diff.cooccurrence_days + 1)
    history = store.observations(aoi.name, model, since=since - reach)
    fresh = fresh or {}
    for obs in history:
        if obs.acquisition.datetime < since:
            continue
        dets = fresh.get(obs.acquisition.id)
        if dets is None:
            dets = store.detections(aoi.name, obs.acquisition.id, model)
        store.replace_events(aoi.name, obs.acquisition.id, model, compare(aoi, history, obs, dets, config.diff))
    observed = [when for when, valid in store.observation_times(aoi.name, model) if valid > 0]
    alerts = replay(store.events(aoi.name, model), observed, config.alerts, model=model)
    return store.replace_alerts(run_id, aoi.name, model, alerts)


def find_vessels(detector, scene: Scene, aoi: AOI, config: BasewatchConfig) -> list[Detection]:
    """Ships moored at the AOI's piers (pipeline/vessels.py), unless switched off or the detector reports vessels
    itself (the simulator's truth)."""
    if not config.vessels.enabled or VESSEL in getattr(detector, "classes", ()):
        return []
    return vessels_in_aoi(scene, aoi, config.vessels.rule())


def process_acquisition(store: Store, run_id: str, aoi: AOI, scene: Scene, detector, model: str,
                        config: BasewatchConfig, data_dir: Path) -> dict:
    """Detect, group, observe, diff and alert one scene; commit it all in one transaction."""
    acq = scene.acquisition
    path = scene_path(data_dir, aoi.name, acq.id).resolve()
    if not path.exists():
        write_scene(scene, path)
    if scene.valid.any():
        found = detect_for_columns(detector, scene, aoi, config)
        raw = found.detections
        at = len(raw) - found.admitted  # vessels go before the admitted candidates, which stay last
        raw = raw[:at] + find_vessels(detector, scene, aoi, config) + raw[at:]
        dets = prepare_detections(raw, aoi, scene.crs, acq.id, model, berth_m=config.vessels.berth_m)
        inherited = frozenset(d.id for d in dets[len(dets) - found.admitted:])
        unsure = frozenset(d.id for d in dets[at - found.unsure:at])
        columns = group_columns(_in_aoi_crs(dets, aoi, scene), aoi, config.columns, inherited, unsure)
        obs = observe(aoi, scene, dets, columns, model, confident_score=config.diff.surge_min_score)
    else:  # all cloud: stored as an observation where nothing was observed, never as "empty"
        dets, columns, obs = [], [], not_observed(aoi, scene, model)
    with store.transaction():
        store.save_acquisition(run_id, aoi.name, str(path), obs, dets, columns, [])
        return rediff(store, run_id, aoi, model, config, acq.datetime, fresh={acq.id: dets})


# ---------------------------------------------------------------- the run


@contextmanager
def _progress(enabled: bool) -> Iterator:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=False) as bar:
        yield bar


def run(config: BasewatchConfig, *, data_dir: Path, config_path: Path | None = None, source_kind: str | None = None,
        aois: list[str] | None = None, start: date | None = None, end: date | None = None,
        detector: str | None = None, progress: bool = True, report: bool = True,
        scenario: ScenarioFile | str | Path | None = None, source=None, detector_impl=None,
        reprocess: bool = False) -> RunResult:
    """Process every acquisition of the window the store lacks for the current model, then report.

    ``reprocess`` processes the stored ones again too (replacing them), so that a changed detector threshold,
    column or diff setting reaches the history. ``source`` / ``detector_impl`` (optional) replace the configured
    source / detector, e.g. a wrapper that keeps simulated ground truth (the scenario suite)."""
    data_dir = Path(data_dir)
    scen = scenario if isinstance(scenario, ScenarioFile) else load_scenario(scenario or config.scenario)
    kind = source_kind or config.source.kind
    updates: dict = {"source": config.source.model_copy(update={"kind": kind}), "data_dir": str(data_dir)}
    if isinstance(scenario, str | Path):
        updates["scenario"] = str(scenario)
    if detector:
        updates["detector"] = config.detector.model_copy(update={"name": detector})
    config = config.model_copy(update=updates)

    if source is None:
        source = make_source(config, kind=kind, data_dir=data_dir, scenario=scen)
    simulated = bool(getattr(source, "simulated", False))
    if simulated:
        aoi_names = aois or [s.aoi for s in scen.sites]
        start, end = start or scen.start, end or scen.end
    else:
        aoi_names = aois or list(config.aois)
        if start is None or end is None:
            raise ConfigError(f"source {getattr(source, 'name', kind)!r} needs a date window: pass --start and --end "
                              "(YYYY-MM-DD)")
    if end < start:
        raise ConfigError(f"--end {end} is before --start {start}")
    aoi_objs = [load_aoi(name, config_path) for name in aoi_names]

    det, note = (detector_impl, None) if detector_impl is not None else make_detector(config)
    model = model_id(det)
    if note:
        config = config.model_copy(update={"detector": config.detector.model_copy(update={"name": "classical"})})

    data_dir.mkdir(parents=True, exist_ok=True)
    _sweep_partial_files(data_dir)
    store = open_store(data_dir)
    drift = None if reprocess else settings_drift(store, config, model, [a.name for a in aoi_objs])
    run_id = store.begin_run(config, source=getattr(source, "name", kind), simulated=simulated, model=model,
                             aois=[a.name for a in aoi_objs], start=start, end=end)
    result = RunResult(run_id=run_id, report_dir=None, processed=0, skipped=0, new_alerts=[], failures=[],
                       simulated=simulated, source=getattr(source, "name", kind), model=model,
                       notes=[n for n in (note, drift) if n])
    status = "failed"
    new_ids: set[str] = set()
    try:
        with _progress(progress) as bar:
            for aoi in aoi_objs:
                summary = result.per_aoi.setdefault(aoi.name, AOISummary())
                try:
                    acquisitions = sorted(source.search(aoi, start, end), key=lambda a: (a.datetime, a.id))
                except SourceError as exc:
                    result.failures.append(f"{aoi.name}: search failed: {exc}")
                    summary.failed += 1
                    continue
                summary.acquisitions = len(acquisitions)
                todo = [a for a in acquisitions if reprocess or not store.has_acquisition(aoi.name, a.id, model)]
                summary.skipped = len(acquisitions) - len(todo)
                task = bar.add_task(f"{aoi.name:<10}", total=len(todo)) if bar else None
                for acq in todo:
                    try:
                        scene = source.load(acq, aoi)
                        changed = process_acquisition(store, run_id, aoi, scene, det, model, config, data_dir)
                    except (SceneError, SourceError) as exc:
                        result.failures.append(f"{aoi.name}/{acq.id}: {exc}")
                        summary.failed += 1
                        log.warning("skipped %s/%s: %s", aoi.name, acq.id, exc)
                    else:
                        summary.processed += 1
                        fresh = {i for i, what in changed.items() if what == "new"}
                        summary.new_alerts += len(fresh - new_ids)
                        new_ids |= fresh
                    if bar:
                        bar.advance(task)
        status = "partial" if result.failures else "ok"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        result.processed = sum(s.processed for s in result.per_aoi.values())
        result.skipped = sum(s.skipped for s in result.per_aoi.values())
        changes = store.run_alert_changes(run_id)
        result.new_alerts = [a for a in store.run_alerts(run_id) if changes.get(a.id) == "new"]
        store.finish_run(run_id, status, _summary(result))
    if report:
        result.report_dir = _report(store, run_id, data_dir, result)
    store.close()
    return result


# settings that change what is derived from a scene (detections, columns, observations, events, alerts)
DERIVING_SECTIONS = ("detector", "vessels", "columns", "diff", "alerts")
_NOT_DERIVING = {"detector": ("threads", "batch_size", "device")}  # how fast or where, not what
REDERIVABLE_SECTIONS = ("diff", "alerts")  # re-derivable from stored detections and columns (pipeline/rederive.py)


def deriving_settings(config: dict) -> dict:
    """The sections of a resolved config (as stored with a run) that decide what a run derives."""
    return {section: {k: v for k, v in (config.get(section) or {}).items() if k not in _NOT_DERIVING.get(section, ())}
            for section in DERIVING_SECTIONS}


BEHAVIOUR_BEFORE: dict[str, dict] = {"diff": {"surge_not_falling": False}, "columns": {"candidate_votes": True},
                                     "vessels": {"enabled": False}}
"""Settings added with a default that changes what is derived: how runs stored before they existed behaved."""


@cache
def _defaults(section: str) -> dict:
    """A section's settings as a run stored before they existed behaved (JSON): settings are added with the old
    behaviour as their default, so upgrading does not read as a change, except those in BEHAVIOUR_BEFORE, whose new
    default does change what is derived (and so reads as a change, with the fix named)."""
    return {**BasewatchConfig.model_fields[section].annotation().model_dump(mode="json"),
            **BEHAVIOUR_BEFORE.get(section, {})}


def changed_settings(store: Store, config: BasewatchConfig, model: str,
                     aois: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Earlier run id -> (settings that differ from ``config``'s, AOIs): each AOI is compared with the latest run
    (this model) that processed acquisitions of it, since a run over other AOIs says nothing about its history."""
    runs = [r for r in store.runs() if r.model == model]
    now = deriving_settings(config.model_dump(mode="json"))
    drift: dict[str, tuple[list[str], list[str]]] = {}
    for aoi in aois:
        earlier = [r for r in runs if _processed(r, aoi)]
        if not earlier:
            continue
        before = deriving_settings(earlier[-1].config)
        changed = [f"{section}.{key}" for section in DERIVING_SECTIONS
                   for key in sorted(set(before[section]) | set(now[section]))
                   if before[section].get(key, _defaults(section).get(key)) != now[section].get(key)]
        if changed:
            drift.setdefault(earlier[-1].id, (changed, []))[1].append(aoi)
    return drift


def settings_drift(store: Store, config: BasewatchConfig, model: str, aois: list[str]) -> str | None:
    """A note when an AOI's stored acquisitions were derived with other detector, column, diff or alert settings
    than ``config``, saying how to bring them up to date. Why: stored acquisitions are not processed again, so a
    changed setting would otherwise reach only new acquisitions, silently."""
    drift = changed_settings(store, config, model, aois)
    if not drift:
        return None
    parts = []
    for run_id, (changed, names) in drift.items():
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        parts.append(f"since run {run_id} ({shown}) for {', '.join(names)}")
    if all(key.split(".")[0] in REDERIVABLE_SECTIONS for changed, _ in drift.values() for key in changed):
        fix = "run `basewatch rederive` to derive their events and alerts anew from the store (no detection)"
    else:
        fix = "run again with --reprocess to derive them anew"
    return f"settings changed {'; '.join(parts)}: acquisitions already stored keep what the old settings derived; {fix}"


def _processed(run: RunRecord, aoi: str) -> bool:
    """Whether ``run`` processed acquisitions of ``aoi`` (runs stored before per-AOI summaries: any, if it listed
    the AOI)."""
    per_aoi = run.summary.get("per_aoi")
    if per_aoi is None:
        return bool(run.summary.get("processed")) and aoi in run.aois
    return bool(per_aoi.get(aoi, {}).get("processed"))


def _summary(result: RunResult) -> dict:
    return {
        "processed": result.processed, "skipped": result.skipped, "failures": result.failures,
        "new_alerts": [a.id for a in result.new_alerts], "notes": result.notes, "simulated": result.simulated,
        "per_aoi": {name: vars(s) for name, s in result.per_aoi.items()},
    }


def _report(store: Store, run_id: str, data_dir: Path, result: RunResult) -> Path | None:
    try:
        from pipeline.report import render_report
    except ImportError:
        result.notes.append("report module not available in this build; no report written")
        return None
    try:
        return render_report(store, run_id, data_dir)
    except BasewatchError as exc:
        result.failures.append(f"report: {exc}")
        log.error("report failed: %s", exc)
        return None


# ---------------------------------------------------------------- CLI


SOURCE_KINDS = ("auto", "simulated", "sentinelhub", "files")
DETECTORS = ("learned", "classical")


def run_command(*, config_path: Path | None, data_dir: Path | None, source: str | None, aois: list[str] | None,
                start: date | None, end: date | None, detector: str | None, no_report: bool,
                scenario: Path | None = None, reprocess: bool = False) -> RunResult:
    """`basewatch run`: run, then print a per-AOI summary table and the report path."""
    from rich.console import Console
    from rich.table import Table

    from pipeline.config import load_config

    if source is not None and source not in SOURCE_KINDS:
        raise ConfigError(f"--source {source!r} is not one of {', '.join(SOURCE_KINDS)}")
    if detector is not None and detector not in DETECTORS:
        raise ConfigError(f"--detector {detector!r} is not one of {', '.join(DETECTORS)}")
    cfg = load_config(config_path)
    folder = Path(data_dir or cfg.data_dir)
    result = run(cfg, data_dir=folder, config_path=config_path, source_kind=source, aois=aois or None,
                 start=start, end=end, detector=detector, report=not no_report, scenario=scenario,
                 reprocess=reprocess)
    out = Console()
    if result.simulated:
        out.print("[bold black on yellow] SIMULATED [/] scenes come from the built-in simulator, not from a "
                  "satellite: figures below describe a simulated scenario.")
    table = Table("AOI", "acquisitions", "processed", "already stored", "failed", "new alerts",
                  title=f"run {result.run_id} — source {result.source}{' (SIMULATED)' if result.simulated else ''}, "
                        f"model {result.model}")
    for name, s in result.per_aoi.items():
        table.add_row(name, str(s.acquisitions), str(s.processed), str(s.skipped), str(s.failed),
                      str(s.new_alerts))
    out.print(table)
    for alert in result.new_alerts:
        out.print(f"  new alert [bold]{alert.kind}[/] at {alert.aoi} ({alert.severity}, confidence "
                  f"{alert.confidence:.2f}) first seen {alert.first_seen:%Y-%m-%d}, status {alert.status}")
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}")
    for failure in result.failures:
        out.print(f"[red]failed:[/] {failure}")
    if result.report_dir:
        out.print(f"report: {result.report_dir}")
    return result
