"""Training samples: simulated chips rendered on the fly, and crops of a user's own labelled scenes.

Every sample is a pure function of its integer index (chip seed = ``seed_base + index``; augmentation RNG seeded by
the same index), so training is deterministic whatever the number of loader workers, and resuming at step k just
starts the index stream at k x batch size. Chips come from ``pipeline.simulate.chips.render_chip``, whose wide
domain randomisation (land cover, paint, PSF, noise, haze, clouds, misregistration, speeds, layouts not tied to
our AOIs) is the main guard against overfitting the simulator; here we add the 8 dihedral transforms (torchvision
transforms.v2 flips on image, mask and KeyPoints, plus a hand-written transpose) and a mild radiometric jitter on
top (per-band gains and offsets for 4 reflectance bands: v2.ColorJitter is for RGB images).

Target policy (what the network is asked to find):
- ``large_aircraft``: every large aircraft whose centre pixel is valid.
- ``vehicle``: moving trucks only. Parked trucks are background (the task is moving vehicles). Trucks moving slower
  than ``MIN_VISIBLE_SPEED`` shift < 0.3 px between B02 and B04, so they look parked: their neighbourhood is left
  out of the loss (neither positive nor negative) instead of teaching the network to guess.
- Objects fainter than ``MIN_CONTRAST`` (olive trucks on asphalt, grey aircraft on grey concrete) are ignored too.
- ``small_aircraft`` (only when the model has that class): fighters and helicopters alike (CLASS_ALIASES), except
  ones parked closer than CROWDED_PX to another (ignored); in a two-class model they are background, as are objects
  under cloud (invalid centre).
- Chip edges are scored like the interior (an early run that left them out of the loss learned to fire along every
  raster edge).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from models.centernet import CLASSES, model_class
from models.targets import TargetObject, Targets, encode
from pipeline.errors import SceneError
from pipeline.georef import map_to_pixel
from pipeline.simulate.chips import ChipOptions, render_chip

log = logging.getLogger(__name__)

MIN_VISIBLE_SPEED = 3.0  # m/s: 3 m in 1 s = 0.3 px between B02 and B04
MIN_CONTRAST = {"vehicle": 0.012, "large_aircraft": 0.01, "small_aircraft": 0.015}
"""Objects whose peak reflectance change (render_chip's ``contrast``, before PSF and noise) is below this are at or
under the noise level: they are left out of the loss rather than taught as either answer."""
CROWDED_PX = {"small_aircraft": 2.5}
"""Objects of these classes closer than this to another of their class are left out of the loss: fighters parked
a span apart (1.5-2 px) are closer than the output stride, so they cannot be counted one by one."""
EDGE_IGNORE_PX = 0  # chip edges are scored: a centre outside the chip is background, as at a raster edge


@dataclass(frozen=True)
class LabelledObject:
    """A truth object in chip pixel coordinates (continuous; pixel (0, 0) centre at (0.5, 0.5))."""

    cls: str
    row: float
    col: float
    length_m: float | None
    width_m: float | None
    heading_deg: float | None
    moving: bool | None
    speed_mps: float | None
    occluded: bool = False
    contrast: float | None = None  # peak reflectance change the object made (simulated chips only)


@dataclass
class Sample:
    bands: np.ndarray  # (4, H, W) float32 reflectance
    valid: np.ndarray  # (H, W) bool
    objects: list[LabelledObject]


def _crowded(objects: list[LabelledObject], classes: tuple[str, ...]) -> set[int]:
    """Indices of objects closer than CROWDED_PX to another object of the same model class."""
    out: set[int] = set()
    for cls, limit in CROWDED_PX.items():
        idx = [n for n, o in enumerate(objects) if model_class(o.cls, classes) == cls]
        if len(idx) < 2:
            continue
        pts = np.array([(objects[n].row, objects[n].col) for n in idx])
        d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        out.update(n for n, near in zip(idx, d.min(axis=1) < limit, strict=True) if near)
    return out


def to_targets(objects: list[LabelledObject], height: int, width: int, classes: tuple[str, ...] = CLASSES,
               stride: int = 2, min_contrast: dict[str, float] | None = None) -> tuple[Targets, np.ndarray]:
    """Dense targets plus a (K, h, w) loss weight (0 where the answer is unknowable: slow trucks, chip edges)."""
    keep: list[TargetObject] = []
    ignore: list[tuple[int, float, float]] = []
    crowded = _crowded(objects, classes)
    for n, o in enumerate(objects):
        cls = model_class(o.cls, classes)
        if cls not in classes or o.occluded:
            continue
        k = classes.index(cls)
        if n in crowded:
            ignore.append((k, o.row, o.col))
            continue
        limits = MIN_CONTRAST if min_contrast is None else min_contrast
        faint = o.contrast is not None and abs(o.contrast) < limits.get(cls, 0.0)
        if faint and (o.cls != "vehicle" or o.moving is not False):
            ignore.append((k, o.row, o.col))
            continue
        if o.cls == "vehicle":
            if o.moving is False:
                continue
            speed = o.speed_mps
            if speed is not None and speed < MIN_VISIBLE_SPEED:
                ignore.append((k, o.row, o.col))
                continue
            keep.append(TargetObject(k, o.row, o.col, o.length_m, o.width_m, o.heading_deg, speed))
        else:
            keep.append(TargetObject(k, o.row, o.col, o.length_m, o.width_m, o.heading_deg, None))
    tg = encode(keep, height, width, len(classes), stride,
                heading_weight={classes.index(c): 0.3 for c in classes if c != "vehicle"})
    h, w = height // stride, width // stride
    weight = np.ones((len(classes), h, w), np.float32)
    e = EDGE_IGNORE_PX // stride
    if e:
        weight[:, :e, :] = weight[:, -e:, :] = weight[:, :, :e] = weight[:, :, -e:] = 0.0
    for k, r, c in ignore:
        i, j = int(r // stride), int(c // stride)
        weight[k, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2] = 0.0
    weight[tg.heatmap == 1.0] = 1.0  # never ignore a true centre
    return tg, weight


# ------------------------------------------------------------------ augmentation


def _numpy_dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """Symmetry k of the square on the last two axes: rot90 (counter-clockwise) k%4 times, then a transpose if
    k >= 4. The definition the sample stream has always used; dihedral() reproduces it with torchvision."""
    for _ in range(k % 4):
        a = np.rot90(a, 1, axes=(-2, -1))
    return np.swapaxes(a, -2, -1) if k >= 4 else a


def _canonical(k: int) -> tuple[bool, bool, bool]:
    """(transpose, vertical flip, horizontal flip), applied in that order, equal to symmetry k."""
    probe = np.arange(6).reshape(2, 3)
    target = _numpy_dihedral(probe, k)
    for t in (False, True):
        for v in (False, True):
            for h in (False, True):
                a = probe.T if t else probe
                a = a[::-1] if v else a
                a = a[:, ::-1] if h else a
                if a.shape == target.shape and np.array_equal(a, target):
                    return t, v, h
    raise AssertionError(f"no canonical form for symmetry {k}")


CANONICAL = {k: _canonical(k) for k in range(8)}


def dihedral(sample: Sample, k: int) -> Sample:
    """One of the 8 symmetries of the square (k in 0..7; see _numpy_dihedral), done with torchvision.transforms.v2
    on the image, the valid mask and the object centres as KeyPoints.

    torchvision lacks two things we write by hand: a transpose (the symmetries without one are only the flips), and
    headings. Headings follow the pixels: a transpose turns h into 270 - h, a vertical flip into 180 - h, a
    horizontal flip into 360 - h, so the band-offset "rainbow" and the heading stay consistent. torchvision's
    KeyPoints use integer pixel centres (x' = W - 1 - x); our objects use continuous coordinates (pixel i spans
    [i, i + 1)), hence the half-pixel shift in and out.
    """
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    transpose, vflip, hflip = CANONICAL[k]
    bands, valid = torch.from_numpy(np.ascontiguousarray(sample.bands)), torch.from_numpy(sample.valid)
    xy = torch.tensor([[o.col - 0.5, o.row - 0.5] for o in sample.objects], dtype=torch.float64).reshape(-1, 2)
    headings = [o.heading_deg for o in sample.objects]

    def turn(rule):
        return [None if hd is None else rule(hd) % 360 for hd in headings]

    if transpose:
        bands, valid, xy = bands.transpose(1, 2), valid.T, xy.flip(1)
        headings = turn(lambda hd: 270.0 - hd)
    image, mask = tv_tensors.Image(bands), tv_tensors.Mask(valid)
    points = tv_tensors.KeyPoints(xy, canvas_size=tuple(valid.shape))
    if vflip:
        image, mask, points = TF.vertical_flip(image), TF.vertical_flip(mask), TF.vertical_flip(points)
        headings = turn(lambda hd: 180.0 - hd)
    if hflip:
        image, mask, points = TF.horizontal_flip(image), TF.horizontal_flip(mask), TF.horizontal_flip(points)
        headings = turn(lambda hd: 360.0 - hd)
    pts = points.as_subclass(torch.Tensor).numpy() + 0.5
    objs = [_moved(o, float(p[1]), float(p[0]), hd) for o, p, hd in zip(sample.objects, pts, headings, strict=True)]
    return Sample(np.ascontiguousarray(image.as_subclass(torch.Tensor).numpy()),
                  np.ascontiguousarray(mask.as_subclass(torch.Tensor).numpy()), objs)


def _moved(o: LabelledObject, row: float, col: float, heading: float | None) -> LabelledObject:
    return LabelledObject(o.cls, row, col, o.length_m, o.width_m, heading, o.moving, o.speed_mps, o.occluded,
                          o.contrast)


def radiometric_jitter(bands: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Common gain, per-band gain and a small per-band offset (atmospheric-correction residuals between sources)."""
    gain = rng.uniform(0.7, 1.4) * rng.uniform(0.93, 1.07, size=(bands.shape[0], 1, 1))
    offset = rng.normal(0.0, 0.012, size=(bands.shape[0], 1, 1))
    return (bands * gain + offset).astype(np.float32)


def invert_polarity(bands: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mirror every band about its median over valid pixels: bright objects become dark ones and vice versa.

    Why: the network should find a dark aircraft on pale concrete as readily as a white one on asphalt. Band order
    is untouched, so a moving truck's fringe still runs B02 -> B03 -> B04 along its travel and its heading label
    stays right (a dark truck makes exactly the inverted fringe). Invalid pixels are left as they are."""
    out = bands.copy()
    if valid.any():
        med = np.median(bands[:, valid], axis=1)[:, None]
        out[:, valid] = 2.0 * med - bands[:, valid]
    return out


# ------------------------------------------------------------------ datasets


def chip_sample(seed: int, size: int, options: ChipOptions = ChipOptions()) -> Sample:
    chip = render_chip(seed, size, options)
    objs = [LabelledObject(o.cls, o.row, o.col, o.length_m, o.width_m, o.heading_deg, o.moving, o.speed_mps,
                           o.occluded, getattr(o, "contrast", None)) for o in chip.objects]
    return Sample(chip.bands.astype(np.float32), chip.valid.astype(bool), objs)


def sample_to_tensors(sample: Sample, classes: tuple[str, ...], stride: int,
                      min_contrast: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    h, w = sample.valid.shape
    tg, weight = to_targets(sample.objects, h, w, classes, stride, min_contrast)
    heat, reg, mask = tg.as_tensors()
    return {"bands": torch.from_numpy(sample.bands), "valid": torch.from_numpy(sample.valid), "heat": heat,
            "reg": reg, "mask": mask, "weight": torch.from_numpy(weight)}


class TrainingStream(Dataset):
    """Index -> augmented sample. Index i renders simulated chip ``seed_base + i`` unless it is routed to a labelled
    scene crop (every ``labels_every``-th index when labelled scenes are given)."""

    def __init__(self, seed_base: int, chip_size: int = 128, classes: tuple[str, ...] = CLASSES, stride: int = 2,
                 labelled: LabelledScenes | None = None, labels_every: int = 4, length: int = 10**9,
                 augment: bool = True, ignore_faint: bool = True, chip_options: ChipOptions = ChipOptions(),
                 faint_limits: dict[str, float] | None = None, polarity_flip: float = 0.0):
        self.seed_base = seed_base
        self.chip_options = chip_options
        self.polarity_flip = polarity_flip
        self.chip_size = chip_size
        self.classes = classes
        self.stride = stride
        self.labelled = labelled if labelled is not None and len(labelled) else None
        self.labels_every = max(1, labels_every)
        self.length = length
        self.augment = augment
        self.min_contrast = faint_limits if ignore_faint else {}

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed_base, index, 7])
        if self.labelled is not None and index % self.labels_every == 0:
            s = self.labelled.crop(rng, self.chip_size)
        else:
            s = chip_sample(self.seed_base + index, self.chip_size, self.chip_options)
        if self.polarity_flip > 0 and np.random.default_rng([self.seed_base, index, 11]).random() < self.polarity_flip:
            s = Sample(invert_polarity(s.bands, s.valid), s.valid, s.objects)  # own RNG: other samples unchanged
        if self.augment:
            s = dihedral(s, int(rng.integers(8)))
            s = Sample(radiometric_jitter(s.bands, rng), s.valid, s.objects)
        return s

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return sample_to_tensors(self.sample(index), self.classes, self.stride, self.min_contrast)


class LabelledScenes:
    """A user's labelled data: ``DIR/<name>.tif`` scene GeoTIFFs, each with ``<name>.labels.geojson``,
    ``<name>.truth.geojson`` or ``<name>.geojson`` (Objects format). Crops are drawn around labels or anywhere."""

    SUFFIXES = (".labels.geojson", ".truth.geojson", ".geojson")

    def __init__(self, *directories: str | Path):
        from pipeline.geotiff import read_scene
        from pipeline.objects import read_objects

        self.items: list[Sample] = []
        tifs = []
        for directory in directories:
            directory = Path(directory)
            if not directory.is_dir():
                raise SceneError(f"--labels {directory}: not a folder of <scene>.tif + <scene>.labels.geojson pairs")
            tifs += sorted(directory.glob("*.tif"))
        for tif in tifs:
            label = next((tif.with_name(tif.stem + s) for s in self.SUFFIXES if tif.with_name(tif.stem + s).exists()),
                         None)
            if label is None:
                log.warning("labels: %s has no %s next to it; skipped", tif.name, " / ".join(self.SUFFIXES))
                continue
            scene = read_scene(tif)
            objs = []
            h, w = scene.valid.shape
            for o in read_objects(label, crs=scene.crs):
                row, col = map_to_pixel(scene.transform, o.x, o.y)
                r, c = int(np.floor(row)), int(np.floor(col))
                occluded = not (0 <= r < h and 0 <= c < w and bool(scene.valid[r, c]))
                objs.append(LabelledObject(o.cls, float(row), float(col), o.length_m, o.width_m, o.heading_deg,
                                           o.moving, o.speed_mps, occluded))
            self.items.append(Sample(scene.bands[[scene.band_names.index(b) for b in ("B02", "B03", "B04", "B08")]],
                                     scene.valid, objs))
        if not self.items:
            names = ", ".join(str(d) for d in directories)
            raise SceneError(f"--labels {names}: no <scene>.tif with a matching labels GeoJSON found")

    def __len__(self) -> int:
        return len(self.items)

    def crop(self, rng: np.random.Generator, size: int) -> Sample:
        item = self.items[int(rng.integers(len(self.items)))]
        h, w = item.valid.shape
        if item.objects and rng.random() < 0.7:
            o = item.objects[int(rng.integers(len(item.objects)))]
            r0 = int(np.clip(o.row - rng.uniform(8, size - 8), 0, max(0, h - size)))
            c0 = int(np.clip(o.col - rng.uniform(8, size - 8), 0, max(0, w - size)))
        else:
            r0, c0 = int(rng.integers(0, max(1, h - size + 1))), int(rng.integers(0, max(1, w - size + 1)))
        bands = np.zeros((4, size, size), np.float32)
        valid = np.zeros((size, size), bool)
        sub = item.bands[:, r0 : r0 + size, c0 : c0 + size]
        bands[:, : sub.shape[1], : sub.shape[2]] = sub
        valid[: sub.shape[1], : sub.shape[2]] = item.valid[r0 : r0 + size, c0 : c0 + size]
        objs = [LabelledObject(o.cls, o.row - r0, o.col - c0, o.length_m, o.width_m, o.heading_deg, o.moving,
                               o.speed_mps, o.occluded) for o in item.objects
                if 0 <= o.row - r0 < size and 0 <= o.col - c0 < size]
        return Sample(bands, valid, objs)
