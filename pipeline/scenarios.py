"""Scenario suite: replay simulated scenarios through a real run and check which alerts fire against each
scenario's expectations; measure column grouping against the simulator's ground truth on the way.

An expectation of kind K at AOI A over [start, end] is *fired* when an event of kind K that passes the alert
rules (configured kind, confidence >= min_confidence) was raised at A on an acquisition dated in the window.
``no_abandonment`` holds when no observation in the window shows zero parked assets where the baseline had some.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from shapely.geometry import LineString

from pipeline.config import (
    PROJECT_ROOT,
    BasewatchConfig,
    ExpectationFile,
    ScenarioFile,
    load_aoi,
    load_config,
    load_scenario,
)
from pipeline.diff import ZoneMetric, measure
from pipeline.errors import ConfigError
from pipeline.replay_compare import compare_replays, load_replays, print_comparison
from pipeline.store import STORE_FILENAME, open_store
from pipeline.types import AOI, OBJECT_CLASSES, Acquisition, Alert, Column, MapObject, Observation, Scene

log = logging.getLogger(__name__)

SCENARIO_DIR = PROJECT_ROOT / "seeds" / "scenarios"
COLUMN_MATCH_M = 50.0  # DESIGN.md matching rule: within 50 m over at least half the length
PARKED_ASSETS = ZoneMetric("parked_assets", ("large_aircraft", "small_aircraft", "helicopter", "parked_vehicle"),
                           ("apron", "vehicle_park", "pier"))


def default_scenarios() -> list[Path]:
    """The seed scenario and every scenario under seeds/scenarios/."""
    return [PROJECT_ROOT / "seeds" / "syria-drawdown-2024-12.yaml", *sorted(SCENARIO_DIR.glob("*.yaml"))]


# ---------------------------------------------------------------- column accuracy against truth


@dataclass
class ColumnScore:
    """Detected columns against truth columns over a set of scenes."""

    scenes: int = 0
    truth_columns: int = 0
    detected_columns: int = 0
    matched: int = 0
    direction_right: int = 0
    count_errors: list[int] = field(default_factory=list)

    @property
    def direction_accuracy(self) -> float | None:
        return self.direction_right / self.matched if self.matched else None

    @property
    def within_one(self) -> float | None:
        return float(np.mean([e <= 1 for e in self.count_errors])) if self.count_errors else None

    @property
    def max_count_error(self) -> int | None:
        return max(self.count_errors) if self.count_errors else None

    def add(self, other: ColumnScore) -> None:
        self.scenes += other.scenes
        self.truth_columns += other.truth_columns
        self.detected_columns += other.detected_columns
        self.matched += other.matched
        self.direction_right += other.direction_right
        self.count_errors += other.count_errors


def _share_near(line: LineString, other: LineString, distance: float) -> float:
    if line.length == 0:
        return 1.0 if line.distance(other) <= distance else 0.0
    return line.intersection(other.buffer(distance)).length / line.length


def score_columns(detected: list[Column], truth: list[Column], aoi: AOI) -> ColumnScore:
    """Greedy matching of detected to truth columns (lines in lon/lat), DESIGN.md rule; direction right/wrong."""
    det_lines = [aoi.to_utm(c.line) for c in detected]
    truth_lines = [aoi.to_utm(c.line) for c in truth]
    pairs = []
    for i, dl in enumerate(det_lines):
        for j, tl in enumerate(truth_lines):
            share = _share_near(dl, tl, COLUMN_MATCH_M)
            if share >= 0.5:
                pairs.append((share, -detected[i].vehicles, i, j))
    pairs.sort(reverse=True)
    used_d: set[int] = set()
    used_t: set[int] = set()
    score = ColumnScore(scenes=1, truth_columns=len(truth), detected_columns=len(detected),
                        count_errors=[abs(len(detected) - len(truth))])
    for _, _, i, j in pairs:
        if i in used_d or j in used_t:
            continue
        used_d.add(i)
        used_t.add(j)
        score.matched += 1
        score.direction_right += int(detected[i].direction == truth[j].direction)
    return score


class TruthRecordingSource:
    """Wraps a simulated source so loading a scene also keeps its ground truth (no second render)."""

    def __init__(self, inner, min_vehicles: int = 3):
        self.inner = inner
        self.min_vehicles = min_vehicles
        self.name = getattr(inner, "name", "simulated")
        self.simulated = getattr(inner, "simulated", True)
        self.truth_columns: dict[tuple[str, str], list[Column]] = {}
        self.truth_objects: dict[str, list[MapObject]] = {}  # by acquisition id (latest render only)

    def search(self, aoi: AOI, start, end) -> list[Acquisition]:
        return self.inner.search(aoi, start, end)

    def load(self, acquisition: Acquisition, aoi: AOI) -> Scene:
        if not hasattr(self.inner, "truth"):
            return self.inner.load(acquisition, aoi)
        sim = self.inner.truth(acquisition, aoi)
        self.truth_columns[(aoi.name, acquisition.id)] = observable_columns(sim.truth_columns, sim.truth, sim.scene,
                                                                            self.min_vehicles)
        self.truth_objects = {acquisition.id: list(sim.truth)}
        return sim.scene


def observable_columns(columns: list[Column], truth: list[MapObject], scene: Scene, min_vehicles: int) -> list[Column]:
    """Truth columns with at least ``min_vehicles`` members whose centre pixel is valid: a column under cloud is
    not observed (the object-level rule of models.evaluate.observable), so it is neither found nor missed."""
    from models.evaluate import observable

    seen = {t.id for t in observable(truth, scene)}
    return [c for c in columns if sum(1 for m in c.members if m in seen) >= min_vehicles]


class TruthDetector:
    """The simulator's own ground truth, limited to cloud-free pixels: a perfect detector.

    Not a detector anyone deploys. It isolates what comes after detection (columns, observe, diff, alerts):
    a scenario that fails with it fails because of those stages, never because of detection errors.
    """

    name = "truth"
    version = "sim"
    model_id = "truth-sim"
    classes = OBJECT_CLASSES

    def __init__(self, source: TruthRecordingSource):
        self.source = source

    def detect(self, scene: Scene) -> list[MapObject]:
        inv = ~scene.transform
        h, w = scene.valid.shape
        out = []
        for obj in self.source.truth_objects.get(scene.acquisition.id, []):
            col, row = inv @ (obj.x, obj.y)
            r, c = int(np.floor(row)), int(np.floor(col))
            if 0 <= r < h and 0 <= c < w and scene.valid[r, c]:
                out.append(replace(obj, score=1.0))
        return out


# ---------------------------------------------------------------- expectations


@dataclass
class ExpectationResult:
    expectation: ExpectationFile
    fired: list[tuple[str, float]]  # (date, confidence) of matching events
    ok: bool
    detail: str


@dataclass
class ScenarioResult:
    name: str
    path: Path
    run_id: str
    model: str
    seconds: float
    expectations: list[ExpectationResult]
    alerts: list[Alert]
    columns: ColumnScore
    failures: list[str]
    history_start: date | None = None  # set when the replay started before the scenario (--lookback-days)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.expectations)


def _abandoned_on(aoi: AOI, history: list[Observation], obs: Observation, config: BasewatchConfig) -> bool:
    m = measure(PARKED_ASSETS, aoi, history, obs, config.diff)
    return m is not None and m.current == 0 and m.expected >= config.diff.min_parked_baseline


def check_expectation(exp: ExpectationFile, store, aoi: AOI, model: str, config: BasewatchConfig) -> ExpectationResult:
    """Whether the store's events (or observations, for no_abandonment) agree with one expectation."""
    in_window = lambda d: exp.start <= d <= exp.end  # noqa: E731
    if exp.kind == "no_abandonment":
        history = store.observations(aoi.name, model)
        empty = [o.acquisition.datetime.date().isoformat() for o in history
                 if in_window(o.acquisition.datetime.date()) and _abandoned_on(aoi, history, o, config)]
        fired = [(d, 1.0) for d in empty]
        ok = not empty if exp.expect == "present" else bool(empty)
        detail = "parked assets seen on every observed date" if not empty else f"no parked assets on {empty}"
        return ExpectationResult(exp, fired, ok, detail)
    events = [e for e in store.events(aoi.name, model) if e.kind == exp.kind and in_window(e.when.date())
              and e.kind in config.alerts.severity and e.confidence >= config.alerts.min_confidence]
    fired = [(e.when.date().isoformat(), round(e.confidence, 2)) for e in events]
    if exp.expect == "present":
        ok = bool(events)
        detail = "fired" if ok else "did not fire"
        if ok and exp.max_confidence is not None:
            top = max(c for _, c in fired)
            ok = top <= exp.max_confidence
            detail = f"fired, confidence {top:.2f} {'<=' if ok else '>'} {exp.max_confidence}"
    else:
        ok = not events
        detail = "stayed silent" if ok else "fired but should not"
    return ExpectationResult(exp, fired, ok, detail)


