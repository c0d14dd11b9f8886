"""Vessels on water, by a physics rule (no learned weights): ships moored at a naval base's piers, and on open water.

Why not the learned detector: a ship is not a 1-8 px object. A frigate (125 x 15 m) or a landing ship covers 10-40
pixels at 10 m, and water is the darkest surface there is in B08 (about 0.01-0.03), so a hull of any paint lifts
its water's B08 by 0.04-0.3. Water is where NDWI = (B03 - B08) / (B03 + B08) exceeds ``ndwi_water``, or a hazy
scene's own land/water split (``water_threshold``).

- ``vessels_in_aoi`` (what runs use): along each long side of the AOI's pier zones, the water ``berth_band_m`` out
  is read every 5 m against the side's own free-water level, and each run of lifted B08 at least ``min_length_m``
  long is one moored ship. A ship alongside a bright pier blurs into its edge at 10 m, so no blob would separate it;
  the edge's blur is the same all along the side, so that level takes it out.
- ``detect_vessels`` (no zones: ``benchmarks/vessels_realdata.py`` on real labelled harbours): blobs of non-water
  pixels of ``min_area_m2``..``max_area_m2``, long and narrow, whose ring is mostly sea and that lie clear of land.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from shapely.geometry import Polygon

from pipeline.georef import object_at_pixel
from pipeline.types import AOI, Detection, Scene, reproject_geometry

VESSEL = "vessel"
EIGHT = np.ones((3, 3), bool)
REFERENCE_PERCENTILE = 35
"""A pier side's free-water level is this percentile of its readings: under its median, because ships can line more
than half of a crowded side (seven ships at two piers), which would lift a median to the hulls' level."""


@dataclass(frozen=True)
class VesselRule:
    """The detector's thresholds (``vessels`` in configs/default.yaml sets them)."""

    ndwi_water: float = 0.15  # water: NDWI above this (open water 0.3-0.7; hulls, piers and land below 0.1)
    min_sea_m2: float = 40_000  # the sea: a water body of at least 4 ha (ponds, cloud-shadow specks are not sea)
    min_area_m2: float = 400  # four 10 m pixels ...
    min_length_m: float = 40.0  # ... and 40 m long: boats and yachts (they come and go all day) are not counted
    max_area_m2: float = 30_000  # larger blobs are land or cloud (a 300 x 50 m tanker, blurred, covers ~2 ha)
    max_width_m: float = 80.0  # wider blobs are not hulls (beams are 10-60 m; the blur adds a pixel or two) ...
    min_elongation: float = 2.0  # ... and hulls are long: clouds and cloud gaps over water are blobs
    berth_band_m: tuple[float, float] = (8.0, 40.0)  # alongside a pier: the water this far out is read ...
    berth_contrast: float = 0.04  # ... and a hull lifts its B08 by this much over the side's free-water level
    berth_end_m: float = 30.0  # a pier side's last metres are not read: its corner's blur reaches round them
    berth_gap_m: float = 15.0  # gaps this short inside a run along a pier are the same hull
    min_water_ring: float = 0.6  # share of the blob's ring (inside the search area) that is sea
    shore_gap_m: float = 20.0  # blobs within this of land are coast fragments, not vessels (see _near_land)
    bright_sigma: float = 5.0  # a hull pixel in water: brighter than the water around it by this many spreads ...
    min_bright: float = 0.01  # ... and by at least this much reflectance


def vessel_search_mask(aoi: AOI, scene: Scene) -> np.ndarray | None:
    """The AOI's water zones minus its land zones, as a pixel mask of ``scene``; None when it has no water zone (an
    inland base: nothing to search)."""
    water = [z.polygon for z in aoi.zones if z.kind == "water"]
    if not water:
        return None
    land = [z.polygon for z in aoi.zones if z.kind != "water"]
    # three pixels in from the water zones' outer edge: the coast is drawn coarsely, and land blurred into the
    # water next to it is as bright as a hull
    mask = ndimage.binary_erosion(_rasterise(water, scene), structure=EIGHT, iterations=3)
    if land:
        mask &= ~_rasterise(land, scene)
    return mask


