"""The vessel detector (pipeline/vessels.py) on real labelled harbours: sen2ships, 5 Sentinel-2 L2A port scenes with
93 vessel boxes drawn by others (../shared/realdata/sen2ships; never used to fit anything).

Matching: a detection is a true positive when its centre lies in a still unmatched labelled box (grown by one pixel
for the box drawn tight around a blurred hull), nearest box centre first; every other detection is a false alarm,
every box left over a miss. The scenes are on a 10 m Web-Mercator grid, so the detector gets each scene's true
ground sampling (5.8-9.8 m, PROVENANCE.md) for its area thresholds. Reported per city and overall, next to the
published Sentinel-2 figure to beat (Skylight, F1 0.804; ../shared/FACTS.md).

Usage: .venv/bin/python benchmarks/vessels_realdata.py [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.realdata import REALDATA, sen2ships_scene  # noqa: E402
from pipeline.evaluation import ClassSummary  # noqa: E402
from pipeline.georef import map_to_pixel  # noqa: E402
from pipeline.vessels import VESSEL, VesselRule, detect_vessels  # noqa: E402

CITIES = {"honolulu": (2, 9.3), "casablanca": (5, 8.3), "gdynia": (11, 5.8), "algiers": (12, 8.0),
          "cartagena": (14, 9.8)}  # COCO image id, ground metres per pixel (PROVENANCE.md)
PUBLISHED_F1 = 0.804  # Skylight on Sentinel-2 (FACTS.md)


def labelled_boxes(root: Path = REALDATA / "sen2ships") -> dict[int, list[tuple[float, float, float, float]]]:
    """COCO image id -> its boxes as (x0, y0, x1, y1) pixel bounds."""
    boxes: dict[int, list[tuple[float, float, float, float]]] = {}
    for a in json.loads((root / "coco_annotations.json").read_text())["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append((x, y, x + w, y + h))
    return boxes


def match(centres: list[tuple[float, float]], boxes: list[tuple[float, float, float, float]],
          grow: float = 1.0) -> tuple[int, int, int]:
    """(true positives, false alarms, misses) of detection centres (col, row) against boxes, one to one."""
    free = set(range(len(boxes)))
    tp = 0
    for x, y in centres:
        inside = [i for i in free if boxes[i][0] - grow <= x <= boxes[i][2] + grow
                  and boxes[i][1] - grow <= y <= boxes[i][3] + grow]
        if inside:
            best = min(inside, key=lambda i: (x - (boxes[i][0] + boxes[i][2]) / 2) ** 2
                       + (y - (boxes[i][1] + boxes[i][3]) / 2) ** 2)
            free.discard(best)
            tp += 1
    return tp, len(centres) - tp, len(free)


def scores(tp: int, fp: int, fn: int) -> dict:
    s = ClassSummary(VESSEL, tp, fp, fn)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(s.precision, 3), "recall": round(s.recall, 3),
            "f1": round(s.f1, 3)}


def run(rule: VesselRule = VesselRule()) -> dict:
    per_city, total = {}, np.zeros(3, int)
    boxes = labelled_boxes()
    for city, (image_id, ground_m) in CITIES.items():
        scene = sen2ships_scene(city)
        dets = detect_vessels(scene, rule, ground_px_m=ground_m)
        centres = [map_to_pixel(scene.transform, d.x, d.y)[::-1] for d in dets]  # (col, row) = COCO (x, y)
        counts = match(centres, boxes.get(image_id, []))
        total += counts
        per_city[city] = {**scores(*counts), "labelled": counts[0] + counts[2], "detections": len(dets)}
    return {"cities": per_city, "overall": scores(*map(int, total)), "published_f1_to_beat": PUBLISHED_F1,
            "rule": rule.__dict__}


def main() -> None:
    ap = argparse.ArgumentParser(description="vessel detector on sen2ships' real labelled harbours")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not (REALDATA / "sen2ships").exists():
        sys.exit(f"no sen2ships data at {REALDATA / 'sen2ships'}")
    result = run()
    for city, s in result["cities"].items():
        print(f"{city:11s} {s['labelled']:3d} labelled, {s['detections']:3d} found: TP {s['tp']:3d} FP {s['fp']:3d} "
              f"FN {s['fn']:3d}  P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}")
    o = result["overall"]
    print(f"overall: P {o['precision']:.3f} R {o['recall']:.3f} F1 {o['f1']:.3f} (published S2 F1 to beat: "
          f"{PUBLISHED_F1})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
