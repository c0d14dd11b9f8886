"""Heading of moving trucks split by whether each truck is darker or brighter than its ground (a benchmark).

Why: the band offset that gives a truck's direction flips its colour order when the truck is darker than the ground,
and at Al Khadim (dark trucks on bright desert) the detector reads about a quarter of them backwards (MODEL_CARD,
Known limits). Each true moving truck (>= 3 m/s, observable) is matched to the nearest vehicle detection within
20 m; its polarity is the mean over bands of its 3x3 pixels minus the median of the 13x13 around it. The detector
runs as `basewatch run` has it (verifiers, heading network; configs/default.yaml) unless the options say otherwise.

Usage: .venv/bin/python benchmarks/heading_by_ground.py --scenes DIR [DIR ...] [--weights CKPT]
(DIR: scenes with <scene>.truth.geojson, e.g. `basewatch simulate --aoi al_khadim --start 2024-12-14 --end
2024-12-24 --seed 19 --out DIR`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.tta import add_heading_views_argument, add_norm_neighbourhood_argument, add_views_argument, cascade_options

MATCH_M = 20.0


def heading_by_ground(scenes: list[Path], weights: str, tta_views: int = 1, **cascade) -> dict[str, dict]:
    """Heading accuracy of the matched trucks, darker and brighter than their ground. ``cascade``: further
    DetectorConfig fields (heading network, verifiers, normalisation), as the runs' config has them by default."""
    from models.evaluate import observable, pair_scenes
    from pipeline.config import DetectorConfig
    from pipeline.detect import LearnedDetector
    from pipeline.evaluation import heading_error_deg
    from pipeline.georef import map_to_pixel
    from pipeline.geotiff import read_scene
    from pipeline.objects import read_objects

    det = LearnedDetector(DetectorConfig(weights=weights, tta_views=tta_views, **cascade))
    errors: dict[str, list[float]] = {"darker": [], "brighter": []}
    for pair in [p for folder in scenes for p in pair_scenes(folder)]:
        scene = read_scene(pair.scene)
        bands = scene.bands[[scene.band_names.index(b) for b in ("B02", "B03", "B04", "B08")]]
        trucks = [o for o in observable(read_objects(pair.truth, crs=scene.crs), scene)
                  if o.cls == "vehicle" and o.moving and (o.speed_mps or 0.0) >= 3.0 and o.heading_deg is not None]
        found = [d for d in det.detect(scene) if d.cls == "vehicle" and d.heading_deg is not None]
        for o in trucks:
            r, c = (int(v) for v in map_to_pixel(scene.transform, o.x, o.y))
            if not (6 <= r < scene.height - 7 and 6 <= c < scene.width - 7):
                continue
            near = [d for d in found if np.hypot(d.x - o.x, d.y - o.y) < MATCH_M]
            if not near:
                continue
            d = min(near, key=lambda d: np.hypot(d.x - o.x, d.y - o.y))
            ground = np.median(bands[:, r - 6 : r + 7, c - 6 : c + 7].reshape(4, -1), axis=1)
            polarity = float(np.mean(bands[:, r - 1 : r + 2, c - 1 : c + 2].reshape(4, -1).mean(axis=1) - ground))
            errors["darker" if polarity < 0 else "brighter"].append(heading_error_deg(d.heading_deg, o.heading_deg))
    return {k: {"matched": len(v), "within_30deg": round(float(np.mean(np.array(v) <= 30)), 3) if v else None,
                "reversed_over_150deg": round(float(np.mean(np.array(v) > 150)), 3) if v else None}
            for k, v in errors.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description="truck heading accuracy, darker vs brighter than the ground")
    ap.add_argument("--scenes", type=Path, nargs="+", required=True, help="folders of scenes with truth")
    ap.add_argument("--weights", default="models/weights/basewatch_centernet.pt")
    add_views_argument(ap)
    add_heading_views_argument(ap)
    add_norm_neighbourhood_argument(ap)
    args = ap.parse_args()
    print(json.dumps(heading_by_ground(args.scenes, args.weights, args.tta_views, **cascade_options(args),
                                       norm_neighbourhood=args.norm_neighbourhood), indent=1))


if __name__ == "__main__":
    main()