def _rasterise(polygons: list[Polygon], scene: Scene) -> np.ndarray:
    from rasterio.features import geometry_mask

    shapes = [reproject_geometry(p, "EPSG:4326", scene.crs) for p in polygons]
    return ~geometry_mask(shapes, out_shape=(scene.height, scene.width), transform=scene.transform)


def ndwi(scene: Scene) -> np.ndarray:
    b03, b08 = scene.band("B03").astype(np.float32), scene.band("B08").astype(np.float32)
    return (b03 - b08) / np.maximum(b03 + b08, 1e-4)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best splits ``values`` into two classes (Otsu 1979): between-class variance maximal."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = ((hist * centres).sum() - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[int(np.argmax(w0 * w1 * (m0 - m1) ** 2))])


def water_threshold(index: np.ndarray, area: np.ndarray, rule: VesselRule) -> float:
    """NDWI above which a pixel is water in this scene. Haze and glint pull open water's NDWI from 0.3-0.7 down to
    0.05-0.15 (real hazy harbours), so a fixed cut misses it: where the scene has both land and water, the cut
    splitting its NDWI histogram in two (Otsu), never above ``ndwi_water``; all one cover, ``ndwi_water``."""
    values = index[area]
    if values.size < 100:
        return rule.ndwi_water
    cut = otsu(np.clip(values, -1.0, 1.0))
    below, above = values[values <= cut], values[values > cut]
    two_covers = min(below.size, above.size) > 0.05 * values.size and np.median(above) - np.median(below) > 0.1
    return min(cut, rule.ndwi_water) if two_covers else rule.ndwi_water


def _water(scene: Scene, area: np.ndarray, rule: VesselRule) -> np.ndarray:
    """Water pixels inside ``area``, by the scene's own NDWI cut (judged over all its valid pixels)."""
    index = ndwi(scene)
    return (index > water_threshold(index, scene.valid, rule)) & area


def _score(contrast: float) -> float:
    """Every vessel a rule passed is a vessel; a brighter hull over its water is a surer one (0.5-1)."""
    return round(float(np.clip(0.5 + contrast / 0.2, 0.5, 1.0)), 3)


def detect_vessels(scene: Scene, rule: VesselRule = VesselRule(), search: np.ndarray | None = None,
                   ground_px_m: float | None = None) -> list[Detection]:
    """Vessels in ``scene`` (class ``vessel``), each with its length, width and long axis (heading 0-180: a blob
    does not say which end is the bow). ``search``: only pixels inside it are looked at (an AOI's water zones).
    ``ground_px_m``: the pixel's side on the ground where the grid's units are not ground metres (Web Mercator)."""
    px = ground_px_m or float(abs(scene.transform.a))
    area = scene.valid if search is None else (scene.valid & search)
    water = _water(scene, area, rule)
    labels, n = ndimage.label(water, structure=EIGHT)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sea = (sizes * px * px >= rule.min_sea_m2)[labels] & water
    hull = area & (~water | _brighter_than_sea(scene, sea, rule))
    blobs, _ = ndimage.label(hull, structure=EIGHT)
    shore = _near_land(blobs, px, rule)
    b08 = scene.band("B08").astype(np.float32)
    sea_b08 = float(np.median(b08[sea])) if sea.any() else 0.0
    found = []
    for index, box in enumerate(ndimage.find_objects(blobs), start=1):
        if box is None:
            continue
        pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        blob = blobs[pad] == index
        size = int(blob.sum())
        if not rule.min_area_m2 <= size * px * px <= rule.max_area_m2 or shore[pad][blob].any():
            continue
        ring = ndimage.binary_dilation(blob, structure=EIGHT) & ~blob & area[pad]
        if not ring.any() or sea[pad][ring].mean() < rule.min_water_ring:
            continue
        vessel = _vessel(scene, blob, pad, b08[pad], sea_b08, px)
        if (vessel.length_m >= rule.min_length_m and vessel.width_m <= rule.max_width_m
                and vessel.length_m >= rule.min_elongation * vessel.width_m):
            found.append(vessel)
    return found


