"""Training crops for the heading network: moving trucks from simulated chips and scenes, with jittered centres.

Every crop is a pure function of its chip seed (or scene file) and ``jitter_seed``, so a crop set is rebuilt
exactly from its config. Centres are moved by the detector's typical localisation error (a normal of
``jitter_px`` per axis, clipped at ``jitter_clip_px``) because at inference the crop is centred on a detection, not
on the truth.
Only trucks the detector is asked to find are kept: moving at least ``MIN_VISIBLE_SPEED`` and changing their
pixels by at least ``MIN_CONTRAST`` (fainter ones are noise to a heading too).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.crop_records import CropRecords
from models.dataset import MIN_CONTRAST, MIN_VISIBLE_SPEED
from models.heading_net import direction_of, extract_crops, heading_of
from pipeline.simulate.chips import ChipOptions, render_chip
from pipeline.simulate.physics import derive_seed

# The detector places a truck in a dense column 1-3 px off; 0.4 px clipped at 1.2 was too tight (MODEL_CARD_heading)
JITTER_PX = 0.8
JITTER_CLIP_PX = 2.0


@dataclass
class CropSet(CropRecords):
    """Crops with their truth: what train_heading fits and evaluates on."""

    crops: np.ndarray  # (N, 4, S, S) float32 reflectance
    valid: np.ndarray  # (N, S, S) bool
    offsets: np.ndarray  # (N, 2) float32, the (jittered) centre's offset from its pixel's centre
    heading: np.ndarray  # (N,) float32 degrees, truth direction of travel
    speed: np.ndarray  # (N,) float32 m/s
    contrast: np.ndarray  # (N,) float32, NaN where unknown


@dataclass(frozen=True)
class Jitter:
    """How far a training crop's centre is moved from its truck: a normal of ``px`` per axis, clipped at ``clip_px``.
    It should match the detector's localisation error, which the crop network otherwise never sees."""

    px: float = JITTER_PX
    clip_px: float = JITTER_CLIP_PX


def _crops_at(bands: np.ndarray, valid: np.ndarray, points: list[tuple[float, float, float, float, float]],
              crop: int, rng: np.random.Generator, copies: int, jitter_of: Jitter = Jitter()) -> CropSet:
    """``copies`` jittered crops of each (row, col, heading, speed, contrast) point."""
    if not points:
        return _empty(crop)
    pts = np.array(points, np.float64).repeat(copies, axis=0)
    jitter = np.clip(rng.normal(0.0, jitter_of.px, (len(pts), 2)), -jitter_of.clip_px, jitter_of.clip_px)
    crops, cvalid, offsets = extract_crops(bands, valid, pts[:, 0] + jitter[:, 0], pts[:, 1] + jitter[:, 1], crop)
    return CropSet(crops.astype(np.float32), cvalid, offsets, pts[:, 2].astype(np.float32),
                   pts[:, 3].astype(np.float32), pts[:, 4].astype(np.float32))


def _empty(crop: int) -> CropSet:
    return CropSet(np.zeros((0, 4, crop, crop), np.float32), np.zeros((0, crop, crop), bool),
                   np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.float32))


def _learnable(moving: bool | None, speed: float | None, contrast: float | None, heading: float | None) -> bool:
    return bool(moving) and heading is not None and (speed or 0.0) >= MIN_VISIBLE_SPEED \
        and (contrast is None or contrast >= MIN_CONTRAST["vehicle"])


def chip_crops(seed: int, chip_size: int, crop: int, copies: int, options: ChipOptions = ChipOptions(),
               jitter: Jitter = Jitter()) -> CropSet:
    """Crops of the learnable moving trucks of one ``render_chip`` chip."""
    chip = render_chip(seed, chip_size, options)
    pts = [(o.row, o.col, o.heading_deg, o.speed_mps, o.contrast) for o in chip.objects
           if o.cls == "vehicle" and not o.occluded and _learnable(o.moving, o.speed_mps, o.contrast, o.heading_deg)]
    rng = np.random.default_rng(derive_seed("heading-jitter", seed))
    return _crops_at(chip.bands.astype(np.float32), chip.valid.astype(bool), pts, crop, rng, copies, jitter)


