"""Score the detectors on scenes from the independent renderer (or any folder of scene + truth pairs).

Why: figures on the project's own simulator flatter a detector trained on it; the gap between those figures and the
ones here is the measure of overfitting to the simulator. Scoring is the DESIGN matching rule
(pipeline.evaluation.evaluate_scenes): large aircraft within 30 m, moving vehicles within 20 m, greedy by score.

Usage:
  python -m benchmarks.independent_renderer --n 20 --seed 900 --out /tmp/indep
  python -m benchmarks.robustness --scenes /tmp/indep --out report.json [--detectors learned classical]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np

from models.tta import add_heading_views_argument, add_views_argument, cascade_options
from pipeline.config import DetectorConfig, resolve_path
from pipeline.evaluation import EVAL_CLASSES, evaluate_scenes, heading_error_deg, match_class
from pipeline.geotiff import read_scene
from pipeline.objects import read_objects
from pipeline.types import MapObject, Scene

log = logging.getLogger(__name__)

DETECTORS = ("learned", "classical")
SPEED_BINS = ((0.0, 10.0), (10.0, 15.0), (15.0, 20.0), (20.0, 25.0), (25.0, 30.0), (30.0, float("inf")))


def load_pairs(folder: Path) -> list[tuple[str, Scene, list[MapObject], list[dict]]]:
    """Every <name>.tif with a <name>.truth.geojson beside it: scene, truth in the scene CRS, raw truth properties."""
    out = []
    for tif in sorted(folder.glob("*.tif")):
        truth_path = tif.with_name(f"{tif.stem}.truth.geojson")
        if not truth_path.exists():
            log.warning("%s: no %s beside it; skipped", tif, truth_path.name)
            continue
        scene = read_scene(tif)
        truth = read_objects(truth_path, crs=scene.crs)
        props = [f.get("properties", {}) for f in json.loads(truth_path.read_text())["features"]
                 if f.get("geometry", {}).get("type") == "Point"]
        out.append((tif.stem, scene, truth, props))
    return out


def available(names: list[str], weights: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """Detectors that can run here, and why the others cannot (the learned one needs its weights file)."""
    ok, skipped = [], {}
    for name in names:
        if name == "learned":
            weights = resolve_path(str(weights) if weights else DetectorConfig().weights)
            if not Path(weights).exists():
                skipped[name] = f"weights file {weights} is missing"
                continue
        ok.append(name)
    return ok, skipped


def breakdown(dets_truth: list[tuple[list[MapObject], list[MapObject], list[dict]]]) -> dict:
    """Recall of large aircraft by paint and type, of moving trucks by speed and convoy; aircraft confusions."""
    hits: dict[str, Counter] = {"paint": Counter(), "type": Counter(), "speed": Counter(), "convoy": Counter()}
    totals: dict[str, Counter] = {k: Counter() for k in hits}
    confused = Counter()
    heading_errors = []
    for dets, truth, props in dets_truth:
        for cls in EVAL_CLASSES:
            r = match_class(dets, truth, cls)
            found = {id(m.truth) for m in r.matches}
            heading_errors += [heading_error_deg(m.detection.heading_deg, m.truth.heading_deg) for m in r.matches
                               if cls == "vehicle" and None not in (m.detection.heading_deg, m.truth.heading_deg)]
            for t, p in zip(truth, props, strict=True):
                if t.cls != cls or (cls == "vehicle" and not t.moving):
                    continue
                keys = _keys(t, p)
                for k, v in keys.items():
                    totals[k][v] += 1
                    hits[k][v] += id(t) in found
        others = [t for t in truth if t.cls in ("small_aircraft", "helicopter")]
        fps = match_class(dets, truth, "large_aircraft").false_positives
        for d in fps:
            near = [t for t in others if np.hypot(t.x - d.x, t.y - d.y) <= 30.0]
            if near:
                confused[near[0].cls] += 1
    recall = {k: {v: {"found": hits[k][v], "of": n, "recall": round(hits[k][v] / n, 3)}
                  for v, n in sorted(totals[k].items())} for k in totals}
    recall["large_aircraft_fp_on_smaller_aircraft"] = dict(confused)
    errs = np.array(heading_errors)
    recall["vehicle_heading_error_deg"] = {  # a reversed heading (>= 150 deg) means blue and red were swapped
        "matched": int(errs.size), "within_30": int((errs <= 30).sum()), "reversed_150_180": int((errs >= 150).sum()),
    }
    return recall


def _keys(t: MapObject, p: dict) -> dict[str, str]:
    if t.cls == "large_aircraft":
        return {"paint": str(p.get("paint", "?")), "type": str(t.type)}
    speed = t.speed_mps or 0.0
    bin_ = next(f"{lo:02.0f}-{hi:.0f} m/s" for lo, hi in SPEED_BINS if lo <= speed < hi)
    return {"speed": bin_, "convoy": "convoy" if p.get("convoy") else "single"}


def run_detector(name: str, pairs, weights: Path | None = None, tta_views: int = 1,
                 cascade: dict | None = None) -> dict:
    """``cascade``: the second stages' DetectorConfig fields (models.tta.cascade_options), learned detector only."""
    from pipeline.detect import make_detector

    cfg = DetectorConfig(name=name, tta_views=tta_views, **(cascade or {}),
                         **({"weights": str(weights)} if weights else {}))
    detector = make_detector(cfg)
    rows, seconds = [], []
    for _, scene, truth, props in pairs:
        t0 = time.perf_counter()
        dets = detector.detect(scene)
        seconds.append(time.perf_counter() - t0)
        rows.append((dets, truth, props))
    summary = evaluate_scenes([(d, t) for d, t, _ in rows])
    per_scene = []
    for (stem, *_), (dets, truth, _) in zip(pairs, rows, strict=True):
        per_scene.append({"scene": stem, **{c: {"detected": sum(1 for d in dets if _scored(d, c)),
                                                "true": sum(1 for t in truth if _scored(t, c))} for c in EVAL_CLASSES}})
    valid_km2 = sum(float(sc.valid.sum()) * abs(sc.transform.a * sc.transform.e) for _, sc, _, _ in pairs) / 1e6
    classes = {c: {**s.to_dict(), "fp_per_valid_km2": round(s.fp / valid_km2, 3)} for c, s in summary.items()}
    return {"model": getattr(detector, "model_id", name), "seconds_per_scene": round(float(np.mean(seconds)), 3),
            "valid_km2": round(valid_km2, 2), "classes": classes, "breakdown": breakdown(rows),
            "per_scene": per_scene}