def _near_land(blobs: np.ndarray, px: float, rule: VesselRule) -> np.ndarray:
    """Pixels within ``shore_gap_m`` of land (a non-water blob larger than any vessel): fragments of a coast,
    breakwater or mangrove that a pixel of water cuts off look like vessels. A ship moored at an AOI's pier is not
    affected: the pier lies outside the search area, so it is no blob here."""
    sizes = np.bincount(blobs.ravel())
    sizes[0] = 0
    land = (sizes * px * px > rule.max_area_m2)[blobs]
    steps = int(round(rule.shore_gap_m / px))
    return ndimage.binary_dilation(land, structure=EIGHT, iterations=steps) & ~land if steps > 0 else land


def _brighter_than_sea(scene: Scene, sea: np.ndarray, rule: VesselRule) -> np.ndarray:
    """Pixels of the sea brighter than the sea around them (mean of the four bands, against a 15-pixel local mean
    of sea pixels) by ``bright_sigma`` times the sea's own spread: a small or pale hull in hazy water still has NDWI
    like water, but it is brighter than the water beside it."""
    if sea.sum() < 100:
        return np.zeros_like(sea)
    bright = scene.bands[:4].astype(np.float32).mean(axis=0)
    weight = ndimage.uniform_filter(sea.astype(np.float32), 15)
    local = ndimage.uniform_filter(np.where(sea, bright, 0.0), 15) / np.maximum(weight, 1e-3)
    residual = bright - local
    spread = 1.4826 * float(np.median(np.abs(residual[sea] - np.median(residual[sea]))))
    return sea & (residual > max(rule.bright_sigma * spread, rule.min_bright))


def _vessel(scene: Scene, blob: np.ndarray, pad: tuple[slice, slice], b08: np.ndarray, sea_b08: float,
            pixel: float) -> Detection:
    rows, cols = np.nonzero(blob)
    rows = rows + pad[0].start + 0.5
    cols = cols + pad[1].start + 0.5
    row, col = float(rows.mean()), float(cols.mean())
    # long axis from the blob's second moments; length and width from its extent along and across that axis
    cov = np.cov(np.vstack([rows, cols])) if len(rows) > 1 else np.eye(2) * 0.25
    evals, evecs = np.linalg.eigh(np.atleast_2d(cov))
    axis = evecs[:, int(np.argmax(evals))]  # (drow, dcol)
    heading = float(np.degrees(np.arctan2(axis[1], -axis[0])) % 180.0)  # 0 = north-south, clockwise
    along = (rows - row) * axis[0] + (cols - col) * axis[1]
    across = (rows - row) * -axis[1] + (cols - col) * axis[0]
    length = (float(along.max() - along.min()) + 1.0) * pixel
    width = (float(across.max() - across.min()) + 1.0) * pixel
    contrast = float(np.percentile(b08[blob], 90)) - sea_b08
    return object_at_pixel(scene.transform, scene.crs, row, col, VESSEL, length_m=round(length, 1),
                           width_m=round(width, 1), heading_deg=round(heading, 1), moving=False,
                           score=_score(contrast))


def vessels_in_aoi(scene: Scene, aoi: AOI, rule: VesselRule = VesselRule()) -> list[Detection]:
    """Vessels moored at the AOI's piers (``moored_vessels``); none for an AOI without piers and water zones.

    Why not the blob rule here: at 10 m a ship moored alongside a bright pier blurs into the pier's edge, so no blob
    separates it. Along a pier's side, though, the water 8-40 m out is as dark as the free rest of that side
    wherever no hull lies there."""
    piers = [z for z in aoi.zones if z.kind == "pier"]
    search = vessel_search_mask(aoi, scene)
    if not piers or search is None:
        return []
    water = _water(scene, search, rule)
    if not water.any():
        return []
    b08 = scene.band("B08").astype(np.float32)
    sea_b08 = float(np.median(b08[water]))
    clear = ~ndimage.binary_dilation(~scene.valid, structure=EIGHT, iterations=3)  # a cloud's bright edge is no hull
    found = []
    for pier in piers:
        for side in _long_sides(reproject_geometry(pier.polygon, "EPSG:4326", scene.crs)):
            found += _moored_along(scene, side, b08 - sea_b08, search, clear, rule)
    return found


