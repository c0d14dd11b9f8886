"""Aircraft swap: is a detector's gap on another renderer's scenes in their aircraft or in their surroundings?

Each truth large aircraft of a host scene set is replaced by a donor aircraft's local change (a 25 px crop minus the
median of its 9-12 px ring, tapered to zero beyond 10 px) laid on the host's own ring median. The control replaces
each aircraft by itself, to show the procedure alone changes nothing. The score of a spot is the best large-aircraft
peak within 30 m of it (found: at least 0.45). Measurements, not a test: MODEL_CARD.md quotes them.

    python benchmarks/aircraft_swap.py --ours SET_A_DIR --theirs INDEPENDENT_DIR [--weights CKPT] [--out swap.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.evaluate import observable, pair_scenes
from pipeline.config import DetectorConfig
from pipeline.detect import LearnedDetector
from pipeline.georef import map_to_pixel
from pipeline.geotiff import read_scene
from pipeline.objects import read_objects
from pipeline.types import Scene

HALF = 12  # crop half-side (px)
_rows, _cols = np.mgrid[-HALF:HALF + 1, -HALF:HALF + 1]
RADIUS = np.hypot(_rows, _cols)
RING = (RADIUS >= 9) & (RADIUS <= 12)
TAPER = np.clip((10.0 - RADIUS) / 4.0, 0, 1)  # 1 within 6 px, 0 beyond 10
FOUND = 0.45
REACH_M = 30.0


@dataclass(frozen=True)
class Spot:
    row: int
    col: int
    x: float
    y: float
    paint: str  # the truth's "paint" property ("ours" when it has none)


def load_hosts(folder: Path) -> list[tuple[Scene, list[Spot]]]:
    """Scenes with the pixel spots of their observable large aircraft (far enough from the edge for a crop)."""
    hosts = []
    for pair in pair_scenes(folder):
        scene = read_scene(pair.scene)
        features = json.loads(Path(pair.truth).read_text())["features"]
        paints = {tuple(round(v, 6) for v in f["geometry"]["coordinates"]): f["properties"].get("paint", "ours")
                  for f in features if f["geometry"]["type"] == "Point"}
        spots = []
        for t in observable(read_objects(pair.truth, crs=scene.crs), scene):
            row, col = map_to_pixel(scene.transform, t.x, t.y)
            row, col = int(round(row - 0.5)), int(round(col - 0.5))
            if t.cls == "large_aircraft" and HALF <= row < scene.height - HALF and HALF <= col < scene.width - HALF:
                spots.append(Spot(row, col, t.x, t.y, paints.get((round(t.lon, 6), round(t.lat, 6)), "ours")))
        hosts.append((scene, spots))
    return hosts


def local_change(scene: Scene, spot: Spot) -> tuple[np.ndarray, np.ndarray]:
    """(tapered crop minus its ring median, the ring median per band)."""
    crop = scene.bands[:, spot.row - HALF:spot.row + HALF + 1, spot.col - HALF:spot.col + HALF + 1]
    ground = np.median(crop[:, RING], axis=1)
    return (crop - ground[:, None, None]) * TAPER, ground


def swapped(scene: Scene, spots: list[Spot], donors: list[np.ndarray]) -> Scene:
    bands = scene.bands.copy()
    for spot, donor in zip(spots, donors, strict=True):
        _, ground = local_change(scene, spot)
        window = (slice(None), slice(spot.row - HALF, spot.row + HALF + 1), slice(spot.col - HALF, spot.col + HALF + 1))
        bands[window] = bands[window] * (1 - TAPER) + ground[:, None, None] * TAPER + donor
    return replace(scene, bands=bands)


def best_scores(detector: LearnedDetector, scene: Scene, spots: list[Spot]) -> list[float]:
    found = [d for d in detector.detect(scene) if d.cls == "large_aircraft"]
    return [max((d.score or 0.0 for d in found if math.hypot(d.x - s.x, d.y - s.y) <= REACH_M), default=0.0)
            for s in spots]


def swap_run(detector: LearnedDetector, hosts, donors: list[np.ndarray], seed: int = 5) -> dict[str, dict]:
    """In place, control (each aircraft replaced by itself) and swapped (a random donor each)."""
    rng = random.Random(seed)
    scores: dict[str, list[float]] = {"in_place": [], "control": [], "swapped": []}
    for scene, spots in hosts:
        if not spots:
            continue
        scores["in_place"] += best_scores(detector, scene, spots)
        own = [local_change(scene, s)[0] for s in spots]
        scores["control"] += best_scores(detector, swapped(scene, spots, own), spots)
        scores["swapped"] += best_scores(detector, swapped(scene, spots, [rng.choice(donors) for _ in spots]), spots)
    return {k: summary(v) for k, v in scores.items()}


def summary(scores: list[float]) -> dict:
    v = np.array(scores)
    return {"n": len(v), "found": round(float(np.mean(v >= FOUND)), 3), "median_score": round(float(np.median(v)), 3)}


def describe(donors: list[np.ndarray]) -> dict:
    """Median centre change per band, share brighter at the centre, share of the change within 3 px."""
    centre = np.array([d[:, HALF - 1:HALF + 2, HALF - 1:HALF + 2].mean(axis=(1, 2)) for d in donors])
    energy = [np.abs(d.mean(axis=0)) ** 2 for d in donors]
    core = [float(e[RADIUS <= 3].sum() / e.sum()) for e in energy]
    return {"n": len(donors), "centre_change_per_band": np.median(centre, axis=0).round(3).tolist(),
            "centre_brighter": round(float(np.mean(centre.mean(axis=1) > 0)), 3),
            "change_within_3px": round(float(np.median(core)), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=Path, required=True, help="our held-out scenes (basewatch simulate --held-out)")
    parser.add_argument("--theirs", type=Path, required=True, help="independent scenes (independent_renderer.py)")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint (default: the committed weights)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    detector = LearnedDetector(DetectorConfig(**({"weights": str(args.weights)} if args.weights else {})))
    detector.thresholds = [0.1 if c == "large_aircraft" else t for c, t in zip(detector.classes, detector.thresholds,
                                                                              strict=True)]
    ours, theirs = load_hosts(args.ours), load_hosts(args.theirs)
    our_donors = [local_change(sc, s)[0] for sc, spots in ours for s in spots]
    their = {paint: [local_change(sc, s)[0] for sc, spots in theirs for s in spots if s.paint in paints]
             for paint, paints in (("grey_or_dark", ("grey", "dark")), ("white", ("white",)))}
    report = {
        "their_scenes_our_aircraft": swap_run(detector, theirs, our_donors),
        "our_scenes_their_grey_or_dark_aircraft": swap_run(detector, ours, their["grey_or_dark"]),
        "our_scenes_their_white_aircraft": swap_run(detector, ours, their["white"]),
        "aircraft": {"ours": describe(our_donors), **{f"theirs_{k}": describe(v) for k, v in their.items()}},
    }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