def _scored(o: MapObject, cls: str) -> bool:
    return o.cls == cls and (cls != "vehicle" or o.moving is not False)


def table(results: dict) -> str:
    """A plain-text table: P/R/F1/count error per class and heading agreement for vehicles."""
    head = f"{'detector':<12}{'class':<16}{'TP':>5}{'FP':>5}{'FN':>5}{'P':>7}{'R':>7}{'F1':>7}{'|cnt err|':>11}" \
           f"{'hdg<=30':>9}{'FP/km2':>8}"
    lines = [head, "-" * len(head)]
    for name, res in results.items():
        for cls, s in res["classes"].items():
            hw = s["heading_within_30deg"]
            lines.append(f"{name:<12}{cls:<16}{s['tp']:>5}{s['fp']:>5}{s['fn']:>5}{s['precision']:>7.3f}"
                         f"{s['recall']:>7.3f}{s['f1']:>7.3f}{s['mean_abs_count_error']:>11.2f}"
                         f"{'-' if hw is None else f'{hw:.3f}':>9}{s['fp_per_valid_km2']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score detectors on independently rendered scenes.")
    parser.add_argument("--scenes", type=Path, required=True, help="folder of <name>.tif + <name>.truth.geojson")
    parser.add_argument("--out", type=Path, required=True, help="JSON report path")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--weights", type=Path, default=None,
                        help="checkpoint for the learned detector (default: the committed one in the config)")
    add_views_argument(parser)
    add_heading_views_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pairs = load_pairs(args.scenes)
    if not pairs:
        parser.error(f"{args.scenes}: no <name>.tif with <name>.truth.geojson found; render some first")
    names, skipped = available(args.detectors, args.weights)
    for name, why in skipped.items():
        log.warning("detector %s not run: %s", name, why)
    results = {name: run_detector(name, pairs, args.weights, args.tta_views,
                                   cascade_options(args) if name == "learned" else None) for name in names}
    report = {"scenes": len(pairs), "folder": str(args.scenes), "skipped": skipped,
              "weights": str(args.weights) if args.weights else None, "tta_views": args.tta_views,
              **cascade_options(args),
              "truth": dict(Counter(f"{t.cls}{'_moving' if t.moving else ''}" for _, _, tr, _ in pairs for t in tr)),
              "detectors": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.part")
    tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    tmp.replace(args.out)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
