"""The `detect`, `train` and `evaluate` commands (registered in pipeline/cli.py).

Only typer and the standard library are imported at module level, so `basewatch --help` stays fast; torch,
rasterio and the models load inside each command.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

_console = Console(stderr=True)


def detect(
    scene: Path = typer.Argument(..., help="Scene GeoTIFF in the interchange format (any size; read in windows)."),
    out: Path = typer.Option(..., "--out", "-o", help="Detections GeoJSON to write (Objects format)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Config file (default: configs/default.yaml)."),
    detector: str | None = typer.Option(None, "--detector", help="learned or classical (default: from config)."),
    weights: Path | None = typer.Option(None, "--weights", help="Checkpoint to use instead of detector.weights."),
    threshold: float | None = typer.Option(None, "--threshold", help="One score threshold for all classes "
                                                                     "(default: the checkpoint's calibrated ones)."),
    tta_views: int | None = typer.Option(None, "--tta-views", help="Average the learned detector over 4 or 8 "
                                         "flipped views (steadier scores, 4 or 8 x the time; default: config, 1)."),
    heading_views: int | None = typer.Option(None, "--heading-views", help="Read moving vehicles' headings over 4 "
                                             "or 8 flipped views; detections and scores stay the single view's "
                                             "(default: config)."),
    heading_weights: Path | None = typer.Option(None, "--heading-weights", help="Heading network weights that "
                                                "re-read moving vehicles' headings from crops around them "
                                                "(default: config detector.heading_weights); 'none' = the "
                                                "detector's own heading (or --heading-views)."),
    verifier_weights: Path | None = typer.Option(None, "--verifier-weights", help="Aircraft verifier that takes a "
                                                 "second look at each large-aircraft peak from a crop around it "
                                                 "(default: config detector.verifier_weights); 'none' = the "
                                                 "detector's scores alone."),
    vehicle_verifier_weights: Path | None = typer.Option(
        None, "--vehicle-verifier-weights", help="Verifier for moving-vehicle peaks (default: config "
        "detector.vehicle_verifier_weights); 'none' = the detector's vehicle scores alone."),
    norm_neighbourhood: int | None = typer.Option(
        None, "--norm-neighbourhood", help="Normalise each pixel by its neighbourhood of this side (px), e.g. 256: "
        "fewer false aircraft on real scenes and objects on bright ground kept; 0 = per window (default: config, 0)."),
    precision: str | None = typer.Option(None, "--precision", help="float32, or bfloat16: convolutions about twice "
                                         "as fast on CPUs with AVX-512 BF16 / AMX, scores within ~0.01 (default: "
                                         "config, float32)."),
    vessels: bool = typer.Option(False, "--vessels", help="Also find ships on open water (physics rule, "
                                 "pipeline/vessels.py; ships moored against quays merge with them and are missed). "
                                 "The whole scene is read into memory for it."),
) -> None:
    """Detect large aircraft and moving vehicles (and parked fighters/helicopters as small_aircraft, with weights
    that have that class) in one GeoTIFF and write them as GeoJSON; with --vessels, ships too."""
    import time

    from pydantic import ValidationError
    from rich.progress import Progress

    from pipeline.config import load_config, weights_or_none
    from pipeline.detect import LearnedDetector, make_detector
    from pipeline.errors import ConfigError
    from pipeline.objects import write_objects

    cfg = load_config(config).detector
    updates = {k: v for k, v in {"name": detector, "weights": str(weights) if weights else None,
                                   "score_threshold": threshold, "tta_views": tta_views, "heading_views": heading_views,
                                   "heading_weights": str(heading_weights) if heading_weights else None,
                                   "verifier_weights": str(verifier_weights) if verifier_weights else None,
                                   "vehicle_verifier_weights": str(vehicle_verifier_weights)
                                   if vehicle_verifier_weights else None,
                                   "norm_neighbourhood": norm_neighbourhood,
                                   "precision": precision}.items() if v is not None}
    if threshold is not None:
        updates["class_thresholds"] = {}  # one threshold for every class, overriding the calibrated ones
    for key, value in (("heading_weights", heading_weights), ("verifier_weights", verifier_weights),
                       ("vehicle_verifier_weights", vehicle_verifier_weights)):
        if value is not None and weights_or_none(str(value)) is None:
            updates[key] = None  # the config sets the network; 'none' switches it off
    try:
        cfg = cfg.model_validate({**cfg.model_dump(), **updates})
    except ValidationError as exc:  # an option out of range: say which, like a config error
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise ConfigError(problems) from None
    det = make_detector(cfg)
    t0 = time.perf_counter()
    if isinstance(det, LearnedDetector):
        with Progress(console=_console, transient=True) as bar:
            task = bar.add_task("detect", total=None)
            found = det.detect_path(scene, progress=lambda done, total: bar.update(task, completed=done, total=total))
    else:
        from pipeline.geotiff import read_scene

        found = det.detect(read_scene(scene))
    if vessels:
        from pipeline.geotiff import read_scene
        from pipeline.vessels import detect_vessels

        found = list(found) + detect_vessels(read_scene(scene))
    write_objects(found, out, model=getattr(det, "model_id", cfg.name))
    counts: dict[str, int] = {}
    for d in found:
        counts[d.cls] = counts.get(d.cls, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing"
    stages = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in getattr(det, "stage_seconds", {}).items())
    stages = f"; {stages}" if stages else ""
    _console.print(f"{scene.name}: {summary} ({time.perf_counter() - t0:.1f} s{stages}, {cfg.name}) -> {out}")


def train(
    config: list[Path] = typer.Option([Path("configs/train.yaml")], "--config", "-c",
                                      help="Training config YAML; repeat for stages run in order (each stage's "
                                           "init_from names the previous stage's out)."),
    labels: Path | None = typer.Option(None, "--labels", help="Folder of <scene>.tif + <scene>.labels.geojson "
                                                               "to mix into the simulated chips."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the last stage's weights (default: its "
                                                         "'out')."),
    stop_after: int | None = typer.Option(None, "--stop-after", help="Stop each stage after N steps (resume later)."),
) -> None:
    """Train the detector on simulated chips (plus your labels); deterministic, checkpointed, resumable."""
    from models.train import load_train_config
    from models.train import train as run_training
    from pipeline.config import resolve_path

    for k, path in enumerate(config):
        cfg = load_train_config(resolve_path(path))
        if out is not None and k == len(config) - 1:
            cfg = cfg.model_validate({**cfg.model_dump(), "out": str(out)})
        if resolve_path(cfg.out).exists() and k < len(config) - 1:
            _console.print(f"stage {path}: {cfg.out} exists, skipped (delete it to retrain this stage)")
            continue
        result = run_training(cfg, labels=labels, stop_after=stop_after)
        _console.print(f"stage {path}: {result}")
        if result.name == "last.pt":  # stopped early: later stages need this one's weights
            return


def train_heading(
    config: Path = typer.Option(Path("configs/train_heading.yaml"), "--config", "-c", help="Heading-network "
                                "training config YAML."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the weights (default: the config's 'out')."),
    stop_after: int | None = typer.Option(None, "--stop-after", help="Stop after N steps (resume later)."),
) -> None:
    """Train the heading network that re-reads moving vehicles' headings from crops around detections
    (detector.heading_weights); deterministic, checkpointed, resumable. Renders its crops first (cached)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from models.train_heading import load_heading_config
    from models.train_heading import train_heading as run_training
    from pipeline.config import resolve_path

    cfg = load_heading_config(resolve_path(config))
    if out is not None:
        cfg = cfg.model_validate({**cfg.model_dump(), "out": str(out)})
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=_console) as bar:
        task = bar.add_task("heading network", total=cfg.steps)

        def progress(step: int, total: int, loss: float | None) -> None:
            bar.update(task, completed=step, total=total, description=f"heading network, loss {loss:.3f}")

        result = run_training(cfg, stop_after=stop_after, progress=progress)
    _console.print(f"heading network: {result}")