def _long_sides(polygon: Polygon) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(start, span from start to end, outward unit normal) of both long sides of the polygon's minimum
    rectangle."""
    corners = np.asarray(polygon.minimum_rotated_rectangle.exterior.coords)[:4]
    centre = corners.mean(axis=0)
    sides = [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    sides.sort(key=lambda ab: -np.hypot(*(ab[1] - ab[0])))
    out = []
    for a, b in sides[:2]:
        along = (b - a) / max(np.hypot(*(b - a)), 1e-9)
        normal = np.array([along[1], -along[0]])
        if np.dot((a + b) / 2 - centre, normal) < 0:
            normal = -normal
        out.append((a, b - a, normal))
    return out


def _moored_along(scene: Scene, side: tuple[np.ndarray, np.ndarray, np.ndarray], excess: np.ndarray,
                  search: np.ndarray, clear: np.ndarray, rule: VesselRule) -> list[Detection]:
    """Runs along one pier side where the water ``berth_band_m`` out is brighter in B08 than the side's free-water
    level there by ``berth_contrast``: each run of at least ``min_length_m`` is one moored vessel."""
    start, span, normal = side
    length = float(np.hypot(*span))
    step = 5.0
    ts = np.arange(rule.berth_end_m, length - rule.berth_end_m + 1e-6, step)  # not round the pier's corners
    offsets = np.arange(rule.berth_band_m[0], rule.berth_band_m[1] + 1e-6, 8.0)
    inv = ~scene.transform
    occupied = np.zeros(len(ts), bool)
    level = np.zeros(len(ts), np.float32)
    samples = np.full((len(ts), len(offsets)), np.nan, np.float32)  # NaN: not searched (the pier, land)
    cloudy = np.zeros(len(ts), bool)
    for k, t in enumerate(ts):
        for n, d in enumerate(offsets):
            x, y = start + span / length * t + normal * d
            col, row = inv @ (x, y)
            i, j = int(row), int(col)
            if 0 <= i < scene.height and 0 <= j < scene.width and search[i, j]:
                samples[k, n] = excess[i, j]
                cloudy[k] |= not clear[i, j]
    # the pier edge's own blur is the same all along a side: measure each offset against the side's free-water
    # level there (REFERENCE_PERCENTILE), so hulls close to the pier stand out of it
    clear_samples = np.where(cloudy[:, None], np.nan, samples).T
    reference = np.array([np.percentile(c[~np.isnan(c)], REFERENCE_PERCENTILE) if not np.isnan(c).all() else np.nan
                          for c in clear_samples])
    lifted = samples - np.where(np.isnan(reference), 0.0, np.maximum(reference, 0.0))[None, :]
    for k in range(len(ts)):
        read = lifted[k][~np.isnan(lifted[k])]
        if len(read) >= 2 and not cloudy[k]:  # a station under cloud, or with too little water, says nothing
            level[k] = float(read.max())
            occupied[k] = level[k] > rule.berth_contrast
    bridge = int(rule.berth_gap_m // step)  # a superstructure's shadow breaks one hull's run for a few metres
    found = []
    k = 0
    while k < len(ts):
        if not occupied[k]:
            k += 1
            continue
        end = k
        while True:
            ahead = [m for m in range(end + 1, min(end + 2 + bridge, len(ts))) if occupied[m]]
            if not ahead:
                break
            end = ahead[0]
        run_m = (end - k) * step + step
        if run_m >= rule.min_length_m:
            mid = start + span / length * (ts[k] + ts[end]) / 2 + normal * float(np.mean(offsets))
            col, row = inv @ tuple(mid)
            heading = float(np.degrees(np.arctan2(span[0], span[1])) % 180.0)
            contrast = float(level[k:end + 1].max())
            found.append(object_at_pixel(scene.transform, scene.crs, float(row), float(col), VESSEL,
                                         length_m=round(run_m, 1), heading_deg=round(heading, 1), moving=False,
                                         score=_score(contrast)))
        k = end + 1
    return found