def evaluate_scenario(path: str | Path, *, config: BasewatchConfig | None = None, data_dir: Path,
                      config_path: Path | None = None, detector: str | None = None, aois: list[str] | None = None,
                      progress: bool = False, seed: int | None = None, lookback_days: int = 0,
                      rederive: bool = False) -> ScenarioResult:
    """Run ``path`` on the simulated source into ``data_dir`` and check its expectations (``seed`` replaces the
    scenario's own: the same story with other clouds, layouts and detector noise). ``lookback_days`` starts the
    replay that many days before the scenario's start, in its first phase: scheduled runs build their baselines
    from such a lookback, while a scenario's own window gives only a few passes before its events. ``rederive``:
    a replay already stored in ``data_dir`` is re-derived with ``config``'s diff and alert settings
    (:func:`rederive_scenario`) instead of being run again."""
    from pipeline.run import make_source, run

    config = config or load_config(config_path)
    scenario = load_scenario(path)
    if rederive and (Path(data_dir) / STORE_FILENAME).exists():
        return rederive_scenario(path, scenario, config=config, data_dir=data_dir, config_path=config_path,
                                 detector=detector, aois=aois)
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    if lookback_days:
        scenario = scenario.model_copy(update={"start": scenario.start - timedelta(days=lookback_days)})
    source = TruthRecordingSource(make_source(config, kind="simulated", data_dir=data_dir, scenario=scenario),
                                  min_vehicles=config.columns.min_vehicles)
    impl = TruthDetector(source) if detector == "truth" else None
    t0 = time.perf_counter()
    result = run(config, data_dir=data_dir, config_path=config_path, source_kind="simulated", aois=aois,
                 detector=None if impl else detector, progress=progress, report=False, scenario=scenario,
                 source=source, detector_impl=impl)
    seconds = time.perf_counter() - t0
    store = open_store(data_dir)
    try:
        aoi_objs = {name: load_aoi(name, config_path) for name in aois or [s.aoi for s in scenario.sites]}
        checks, alerts = _verdicts(store, scenario, aoi_objs, result.model, config)
        columns = ColumnScore()
        for (aoi_name, acq_id), truth in source.truth_columns.items():
            columns.add(score_columns(store.columns(aoi_name, acq_id, result.model), truth, aoi_objs[aoi_name]))
    finally:
        store.close()
    return ScenarioResult(name=scenario.name, path=Path(path), run_id=result.run_id, model=result.model,
                          seconds=seconds, expectations=checks, alerts=alerts, columns=columns,
                          failures=result.failures, history_start=scenario.start if lookback_days else None)


