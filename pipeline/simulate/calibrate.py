"""Measurements on real Sentinel-2 data behind the simulator's constants (run: python -m pipeline.simulate.calibrate).

Reads the shared real-data folder in place (never copied into the project, never used for training):
- ``band_offsets``: B03 and B08 acquisition delays relative to B02 from the moving-truck "rainbows" on the motorway
  in realdata/s2td_braunschweig (bands stored B04, B03, B02, B08), using the published B02 -> B04 = 1.005 s as the
  scale: for each truck, t_b = 1.005 s x (along-road shift of band b) / (along-road shift of B04).
- ``cover_reflectances``: per-band reflectance percentiles of water, vegetation and bright impervious surfaces in
  realdata/sen2ships port scenes (uint16 = reflectance x 65535, per its PROVENANCE.md).
- ``water_noise``: sensor noise over open water in the same scenes.
- ``psf_width``: cross-road width of the truck blobs, real vs simulated at several PSF sigmas.
Results and method are written up in CALIBRATION.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipeline.config import PROJECT_ROOT

REALDATA = PROJECT_ROOT.parent / "shared" / "realdata"
B02_TO_B04_S = 1.005


def band_offsets(path: Path | None = None) -> dict:
    """Per-truck along-road centroid shifts of each band, converted to seconds after B02."""
    import rasterio

    path = path or REALDATA / "s2td_braunschweig" / "S2_test_data.tif"
    with rasterio.open(path) as src:
        b04, b03, b02, b08 = src.read().astype(float)
    bands = {"B02": b02, "B03": b03, "B04": b04, "B08": b08}
    # motorway axis (pixel coords) fitted by eye to the road centre: row = 8 + 0.3735 (col - 10)
    ang = np.arctan2(31.0, 83.0)
    u = np.array([np.sin(ang), np.cos(ang)])
    local = b02 - ndimage.median_filter(b02, size=9)
    peaks = (local > 10) & (local == ndimage.maximum_filter(local, size=3))
    s = np.arange(-10, 10.01, 0.25)
    core = np.abs(s) <= 4
    trucks = []
    for r, c in zip(*np.nonzero(peaks), strict=True):
        if abs(r - (8 + 0.3735 * (c - 10))) > 5:
            continue
        cent, amp = {}, {}
        for name, img in bands.items():
            prof = ndimage.map_coordinates(img, np.array([r + s * u[0], c + s * u[1]]), order=1, mode="nearest")
            prof = prof - np.median(prof[~core])  # along-road background of the same lane
            pc = prof[core]
            w = np.clip(pc - 0.4 * pc.max(), 0, None)
            amp[name] = float(pc.max())
            cent[name] = float((w * s[core]).sum() / w.sum()) if w.sum() > 0 else float("nan")
        d = {k: cent[k] - cent["B02"] for k in cent}
        if abs(d["B04"]) > 1.5 and min(amp.values()) > 5:  # a clear rainbow of a moving truck
            trucks.append({"row": int(r), "col": int(c), "shift_px": {k: round(v, 3) for k, v in d.items()},
                           "peak_dn": {k: round(v, 1) for k, v in amp.items()}})
    t3 = np.array([B02_TO_B04_S * t["shift_px"]["B03"] / t["shift_px"]["B04"] for t in trucks])
    t8 = np.array([B02_TO_B04_S * t["shift_px"]["B08"] / t["shift_px"]["B04"] for t in trucks])
    speeds = np.array([abs(t["shift_px"]["B04"]) * 10.0 / B02_TO_B04_S for t in trucks])
    return {
        "trucks": len(trucks),
        "t_B03_s": {"median": float(np.median(t3)), "q25": float(np.quantile(t3, 0.25)),
                    "q75": float(np.quantile(t3, 0.75))},
        "t_B08_s": {"median": float(np.median(t8)), "q25": float(np.quantile(t8, 0.25)),
                    "q75": float(np.quantile(t8, 0.75))},
        "speed_mps": {"median": float(np.median(speeds)), "min": float(speeds.min()), "max": float(speeds.max())},
        "per_truck": trucks,
    }


def _cross_width(img: np.ndarray, row: float, col: float, across: np.ndarray) -> float:
    """FWHM (px) of a blob across the road: cubic-sampled profile, background from the profile's ends."""
    s = np.arange(-3, 3.01, 0.1)
    prof = ndimage.map_coordinates(img, np.array([row + s * across[0], col + s * across[1]]), order=3, mode="nearest")
    prof = prof - np.median(np.r_[prof[:8], prof[-8:]])
    above = s[prof >= prof.max() / 2]
    return float(above.max() - above.min())


