"""Training samples for the verifier: the detector's own candidates in labelled scenes, each a crop with its label.

A candidate is a peak of the verifier's class scoring at least ``floor``. It is positive when the DESIGN.md matching
rule pairs it with a truth object (greedy by score, 30 m for large aircraft), negative otherwise: a second peak on
an aircraft already matched is a negative, as it is a false detection. So the negatives are exactly the mistakes
the detector makes where the verifier will be asked, and the positives include the true objects it scores too low.
The scenes must not be evaluation scenes (set A, validation) or the detector's training scenes (its candidates
there are fewer and easier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.crop_records import CropRecords
from models.heading_net import extract_crops


@dataclass
class SampleSet(CropRecords):
    """Candidate crops with their labels."""

    crops: np.ndarray  # (N, 4, S, S) float32 reflectance
    valid: np.ndarray  # (N, S, S) bool
    score: np.ndarray  # (N,) float32, the detector's score
    label: np.ndarray  # (N,) bool, matched to a truth object
    group: np.ndarray  # (N,) int32, index of the scene it came from (validation splits by scene)


def empty_samples(crop: int) -> SampleSet:
    return SampleSet(np.zeros((0, 4, crop, crop), np.float32), np.zeros((0, crop, crop), bool),
                     np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, np.int32))


def scene_samples(detector, tif: Path, cls: str, floor: float, crop: int, group: int) -> SampleSet:
    """The candidates of class ``cls`` scoring >= ``floor`` in one labelled scene GeoTIFF (``<name>.truth.geojson``
    or labels beside it), labelled by the matching rule. ``detector`` must report ``cls`` down to ``floor``."""
    from models.dataset import LabelledScenes
    from models.evaluate import observable
    from pipeline.geotiff import read_scene
    from pipeline.objects import read_objects

    label = next((tif.with_name(tif.stem + s) for s in LabelledScenes.SUFFIXES
                  if tif.with_name(tif.stem + s).exists()), None)
    if label is None:
        return empty_samples(crop)
    scene = read_scene(tif)
    truth = observable(read_objects(label, crs=scene.crs), scene)
    return labelled_samples(detector, scene, truth, cls, floor, crop, group)


def build_samples(detector, scene_dirs: list[Path], cls: str, floor: float, crop: int,
                  progress=None) -> SampleSet:
    """Samples of every labelled scene in ``scene_dirs`` (sorted, so the set is the same on every machine)."""
    tifs = [t for d in scene_dirs for t in sorted(Path(d).glob("*.tif"))]
    parts = []
    for k, tif in enumerate(tifs):
        parts.append(scene_samples(detector, tif, cls, floor, crop, k))
        if progress:
            progress(k + 1, len(tifs))
    return SampleSet.concat(parts or [empty_samples(crop)])


def labelled_samples(detector, scene, truth: list, cls: str, floor: float, crop: int, group: int) -> SampleSet:
    """The candidates of class ``cls`` scoring >= ``floor`` in one in-memory scene, labelled against ``truth``
    (observable objects only) by the matching rule."""
    from pipeline.evaluation import match_class
    from pipeline.georef import map_to_pixel

    dets = [d for d in detector.detect(scene) if d.cls == cls and (d.score or 0.0) >= floor]
    if not dets:
        return empty_samples(crop)
    matched = {id(m.detection) for m in match_class(dets, truth, cls).matches}
    bands = scene.bands[[scene.band_names.index(b) for b in ("B02", "B03", "B04", "B08")]].astype(np.float32)
    rc = np.array([map_to_pixel(scene.transform, d.x, d.y) for d in dets], np.float64)
    crops, cvalid, _ = extract_crops(bands, scene.valid.astype(bool), rc[:, 0], rc[:, 1], crop)
    return SampleSet(crops.astype(np.float32), cvalid, np.array([d.score for d in dets], np.float32),
                     np.array([id(d) in matched for d in dets], bool), np.full(len(dets), group, np.int32))


def chip_samples(detector, seeds: range, size: int, options, cls: str, floor: float, crop: int,
                 progress=None) -> SampleSet:
    """Samples of ``render_chip`` chips (the chip renderer: any paint, ground-matched grey aircraft with shadows,
    fighter rows, per ``options``). They widen what the scene renderer's aircraft look like; their group is -1, so
    they are always training samples."""
    from models.evaluate import chip_scene, observable

    parts = []
    for k, seed in enumerate(seeds):
        scene, truth = chip_scene(seed, size, options=options)
        parts.append(labelled_samples(detector, scene, observable(truth, scene), cls, floor, crop, -1))
        if progress:
            progress(k + 1, len(seeds))
    return SampleSet.concat(parts or [empty_samples(crop)])