def _verdicts(store, scenario: ScenarioFile, aoi_objs: dict[str, AOI], model: str,
              config: BasewatchConfig) -> tuple[list[ExpectationResult], list[Alert]]:
    """The scenario's expectations checked against the store, and the alerts of its AOIs."""
    checks = [check_expectation(e, store, aoi_objs[e.aoi], model, config)
              for e in scenario.expectations if e.aoi in aoi_objs]
    return checks, [a for name in aoi_objs for a in store.alerts(name, model=model)]


def rederive_scenario(path: str | Path, scenario: ScenarioFile, *, config: BasewatchConfig, data_dir: Path,
                      config_path: Path | None, detector: str | None, aois: list[str] | None = None) -> ScenarioResult:
    """Check a stored replay of ``scenario`` (loaded from ``path``) after re-deriving its events and alerts with
    ``config`` (seconds: tune diff and alert settings on replays detected once). Columns are not scored again: they
    did not change, and the simulator's truth is not stored."""
    from pipeline.rederive import NotRederivable, rederive
    from pipeline.run import make_detector, model_id

    aoi_names = aois or [s.aoi for s in scenario.sites]
    if detector and detector != "truth":  # as evaluate_scenario ran it: truth replaces the configured detector
        config = config.model_copy(update={"detector": config.detector.model_copy(update={"name": detector})})
    t0 = time.perf_counter()
    store = open_store(data_dir)
    try:
        model = TruthDetector.model_id if detector == "truth" else model_id(make_detector(config)[0])
        try:
            result = rederive(store, config, aois=aoi_names, config_path=config_path, model=model)
        except NotRederivable as exc:
            raise ConfigError(f"{data_dir}: {', '.join(exc.settings)} changed since this replay was stored: "
                              "--rederive needs the sweep's own detector and column settings (the same --weights "
                              "and config sections); replay without --rederive to judge those") from None
        checks, alerts = _verdicts(store, scenario, {name: load_aoi(name, config_path) for name in aoi_names}, model,
                                   config)
    finally:
        store.close()
    return ScenarioResult(name=scenario.name, path=Path(path),
                          run_id=result.run_id, model=model, seconds=time.perf_counter() - t0, expectations=checks,
                          alerts=alerts, columns=ColumnScore(), failures=[])


