"""Real-imagery checks of a detector (never used for training): false alarms on real airfields, trucks on a motorway.

- sen2ships (Copernicus S2 L2A, EPSG:3857, uint16 ~ reflectance x 65535, one file per band): Cartagena (Colombia)
  with Rafael Nunez airport, and Honolulu with Ford Island. No aircraft labels exist, so we report detections per
  km^2 over the whole scene and inside the airfield box; each airfield detection is listed for a look.
- s2td_braunschweig (S2 4 bands B04, B03, B02, B08, ~ reflectance x 255, UTM 32N): about a dozen truck "rainbows"
  on the A2 motorway, unlabelled. We report how many moving vehicles are found and whether their headings agree
  with the road axis (the motorway runs roughly WNW-ESE here; two carriageways, opposite directions), and whether
  each truck is on the carriageway that right-hand traffic gives its heading (a check of direction, not only axis).

Usage: .venv/bin/python benchmarks/realdata.py [--detector learned|classical] [--out results.json] [--png DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.tta import (  # noqa: E402
    add_heading_views_argument,
    add_norm_neighbourhood_argument,
    add_views_argument,
    cascade_options,
)
from pipeline.types import Acquisition, MapObject, Scene  # noqa: E402

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
BANDS = ("B02", "B03", "B04", "B08")

# Airfield boxes (lon/lat; W, S, E, N), drawn coarsely around runway + aprons from public maps.
AIRFIELDS = {
    "cartagena": ("Rafael Nunez airport (CTG)", (-75.5230, 10.4300, -75.5070, 10.4600)),
    "honolulu": ("Ford Island (Pearl Harbor)", (-157.9700, 21.3560, -157.9520, 21.3720)),
}


def sen2ships_scene(city: str, root: Path = REALDATA / "sen2ships") -> Scene:
    """Stack one sen2ships city's single-band uint16 files into an in-memory Scene (reflectance = DN / 65535)."""
    folder = root / city
    arrays = []
    transform = crs = None
    for b in BANDS:
        path = next(folder.glob(f"{city}_*_{b}.tif"))
        with rasterio.open(path) as src:
            arrays.append(src.read(1).astype(np.float32) / 65535.0)
            transform, crs = src.transform, src.crs.to_string()
    bands = np.stack(arrays)
    date = next(folder.glob(f"{city}_*_B02.tif")).stem.split("_")[1]
    acq = Acquisition("sen2ships", f"{city}-{date}", "Sentinel-2", datetime.fromisoformat(date).replace(tzinfo=UTC))
    valid = np.ones(bands.shape[1:], bool)  # zeros over dark water are clipped valid values (PROVENANCE.md)
    return Scene(bands, BANDS, transform, crs, valid, acq, False)


def braunschweig_scene(root: Path = REALDATA / "s2td_braunschweig") -> Scene:
    """The S2TD test patch: file order B04, B03, B02, B08 (S2TD's reader), values ~ reflectance x 255."""
    with rasterio.open(root / "S2_test_data.tif") as src:
        raw = src.read().astype(np.float32) / 255.0
        transform, crs = src.transform, src.crs.to_string()
    bands = np.stack([raw[2], raw[1], raw[0], raw[3]])
    acq = Acquisition("s2td", "braunschweig", "Sentinel-2", datetime(2020, 1, 1, tzinfo=UTC))
    return Scene(bands, BANDS, transform, crs, np.ones(bands.shape[1:], bool), acq, False)


def ground_area_km2(scene: Scene, box: tuple[float, float, float, float] | None = None) -> float:
    """Ground area of the scene (or of a lon/lat box inside it), correcting Web-Mercator scale by cos(lat)."""
    from pyproj import Transformer

    to_ll = Transformer.from_crs(scene.crs, "EPSG:4326", always_xy=True)
    t = scene.transform
    if box is None:
        w, h = scene.width * abs(t.a), scene.height * abs(t.e)
        _, lat = to_ll.transform(t.c + w / 2, t.f - h / 2)
        k = math.cos(math.radians(lat)) if "3857" in scene.crs else 1.0
        return w * h * k * k / 1e6
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    w_ = g.inv(box[0], box[1], box[2], box[1])[2]
    h_ = g.inv(box[0], box[1], box[0], box[3])[2]
    return w_ * h_ / 1e6


def in_box(d: MapObject, box) -> bool:
    return box[0] <= d.lon <= box[2] and box[1] <= d.lat <= box[3]


def axial_spread(headings: list[float]) -> tuple[float | None, float | None]:
    """Mean axis (0-180 deg) of headings treated as undirected lines, and the share within 20 deg of it."""
    if not headings:
        return None, None
    a = np.deg2rad(np.array(headings) * 2)
    axis = (math.degrees(math.atan2(np.sin(a).mean(), np.cos(a).mean())) / 2) % 180
    err = np.abs(((np.array(headings) - axis) + 90) % 180 - 90)
    return round(axis, 1), round(float(np.mean(err <= 20)), 3)


def right_hand_share(vehicles: list[MapObject]) -> float | None:
    """Share of moving vehicles on the carriageway that right-hand traffic gives their heading.

    Why: the real scene has no labels, but Germany drives on the right, so on a dual carriageway a truck's side of
    the road says which way it goes. The road line is the principal axis through the detections (they lie on the
    motorway); a truck is consistent when it sits on the side of that line to the right of its direction of
    travel. A reversed heading puts it on the wrong side, so this checks direction, not only the axis."""
    pts = [(d.x, d.y, d.heading_deg) for d in vehicles if d.heading_deg is not None]
    if len(pts) < 2:
        return None
    arr = np.array(pts, np.float64)
    xy = arr[:, :2] - arr[:, :2].mean(axis=0)
    axis = np.linalg.svd(xy, full_matrices=False)[2][0]
    normal = np.array([-axis[1], axis[0]])
    h = np.deg2rad(arr[:, 2])
    right_of_travel = np.stack([np.cos(h), -np.sin(h)], axis=1)  # travel (sin h, cos h) in map x/y, turned right
    return round(float(np.mean(np.sign(xy @ normal) == np.sign(right_of_travel @ normal))), 3)