def _chip_range(args: tuple[int, int, int, int, int, ChipOptions, Jitter]) -> CropSet:
    first, count, chip_size, crop, copies, options, jitter = args
    return CropSet.concat([chip_crops(first + i, chip_size, crop, copies, options, jitter) for i in range(count)]
                          or [_empty(crop)])


def scene_crops(tif: Path, crop: int, copies: int, seed: int, jitter: Jitter = Jitter()) -> CropSet:
    """Crops of the learnable moving trucks of one labelled scene (``<name>.truth.geojson`` or labels beside it)."""
    from models.dataset import LabelledScenes
    from pipeline.georef import map_to_pixel
    from pipeline.geotiff import read_scene
    from pipeline.objects import read_objects

    label = next((tif.with_name(tif.stem + s) for s in LabelledScenes.SUFFIXES
                  if tif.with_name(tif.stem + s).exists()), None)
    if label is None:
        return _empty(crop)
    scene = read_scene(tif)
    bands = scene.bands[[scene.band_names.index(b) for b in ("B02", "B03", "B04", "B08")]].astype(np.float32)
    h, w = scene.valid.shape
    pts = []
    for o in read_objects(label, crs=scene.crs):
        if o.cls != "vehicle" or not _learnable(o.moving, o.speed_mps, o.contrast, o.heading_deg):
            continue
        row, col = map_to_pixel(scene.transform, o.x, o.y)
        if 0 <= row < h and 0 <= col < w and scene.valid[int(row), int(col)]:
            pts.append((row, col, o.heading_deg, o.speed_mps,
                        float("nan") if o.contrast is None else o.contrast))
    rng = np.random.default_rng(derive_seed("heading-jitter-scene", seed, tif.name))
    return _crops_at(bands, scene.valid.astype(bool), pts, crop, rng, copies, jitter)


def build_crop_set(chip_seed_base: int, chips: int, chip_size: int, crop: int, copies: int,
                   scene_dirs: list[Path] = (), scene_copies: int = 4, workers: int = 1,
                   options: ChipOptions = ChipOptions(), progress=None, jitter: Jitter = Jitter()) -> CropSet:
    """All crops of ``chips`` chips (seeds chip_seed_base + i) and of every labelled scene in ``scene_dirs``."""
    parts: list[CropSet] = []
    block = 50
    jobs = [(chip_seed_base + k, min(block, chips - k), chip_size, crop, copies, options, jitter)
            for k in range(0, chips, block)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_chip_range, jobs):
                parts.append(part)
                if progress:
                    progress(len(parts), len(jobs))
    else:
        for job in jobs:
            parts.append(_chip_range(job))
            if progress:
                progress(len(parts), len(jobs))
    for directory in scene_dirs:
        for tif in sorted(Path(directory).glob("*.tif")):
            parts.append(scene_crops(tif, crop, scene_copies, chip_seed_base, jitter))
    return CropSet.concat(parts or [_empty(crop)])


def dihedral_crops(crops: np.ndarray, valid: np.ndarray, offsets: np.ndarray, heading: np.ndarray,
                   transpose: bool, vflip: bool, hflip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One symmetry of the square applied to crops (about their centre pixel), offsets and headings together."""
    d = direction_of(heading.astype(np.float64))
    off = offsets.copy()
    if transpose:
        crops, valid = crops.swapaxes(-2, -1), valid.swapaxes(-2, -1)
        d, off = d[:, ::-1], off[:, ::-1]
    if vflip:
        crops, valid = crops[..., ::-1, :], valid[..., ::-1, :]
        d = d * np.array([-1.0, 1.0])
        off = off * np.array([-1.0, 1.0], np.float32)
    if hflip:
        crops, valid = crops[..., ::-1], valid[..., ::-1]
        d = d * np.array([1.0, -1.0])
        off = off * np.array([1.0, -1.0], np.float32)
    return (np.ascontiguousarray(crops), np.ascontiguousarray(valid), np.ascontiguousarray(off, dtype=np.float32),
            heading_of(d).astype(np.float32))