def print_result(res: ScenarioResult, console) -> None:
    """One line per alert and per expectation (readable in a narrow terminal and in CI logs)."""
    verdict = "[green]MATCH[/]" if res.ok else "[bold red]MISMATCH[/]"
    history = f", history from {res.history_start}" if res.history_start else ""
    console.print(f"\n[bold]{res.name}[/] — SIMULATED, model {res.model}{history}, {res.seconds:.0f} s: {verdict}")
    console.print(f"  alerts fired ({len(res.alerts)}):")
    for a in res.alerts:
        console.print(f"    {a.kind} at {a.aoi}: {a.severity}, confidence {a.confidence:.2f}, "
                      f"{a.first_seen:%Y-%m-%d} .. {a.last_seen:%Y-%m-%d}, {a.status}", highlight=False)
    console.print("  expectations:")
    for r in res.expectations:
        e = r.expectation
        mark = "[green]ok[/]      " if r.ok else "[bold red]MISMATCH[/]"
        when = ", ".join(f"{d} ({c:.2f})" for d, c in r.fired) or "never"
        console.print(f"    {mark} {e.id}: {e.kind} at {e.aoi} expected {e.expect} {e.start}..{e.end}"
                      f"{'' if e.max_confidence is None else f' (confidence <= {e.max_confidence})'}; "
                      f"fired: {when} — {r.detail}", highlight=False)
    c = res.columns
    if c.scenes:
        acc = "n/a" if c.direction_accuracy is None else f"{100 * c.direction_accuracy:.1f}%"
        within = "n/a" if c.within_one is None else f"{100 * c.within_one:.0f}%"
        console.print(f"  columns vs truth: {c.truth_columns} true, {c.detected_columns} detected, {c.matched} "
                      f"matched, direction right {acc}; count within 1 of truth on {within} of {c.scenes} scenes "
                      f"(max error {c.max_count_error})", highlight=False)
    for f in res.failures:
        console.print(f"  [yellow]skipped:[/] {f}", highlight=False)


@dataclass
class SeedSweep:
    """How often each expectation of one scenario held over replays with other seeds."""

    name: str
    runs: int = 0
    matched_runs: int = 0
    held: dict[str, int] = field(default_factory=dict)  # expectation id -> runs where it held
    failed_seeds: dict[str, list[int]] = field(default_factory=dict)  # expectation id -> seeds where it did not
    columns: ColumnScore = field(default_factory=ColumnScore)

    def add(self, seed: int, result: ScenarioResult) -> None:
        self.runs += 1
        self.matched_runs += int(result.ok)
        self.columns.add(result.columns)
        for r in result.expectations:
            self.held[r.expectation.id] = self.held.get(r.expectation.id, 0) + int(r.ok)
            if not r.ok:
                self.failed_seeds.setdefault(r.expectation.id, []).append(seed)


