"""Per-class score thresholds chosen on validation scenes (never the test scenes) and stored in the checkpoint.

Why: one global threshold trades aircraft precision against vehicle recall; the heatmap peaks of the two classes are
not calibrated alike. We run the detector once at a low threshold, sweep each class's threshold, keep the one with the
best F1 under the DESIGN.md matching rule, and write it to the checkpoint's ``meta["thresholds"]``.

Usage: .venv/bin/python -m models.calibrate --scenes VALDIR [--weights models/weights/basewatch_centernet.pt]
(VALDIR from `basewatch simulate --held-out 16 --seed 606060 --out VALDIR`; evaluation uses other seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.checkpoint import load_model, read_checkpoint, save_checkpoint
from models.evaluate import observable, pair_scenes
from pipeline.config import DetectorConfig, resolve_path
from pipeline.evaluation import EVAL_CLASSES, evaluate_scenes
from pipeline.geotiff import read_scene
from pipeline.objects import read_objects

SWEEP = np.round(np.arange(0.2, 0.851, 0.025), 3)


def calibrate(weights: str | Path, scenes: str | Path, write: bool = True) -> dict:
    from pipeline.detect import LearnedDetector

    det = LearnedDetector(DetectorConfig(weights=str(weights), score_threshold=float(SWEEP[0]), class_thresholds={}))
    runs = []
    for p in pair_scenes(scenes):
        scene = read_scene(p.scene)
        runs.append((det.detect(scene), observable(read_objects(p.truth, crs=scene.crs), scene)))
    chosen, table = {}, {}
    classes = [c for c in EVAL_CLASSES if c in det.classes]  # a class the model lacks has nothing to calibrate
    for cls in classes:
        best = None
        for t in SWEEP:
            s = evaluate_scenes([([d for d in dets if d.score >= t], truth) for dets, truth in runs], (cls,))[cls]
            table.setdefault(cls, []).append({"threshold": float(t), "precision": round(s.precision, 4),
                                              "recall": round(s.recall, 4), "f1": round(s.f1, 4)})
            if best is None or s.f1 > best[1] + 1e-9:
                best = (float(t), s.f1)
        chosen[cls] = best[0]
    result = {"thresholds": chosen, "validation_scenes": len(runs), "validation_dir": str(scenes),
              "sweep": table}
    if write:
        path = resolve_path(weights)
        blob = read_checkpoint(path)
        model, meta = load_model(path)
        meta["thresholds"] = chosen
        meta["calibration"] = {"scenes": len(runs), "source": str(scenes),
                               "f1_at_threshold": {c: max(r["f1"] for r in table[c]) for c in classes}}
        model.load_state_dict(blob["state_dict"])
        save_checkpoint(path, model, meta)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description="calibrate per-class score thresholds on validation scenes")
    ap.add_argument("--scenes", required=True, type=Path)
    ap.add_argument("--weights", default="models/weights/basewatch_centernet.pt")
    ap.add_argument("--dry-run", action="store_true", help="print, do not write into the checkpoint")
    args = ap.parse_args()
    res = calibrate(args.weights, args.scenes, write=not args.dry_run)
    print(json.dumps({k: v for k, v in res.items() if k != "sweep"}, indent=1))


if __name__ == "__main__":
    main()
