"""Classical baseline detector: local-contrast blobs for aircraft, blue/red band-offset pairs for moving trucks.

It exists so the learned detector has an honest yardstick (the way S2TD's band-offset idea is a yardstick for
truck detection, Fisser et al., Remote Sensing 2022) and so basewatch works without weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.config import DetectorConfig
from pipeline.georef import object_at_pixel
from pipeline.types import PIXEL_SIZE_M, Detection, Scene

B02_TO_B04_S = 1.005  # s, ESA figure cited by Fisser et al. 2022: time between the blue and red exposures


@dataclass(frozen=True)
class ClassicalParams:
    """Thresholds of the heuristic, in robust standard deviations of the local-contrast image."""

    background_px: int = 13
    blob_sigma: float = 8.0
    min_contrast: float = 0.09
    large_min_px: int = 12
    small_min_px: int = 4
    large_max_px: int = 90
    offset_sigma: float = 5.0
    pair_min_px: float = 0.8
    pair_max_px: float = 3.5


def _robust_sigma(values: np.ndarray) -> float:
    if values.size == 0:
        return 1.0
    med = np.median(values)
    mad = np.median(np.abs(values - med))
    return float(max(mad * 1.4826, 1e-4))


def _noise_sigma(img: np.ndarray, valid: np.ndarray) -> float:
    """Pixel noise from neighbour differences: texture-free, unlike the spread of the image itself."""
    d = (img[:, 1:] - img[:, :-1])[valid[:, 1:] & valid[:, :-1]]
    return _robust_sigma(d) / math.sqrt(2.0)


def _robust_background(img: np.ndarray, valid: np.ndarray, size_px: int) -> np.ndarray:
    """Median background on a 4x coarser grid: robust to the aircraft it should not contain, and fast."""
    fill = np.where(valid, img, np.median(img[valid]) if valid.any() else 0.0)
    f = 4
    h, w = fill.shape
    ph, pw = (-h) % f, (-w) % f
    padded = np.pad(fill, ((0, ph), (0, pw)), mode="edge")
    coarse = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean(axis=(1, 3))
    coarse = ndimage.median_filter(coarse, size=max(3, size_px // f), mode="nearest")
    up = ndimage.zoom(coarse, f, order=1, mode="nearest", grid_mode=True)
    return up[:h, :w]


def _local_contrast(img: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Image minus its local mean over valid pixels (box filter; clouds do not bleed in)."""
    w = valid.astype(np.float32)
    num = ndimage.uniform_filter(img * w, size=size, mode="nearest")
    den = ndimage.uniform_filter(w, size=size, mode="nearest")
    return img - num / np.maximum(den, 1e-3)