def sweep_seeds(n: int, first: int = 1) -> list[int]:
    """The seeds a sweep replays: first..first+n-1 (never a scenario's own, which are dates like 20241213)."""
    return list(range(first, first + n))


def print_sweep(sweep: SeedSweep, console) -> None:
    console.print(f"\n[bold]{sweep.name}[/] over {sweep.runs} other seeds: {sweep.matched_runs}/{sweep.runs} runs "
                  "match every expectation", highlight=False)
    for exp_id, held in sweep.held.items():
        failed = sweep.failed_seeds.get(exp_id, [])
        tail = f" (not with seed{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed))})" if failed else ""
        console.print(f"    {held}/{sweep.runs}  {exp_id}{tail}", highlight=False)
    c = sweep.columns
    if c.matched:
        console.print(f"    columns: {c.matched} of {c.truth_columns} true matched, direction right "
                      f"{100 * c.direction_accuracy:.1f}%, count within 1 on {100 * c.within_one:.0f}% of "
                      f"{c.scenes} scenes (max error {c.max_count_error})", highlight=False)


def _replay(job: tuple) -> ScenarioResult:
    """One seed replay in a worker process (module level so that a spawned process can import it)."""
    path, config, data_dir, config_path, detector, seed, lookback_days, again = job
    return evaluate_scenario(path, config=config, data_dir=data_dir, config_path=config_path, detector=detector,
                             seed=seed, lookback_days=lookback_days, rederive=again)


def replay_seeds(jobs: list[tuple], workers: int, console=None) -> list[ScenarioResult]:
    """Run seed replays (``_replay`` arguments) in order, in ``workers`` processes when > 1, with a progress bar.

    Each replay is independent (its own store and scenes), so they parallelise cleanly; each process's detector gets
    an equal share of the cores instead of all of them, so the machine is not oversubscribed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not jobs:
        return []
    bar = Progress(TextColumn("replays"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, disable=console is None)
    results: list[ScenarioResult | None] = [None] * len(jobs)
    with bar:
        task = bar.add_task("replays", total=len(jobs))
        if workers <= 1:
            for i, job in enumerate(jobs):
                results[i] = _replay(job)
                bar.advance(task)
        else:
            import os
            from concurrent.futures import as_completed

            share = max(1, (os.cpu_count() or 1) // workers)
            jobs = [(path, config.model_copy(update={"detector": config.detector.model_copy(
                update={"threads": share})}), *rest) for path, config, *rest in jobs]
            with replay_pool(workers) as pool:
                pending = {pool.submit(_replay, job): i for i, job in enumerate(jobs)}
                for done in as_completed(pending):
                    results[pending[done]] = done.result()
                    bar.advance(task)
    return [r for r in results if r is not None]


def replay_pool(workers: int):
    """Processes for replays (spawned: torch and fork do not mix) that end when the process that started them is
    gone. Why: killed with SIGTERM or SIGKILL, a sweep's parent cannot shut its pool down, and each idle worker
    kept a detector (about 1 GB) in memory for as long as the machine ran."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Worker initializer: a daemon thread that ends the worker once its parent is gone (it is re-parented)."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def sweep_record(seed: int | None, result: ScenarioResult) -> dict:
    """One replay as JSON (seed None: the scenario's own): which expectations held, when they fired, columns."""
    c = result.columns
    return {"scenario": result.name, "seed": seed, "ok": result.ok, "model": result.model,
            "seconds": round(result.seconds, 1),
            "expectations": {e.expectation.id: {"ok": e.ok, "fired": e.fired} for e in result.expectations},
            "columns": {"truth": c.truth_columns, "detected": c.detected_columns, "matched": c.matched,
                        "direction_right": c.direction_right, "scenes": c.scenes,
                        "within_one": c.within_one}}


