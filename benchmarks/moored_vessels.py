"""Ships moored at Tartus's piers, simulated: how many the berth reading (pipeline/vessels.py) finds.

Renders cloud-free Tartus scenes with 1-6 ships alongside the piers (seeds 1..N, the simulator's own ship types:
frigates, corvettes, landing ships, submarines, supply ships) and matches the moored detections to the truth one to
one within ``--match-m`` metres. Reports precision, recall, F1, mean absolute count error per scene and recall by
ship type. Simulated only: no labelled real harbour has pier zones drawn for it.

Usage: .venv/bin/python benchmarks/moored_vessels.py [--scenes 60] [--first-seed 101] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import PhaseFile, load_aoi  # noqa: E402
from pipeline.evaluation import ClassSummary  # noqa: E402
from pipeline.observe import prepare_detections  # noqa: E402
from pipeline.simulate.render import render_scene  # noqa: E402
from pipeline.vessels import VESSEL, vessels_in_aoi  # noqa: E402

PIERS = ("north_pier", "naval_quay")


def run(scenes: int, match_m: float = 80.0, first_seed: int = 1) -> dict:
    aoi = load_aoi("tartus")
    summary = ClassSummary(VESSEL)
    by_type: dict[str, list[int]] = {}
    for seed in range(first_seed, first_seed + scenes):
        ships = 1 + seed % 6
        when = datetime(2024, 11, 1, 8, 25, tzinfo=UTC) + timedelta(days=5 * seed)
        phase = PhaseFile(name="bench", start=date(2024, 1, 1), parked_vehicles=20, moored_vessels=ships)
        sim = render_scene(aoi, when, seed=1000 + seed, activity=phase, cloud_free=True)
        truth = [o for o in prepare_detections([o for o in sim.truth if o.cls == "vessel"], aoi, sim.scene.crs,
                                               "t", "truth", berth_m=80) if o.zone in PIERS]
        found = [d for d in prepare_detections(vessels_in_aoi(sim.scene, aoi), aoi, sim.scene.crs, "a", "m",
                                               berth_m=80) if d.zone in PIERS]
        free = list(range(len(truth)))
        hits = 0
        for d in found:
            near = [i for i in free if np.hypot(truth[i].x - d.x, truth[i].y - d.y) <= match_m]
            if near:
                best = min(near, key=lambda i: np.hypot(truth[i].x - d.x, truth[i].y - d.y))
                free.remove(best)
                by_type.setdefault(truth[best].type, [0, 0])[0] += 1
                hits += 1
        for i in free:
            by_type.setdefault(truth[i].type, [0, 0])[1] += 1
        summary.tp, summary.fp, summary.fn = summary.tp + hits, summary.fp + len(found) - hits, summary.fn + len(free)
        summary.count_errors.append(abs(len(found) - len(truth)))
    return {"scenes": scenes, "tp": summary.tp, "fp": summary.fp, "fn": summary.fn,
            "precision": round(summary.precision, 3), "recall": round(summary.recall, 3), "f1": round(summary.f1, 3),
            "mean_abs_count_error": round(summary.mean_count_error, 2),
            "recall_by_type": {t: f"{h} of {h + m}" for t, (h, m) in sorted(by_type.items())},
            "count_error_histogram": dict(sorted(Counter(summary.count_errors).items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description="moored-vessel counting at Tartus on simulated scenes")
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--match-m", type=float, default=80.0)
    ap.add_argument("--first-seed", type=int, default=101,
                    help="seeds FIRST..FIRST+N-1 (1-30 and 200-229 chose the thresholds; 101-160 are the check)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = run(args.scenes, args.match_m, args.first_seed)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