def psf_width(path: Path | None = None) -> dict:
    """Cross-road FWHM of the truck blobs (B02) in s2td_braunschweig, and of simulated trucks for several PSF sigmas,
    measured the same way (doubles, FWHM > 2.5 px, are two trucks side by side and left out)."""
    import rasterio

    from pipeline.simulate import physics
    from pipeline.simulate.canvas import Canvas
    from pipeline.simulate.painters import paint_truck

    path = path or REALDATA / "s2td_braunschweig" / "S2_test_data.tif"
    with rasterio.open(path) as src:
        b02 = src.read(3).astype(float)
    ang = np.arctan2(31.0, 83.0)
    u = np.array([np.sin(ang), np.cos(ang)])
    across = np.array([u[1], -u[0]])
    local = b02 - ndimage.median_filter(b02, size=9)
    peaks = (local > 10) & (local == ndimage.maximum_filter(local, size=3))
    real = [_cross_width(b02, r, c, across) for r, c in zip(*np.nonzero(peaks), strict=True)
            if abs(r - (8 + 0.3735 * (c - 10))) <= 5]
    real = [w for w in real if w <= 2.5]
    rng = np.random.default_rng(0)
    heading = float(np.rad2deg(np.arctan2(u[1], -u[0])) % 360)
    sim = {}
    for sigma in (0.4, 0.5, 0.6, 0.7, 0.8):
        widths = []
        for _ in range(30):
            canvas = Canvas(np.full((4, 30, 30), 0.07, np.float32))
            r0, c0 = 15 + rng.random(), 15 + rng.random()
            paint_truck(canvas, r0, c0, heading, 14.0, 2.5, np.full(4, 0.5), speed_mps=22.0)
            img = physics.psf_blur(canvas.bands, sigma)[0]
            d = physics.band_displacements_px(22.0, heading)[0]
            widths.append(_cross_width(img, r0 + d[0] - 0.5, c0 + d[1] - 0.5, across))
        sim[str(sigma)] = float(np.median(widths))
    return {"real_fwhm_px": {"n": len(real), "median": float(np.median(real)), "min": min(real), "max": max(real)},
            "simulated_fwhm_px_by_sigma": sim}


def cover_reflectances(cities: tuple[str, ...] = ("honolulu", "cartagena", "gdynia", "algiers",
                                                  "casablanca")) -> dict:
    """Reflectance percentiles (p25/p50/p75 per band) of spectral classes in the sen2ships port scenes."""
    import rasterio

    out: dict = {}
    for city in cities:
        folder = REALDATA / "sen2ships" / city
        files = {b: next(folder.glob(f"{city}_*_{b}.tif")) for b in ("B02", "B03", "B04", "B08")}
        stack = []
        for b in ("B02", "B03", "B04", "B08"):
            with rasterio.open(files[b]) as src:
                stack.append(src.read(1).astype(np.float64) / 65535.0)
        x = np.stack(stack)
        b02, b03, b04, b08 = x
        ndvi = (b08 - b04) / np.maximum(b08 + b04, 1e-6)
        ndwi = (b03 - b08) / np.maximum(b03 + b08, 1e-6)
        classes = {
            "water": ndwi > 0.3,
            "vegetation": ndvi > 0.5,
            "bright_impervious": (ndvi < 0.15) & (ndwi < 0.0) & (b02 > np.quantile(b02, 0.9)),
            "dark_impervious": (ndvi < 0.15) & (ndwi < 0.1) & (ndwi > -0.2) & (b08 < np.quantile(b08, 0.3))
            & (ndwi < 0.3) & (b08 > 0.05),
        }
        out[city] = {}
        for name, mask in classes.items():
            if mask.sum() < 50:
                continue
            vals = x[:, mask]
            out[city][name] = {"pixels": int(mask.sum()),
                               **{b: [round(float(v), 4) for v in np.quantile(vals[i], [0.25, 0.5, 0.75])]
                                  for i, b in enumerate(("B02", "B03", "B04", "B08"))}}
    return out


def water_noise(cities: tuple[str, ...] = ("gdynia", "casablanca", "honolulu")) -> dict:
    """Per-band noise over open water: robust std of horizontal pixel differences / sqrt(2) (water eroded 5 px)."""
    import rasterio

    out = {}
    for city in cities:
        folder = REALDATA / "sen2ships" / city
        x = []
        for b in ("B02", "B03", "B04", "B08"):
            with rasterio.open(next(folder.glob(f"{city}_*_{b}.tif"))) as src:
                x.append(src.read(1).astype(np.float64) / 65535.0)
        x = np.stack(x)
        ndwi = (x[1] - x[3]) / np.maximum(x[1] + x[3], 1e-6)
        water = ndimage.binary_erosion(ndwi > 0.3, iterations=5)
        pair = water[:, 1:] & water[:, :-1]
        sig = {}
        for i, b in enumerate(("B02", "B03", "B04", "B08")):
            d = ((x[i][:, 1:] - x[i][:, :-1]) / np.sqrt(2))[pair]
            sig[b] = round(float(np.median(np.abs(d - np.median(d))) * 1.4826), 5)
        out[city] = {"pixels": int(water.sum()), **sig}
    return out


def main() -> None:
    result = {"band_offsets": band_offsets(), "cover_reflectances": cover_reflectances(),
              "water_noise": water_noise(), "psf_width": psf_width()}
    json.dump(result, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