def evaluate_command(*, scenarios: list[Path] | None, config_path: Path | None, data_dir: Path | None,
                     detector: str | None, weights: Path | None = None, seeds: int = 0,
                     lookback_days: int = 0, jobs: int = 1, out: Path | None = None, first_seed: int = 1,
                     compare: Path | None = None, rederive: bool = False) -> bool:
    """`basewatch evaluate-scenarios`: True when every scenario matches its expectations.

    With ``seeds`` N > 0 each scenario is also replayed with seeds 1..N and the share of runs in which each
    expectation held is printed: one scenario seed is one draw of clouds, layouts and detector noise, and a rule
    tuned to it can look right by luck. The verdict stays that of the scenarios' own seeds. ``jobs`` runs the seed
    replays in that many processes; ``out`` writes every replay's outcome as JSON; ``compare`` reads such a file
    (read first, so a bad one fails before the replays) and prints which expectations changed on which seeds."""
    from rich.console import Console

    from pipeline.atomic import write_text_atomic

    console = Console()
    if rederive and data_dir is None:
        raise ConfigError("--rederive re-derives the replays stored under --data-dir: pass the --data-dir of an "
                          "earlier evaluate-scenarios run")
    config = load_config(config_path)
    earlier = load_replays(compare) if compare is not None else None
    if weights is not None:  # compare a candidate checkpoint without writing a config for it
        if not Path(weights).is_file():  # never fall back to another detector when a candidate was asked for
            raise ConfigError(f"--weights: checkpoint {weights} not found")
        config = config.model_copy(update={"detector": config.detector.model_copy(
            update={"weights": str(Path(weights).resolve())})})
    paths = scenarios or default_scenarios()
    results, records = [], []
    with tempfile.TemporaryDirectory(prefix="basewatch-scenarios-") as tmp:
        root = Path(data_dir) if data_dir else Path(tmp)
        names = [load_scenario(path).name for path in paths]
        # each scenario with its own seed (None), then with the sweep's seeds: all independent replays, one pool
        seed_list = [None, *sweep_seeds(seeds, first_seed)]
        plan = [(path, name, seed) for seed in seed_list for path, name in zip(paths, names, strict=True)]
        replays = replay_seeds([(path, config, root / (name if seed is None else f"{name}-seed{seed}"), config_path,
                                 detector, seed, lookback_days, rederive) for path, name, seed in plan], jobs, console)
        if rederive:
            console.print("replays found under --data-dir were re-derived with this config's diff and alerts "
                          "settings; their columns are not scored again", highlight=False)
        for (_, _, seed), res in zip(plan, replays, strict=True):
            if seed is None:
                print_result(res, console)
                results.append(res)
                records.append(sweep_record(None, res))
        for name in names if seeds > 0 else []:
            sweep = SeedSweep(name)
            for (_, n, seed), res in zip(plan, replays, strict=True):
                if n == name and seed is not None:
                    sweep.add(seed, res)
                    records.append(sweep_record(seed, res))
            print_sweep(sweep, console)
    if out is not None:
        write_text_atomic(Path(out), json.dumps({"replays": records}, indent=1) + "\n")
        console.print(f"replays written to {out}")
    if earlier is not None:
        print_comparison(compare_replays(earlier, records), console, str(compare))
    total = ColumnScore()
    for r in results:
        total.add(r.columns)
    ok = all(r.ok for r in results)
    if total.matched:
        console.print(f"\ncolumn direction right on {100 * total.direction_accuracy:.1f}% of {total.matched} matched "
                      f"columns; column count within 1 of truth on {100 * total.within_one:.0f}% of "
                      f"{total.scenes} scenes")
    console.print(f"{sum(r.ok for r in results)}/{len(results)} scenarios match their expectations"
                  + ("" if ok else " — MISMATCH"))
    return ok


__all__ = ["ColumnScore", "ScenarioResult", "SeedSweep", "check_expectation",
           "default_scenarios", "evaluate_command", "evaluate_scenario", "replay_seeds", "score_columns",
           "sweep_record"]