class ClassicalDetector:
    """Heuristic detector behind the Detector interface; no learning, no weights."""

    name = "classical"
    version = "1.0"
    classes = ("large_aircraft", "small_aircraft", "vehicle")

    def __init__(self, cfg: DetectorConfig | None = None, params: ClassicalParams | None = None):
        self.cfg = cfg or DetectorConfig(name="classical")
        self.params = params or ClassicalParams()

    @property
    def model_id(self) -> str:
        return f"{self.name}-{self.version}"

    def detect(self, scene: Scene) -> list[Detection]:
        return self._aircraft(scene) + self._moving_vehicles(scene)

    def _aircraft(self, scene: Scene) -> list[Detection]:
        """Morphological top-hats keep objects smaller than the structuring element (aircraft), not the edges
        of large bright or dark surfaces (aprons, roofs, fields)."""
        p = self.params
        valid = ndimage.binary_erosion(scene.valid, iterations=2)
        vis = (scene.band("B02") + scene.band("B03") + scene.band("B04")) / 3.0
        vis = np.where(scene.valid, vis, np.median(vis[scene.valid]) if scene.valid.any() else 0.0)
        out: list[Detection] = []
        for tophat in (ndimage.white_tophat, ndimage.black_tophat):
            contrast = tophat(vis, size=p.background_px)
            sigma = max(_noise_sigma(vis, valid), p.min_contrast / p.blob_sigma)
            out.extend(self._blobs(scene, contrast, valid, sigma))
        return out

    def _blobs(self, scene: Scene, contrast: np.ndarray, valid: np.ndarray, sigma: float) -> list[Detection]:
        p = self.params
        strong = (contrast > p.blob_sigma * sigma) & valid
        weak = (contrast > 0.5 * p.blob_sigma * sigma) & valid  # hysteresis: grow strong seeds into their blob
        labels, n = ndimage.label(weak, structure=np.ones((3, 3), bool))
        if n == 0:
            return []
        seeded = np.unique(labels[strong])
        mask = np.isin(labels, seeded[seeded > 0])
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        if n == 0:
            return []
        idx = np.arange(1, n + 1)
        areas = ndimage.sum(mask, labels, idx)
        cores = ndimage.sum(strong, labels, idx)
        weights = np.clip(contrast, 0, None)
        centres = ndimage.center_of_mass(weights, labels, idx)
        peaks = ndimage.maximum(weights, labels, idx)
        out: list[Detection] = []
        for area, core, (row, col), peak in zip(areas, cores, centres, peaks, strict=True):
            if p.large_min_px <= area <= p.large_max_px and core >= p.large_min_px / 2:
                cls = "large_aircraft"
            elif p.small_min_px <= area < p.large_min_px and core >= 2:
                cls = "small_aircraft"
            else:
                continue
            score = float(min(1.0, 0.5 * peak / (p.blob_sigma * sigma)))
            if score < self.cfg.score_threshold:
                continue
            length = math.sqrt(area) * PIXEL_SIZE_M
            out.append(
                object_at_pixel(
                    scene.transform, scene.crs, row + 0.5, col + 0.5, cls,
                    score=round(score, 3), length_m=round(length, 1), width_m=round(length, 1),
                )
            )
        return out

    def _moving_vehicles(self, scene: Scene) -> list[Detection]:
        """Pair a blue-excess peak with a red-excess peak 1-3.5 px away: one truck seen at two instants."""
        p = self.params
        valid = ndimage.binary_erosion(scene.valid, iterations=2)
        blue = _local_contrast(scene.band("B02"), scene.valid, 7)
        red = _local_contrast(scene.band("B04"), scene.valid, 7)
        green = _local_contrast(scene.band("B03"), scene.valid, 7)
        excess = blue - red
        sigma = _robust_sigma(excess[valid])
        thr = p.offset_sigma * sigma
        maxf = ndimage.maximum_filter(excess, size=3)
        minf = ndimage.minimum_filter(excess, size=3)
        blue_peaks = np.argwhere((excess == maxf) & (excess > thr) & valid)
        red_peaks = np.argwhere((excess == minf) & (excess < -thr) & valid)
        if len(blue_peaks) == 0 or len(red_peaks) == 0:
            return []
        candidates = []
        for bi, (br, bc) in enumerate(blue_peaks):
            d = np.hypot(red_peaks[:, 0] - br, red_peaks[:, 1] - bc)
            for ri in np.nonzero((d >= p.pair_min_px) & (d <= p.pair_max_px))[0]:
                rr, rc = red_peaks[ri]
                mid = green[min(br, rr):max(br, rr) + 1, min(bc, rc):max(bc, rc) + 1]
                if mid.max() < 0.5 * thr:  # the green exposure lies between blue and red (S2TD's cue)
                    continue
                strength = excess[br, bc] - excess[tuple(red_peaks[ri])]
                candidates.append((strength, bi, int(ri)))
        candidates.sort(reverse=True)
        used_b: set[int] = set()
        used_r: set[int] = set()
        out: list[Detection] = []
        for strength, bi, ri in candidates:
            if bi in used_b or ri in used_r:
                continue
            used_b.add(bi)
            used_r.add(ri)
            (br, bc), (rr, rc) = blue_peaks[bi], red_peaks[ri]
            d_east, d_north = float(rc - bc), float(br - rr)
            heading = math.degrees(math.atan2(d_east, d_north)) % 360.0
            dist_m = math.hypot(d_east, d_north) * PIXEL_SIZE_M
            score = float(min(1.0, 0.25 * strength / thr))
            if score < self.cfg.score_threshold:
                continue
            out.append(
                object_at_pixel(
                    scene.transform, scene.crs, (br + rr) / 2 + 0.5, (bc + rc) / 2 + 0.5, "vehicle",
                    score=round(score, 3), heading_deg=round(heading, 1), moving=True,
                    speed_mps=round(dist_m / B02_TO_B04_S, 1), length_m=10.0, width_m=2.5,
                )
            )
        return out