def timed_detect(detector, scene: Scene, repeats: int = 3) -> tuple[list[MapObject], dict]:
    """Detections and the speed on a real frame: the median of ``repeats`` after one warm-up (content decides what
    the verifier and the heading network cost, so real frames complement the synthetic benchmark raster)."""
    dets = detector.detect(scene)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        detector.detect(scene)
        times.append(time.perf_counter() - t0)
    mpx = scene.bands.shape[1] * scene.bands.shape[2] / 1e6
    median = float(np.median(times))
    speed = {"megapixels": round(mpx, 3), "median_s": round(median, 3), "mpx_per_s": round(mpx / median, 2),
             "stage_s": {k: round(v, 3) for k, v in getattr(detector, "stage_seconds", {}).items()}}
    return dets, speed


def run(detector, png_dir: Path | None = None) -> dict:
    out: dict = {"detector": getattr(detector, "model_id", detector.name), "airfields": {}, "motorway": {}}
    for city, (label, box) in AIRFIELDS.items():
        scene = sen2ships_scene(city)
        dets, speed = timed_detect(detector, scene)
        air = [d for d in dets if d.cls == "large_aircraft"]
        veh = [d for d in dets if d.cls == "vehicle"]
        area, box_area = ground_area_km2(scene), ground_area_km2(scene, box)
        in_af = [d for d in air if in_box(d, box)]
        out["airfields"][city] = {
            "airfield": label, "scene_km2": round(area, 2), "airfield_box_km2": round(box_area, 2),
            "large_aircraft_scene": len(air), "large_aircraft_per_km2_scene": round(len(air) / area, 3),
            "large_aircraft_airfield": len(in_af), "large_aircraft_per_km2_airfield": round(len(in_af) / box_area, 3),
            "moving_vehicles_scene": len(veh), "moving_vehicles_per_km2": round(len(veh) / area, 3),
            "airfield_detections": [{"lon": round(d.lon, 5), "lat": round(d.lat, 5), "score": d.score,
                                     "length_m": d.length_m} for d in in_af],
            "speed": speed,
        }
        if png_dir:
            quicklook(scene, dets, png_dir / f"{city}.png", box)
    scene = braunschweig_scene()
    dets, speed = timed_detect(detector, scene)
    veh = [d for d in dets if d.cls == "vehicle"]
    heads = [d.heading_deg for d in veh if d.heading_deg is not None]
    axis, share = axial_spread(heads)
    out["motorway"] = {
        "scene": "s2td_braunschweig (A2 near Braunschweig), ~a dozen visible truck rainbows (eyeballed, not labels)",
        "moving_vehicles": len(veh), "large_aircraft": sum(d.cls == "large_aircraft" for d in dets),
        "heading_axis_deg": axis, "share_within_20deg_of_axis": share,
        "share_on_the_right_hand_carriageway": right_hand_share(veh),
        "headings": [round(h, 1) for h in heads], "speeds_mps": [d.speed_mps for d in veh],
        "scores": [d.score for d in veh], "speed": speed,
    }
    if png_dir:
        quicklook(scene, dets, png_dir / "braunschweig.png", None)
    return out


def quicklook(scene: Scene, dets: list[MapObject], path: Path, box) -> None:
    """RGB quick-look with detections (yellow: aircraft, cyan: vehicles with heading ticks), for eyeballing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.georef import map_to_pixel

    rgb = np.stack([scene.band("B04"), scene.band("B03"), scene.band("B02")], -1)
    lo, hi = np.percentile(rgb, 1), np.percentile(rgb, 99.5)
    rgb = np.clip((rgb - lo) / (hi - lo + 1e-6), 0, 1)
    fig, ax = plt.subplots(figsize=(max(6, scene.width / 60), max(6, scene.height / 60)))
    ax.imshow(rgb)
    for d in dets:
        row, col = map_to_pixel(scene.transform, d.x, d.y)
        if d.cls == "large_aircraft":
            ax.plot(col - 0.5, row - 0.5, "o", mfc="none", mec="yellow", ms=12)
        else:
            h = math.radians(d.heading_deg or 0)
            ax.plot(col - 0.5, row - 0.5, "+", color="cyan", ms=6)
            ax.plot([col - 0.5, col - 0.5 + 3 * math.sin(h)], [row - 0.5, row - 0.5 - 3 * math.cos(h)], "-", c="cyan")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="learned", choices=["learned", "classical"])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threshold", type=float, default=None)
    add_views_argument(ap)
    add_heading_views_argument(ap)
    add_norm_neighbourhood_argument(ap)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args()
    from pipeline.config import DetectorConfig
    from pipeline.detect import make_detector

    kw = {"name": args.detector}
    if args.weights:
        kw["weights"] = args.weights
    if args.threshold is not None:
        kw["score_threshold"] = args.threshold
    kw["tta_views"] = args.tta_views
    kw.update(cascade_options(args))
    kw["norm_neighbourhood"] = args.norm_neighbourhood
    result = run(make_detector(DetectorConfig(**kw)), args.png)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