def train_verifier(
    config: Path = typer.Option(Path("configs/train_verifier.yaml"), "--config", "-c", help="Verifier training "
                                "config YAML."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the weights (default: the config's 'out')."),
    stop_after: int | None = typer.Option(None, "--stop-after", help="Stop after N steps (resume later)."),
) -> None:
    """Train the verifier that takes a second look at each large-aircraft peak from a crop around it
    (detector.verifier_weights); deterministic, checkpointed, resumable. Runs the detector over its training scenes
    first (cached)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from models.train_verify import load_verify_config, sample_set
    from models.train_verify import train_verifier as run_training
    from pipeline.config import resolve_path

    cfg = load_verify_config(resolve_path(config))
    if out is not None:
        cfg = cfg.model_validate({**cfg.model_dump(), "out": str(out)})
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=_console) as bar:
        scenes = bar.add_task("detector candidates (scenes, then chips)", total=None)
        sample_set(cfg, progress=lambda k, n: bar.update(scenes, completed=k, total=n))
        task = bar.add_task("verifier", total=cfg.steps)

        def progress(step: int, total: int, loss: float | None) -> None:
            bar.update(task, completed=step, total=total, description=f"verifier, loss {loss:.3f}")

        result = run_training(cfg, stop_after=stop_after, progress=progress)
    _console.print(f"verifier: {result}")


def evaluate(
    scenes: Path = typer.Option(..., "--scenes", help="Folder of <scene>.tif + <scene>.truth.geojson."),
    labels: Path | None = typer.Option(None, "--labels", help="Folder of <scene>.labels.geojson to use as truth."),
    out: Path = typer.Option(Path("evaluation.json"), "--out", "-o", help="JSON report to write."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Config file (default: configs/default.yaml)."),
    detectors: str = typer.Option("learned,classical", "--detectors", help="Comma-separated detectors to compare."),
    make_heldout: int = typer.Option(0, "--make-heldout", help="First write N held-out simulated chip scenes "
                                                               "(seeds never used in training) into --scenes."),
    heldout_size: int = typer.Option(256, "--heldout-size", help="Side of those scenes in pixels."),
    weights: Path | None = typer.Option(None, "--weights", help="Learned-detector checkpoint to use instead of "
                                                                "detector.weights (compare a candidate)."),
) -> None:
    """Score detectors against truth with the DESIGN.md matching rule; prints a table, writes JSON."""
    from rich.console import Console

    from models.evaluate import (
        detail_lines,
        evaluate_detectors,
        pair_scenes,
        report_table,
        write_heldout_chips,
        write_report,
    )
    from pipeline.config import load_config
    from pipeline.detect import make_detector
    from pipeline.errors import ConfigError

    if make_heldout:
        write_heldout_chips(scenes, make_heldout, heldout_size)
    base = load_config(config).detector
    if weights is not None:
        base = base.model_copy(update={"weights": str(weights.resolve())})
    dets = {}
    for name in [n.strip() for n in detectors.split(",") if n.strip()]:
        if name not in ("learned", "classical"):
            raise ConfigError(f"--detectors: unknown detector {name!r}; use learned and/or classical")
        dets[name] = make_detector(base.model_validate({**base.model_dump(), "name": name}))
    report = evaluate_detectors(pair_scenes(scenes, labels), dets)
    write_report(report, out)
    Console().print(report_table(report))
    for line in detail_lines(report):
        Console().print(line)
    _console.print(f"report: {out}")
