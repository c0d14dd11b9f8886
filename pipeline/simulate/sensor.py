"""From the ground-truth reflectance canvas to what MSI L2A delivers: atmosphere, clouds, PSF, shift, noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.simulate import physics
from pipeline.simulate.clouds import CloudLayer, apply_clouds, haze_field


@dataclass(frozen=True)
class SensorParams:
    """Per-scene sensor and atmosphere draw (domain randomisation lives in how these are drawn)."""

    psf_sigma_px: tuple[float, float, float, float]
    noise_level: float
    gain: float  # illumination / seasonal gain on the surface reflectance
    band_gain: tuple[float, float, float, float]  # residual per-band calibration / atmospheric correction error
    haze_strength: float
    shift_px: tuple[float, float]  # (drow, dcol) misregistration of the whole scene
    band_shift_px: tuple[tuple[float, float], ...]  # small inter-band misregistration


def draw_sensor(rng: np.random.Generator, *, wide: bool = False) -> SensorParams:
    """Sensor draw; ``wide`` widens the ranges for training chips."""
    lo, hi = physics.PSF_SIGMA_RANGE_PX
    if wide:
        lo, hi = lo - 0.07, hi + 0.13
    base_sigma = rng.uniform(lo, hi)
    sig = tuple(float(base_sigma * rng.uniform(0.95, 1.05)) for _ in range(4))
    noise = float(np.exp(rng.uniform(np.log(0.6), np.log(6.0))) if wide else rng.uniform(0.8, 1.4))
    gain = float(rng.uniform(0.8, 1.2) if wide else rng.uniform(0.92, 1.08))
    bg = tuple(float(x) for x in rng.uniform(0.94, 1.06, 4)) if wide else tuple(float(x) for x in
                                                                                rng.uniform(0.98, 1.02, 4))
    haze = float(rng.uniform(0, 0.6) if rng.random() < (0.4 if wide else 0.25) else 0.0)
    shift = tuple(float(x) for x in np.clip(rng.normal(0, 0.18, 2), -0.45, 0.45))
    band_shift = tuple((float(a), float(b)) for a, b in np.clip(rng.normal(0, 0.04, (4, 2)), -0.1, 0.1))
    return SensorParams(sig, noise, gain, bg, haze, shift, band_shift)


def observe(surface: np.ndarray, params: SensorParams, rng: np.random.Generator,
            clouds: CloudLayer | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply illumination, haze, clouds, misregistration, PSF and noise; returns (bands, valid)."""
    gains = (params.gain * np.array(params.band_gain, dtype=np.float32))[:, None, None]
    out = surface * gains
    h, w = out.shape[1:]
    if params.haze_strength > 0:
        out = physics.apply_haze(out, haze_field((h, w), rng), params.haze_strength)
    if clouds is not None:
        out = apply_clouds(out, clouds, rng)
    shifted = np.empty_like(out)
    for b in range(out.shape[0]):
        dr = params.shift_px[0] + params.band_shift_px[b][0]
        dc = params.shift_px[1] + params.band_shift_px[b][1]
        shifted[b] = physics.subpixel_shift(out[b:b + 1], dr, dc)[0]
    out = physics.psf_blur(shifted, np.array(params.psf_sigma_px))
    out = physics.add_noise(out, rng, params.noise_level)
    out = np.clip(out, 0.0, 1.5).astype(np.float32)
    valid = np.ones((h, w), dtype=bool) if clouds is None else ~clouds.invalid
    return out, valid
