"""Clouds (fractal, bright, whitish across bands) with displaced shadows, and thin haze.

The cloudy fraction is drawn first (``cloud_fraction``) and the cloud field is thresholded at its own quantile, so
the catalogue's cloud cover (known before rendering) equals the rendered cover. Cloud and shadow pixels are
invalid, like the cloud / shadow classes of the L2A scene classification (slightly generous at the edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.simulate.physics import derive_seed, fractal_noise

CLOUD_SPECTRUM = np.array([1.0, 0.985, 0.975, 0.96], dtype=np.float32)  # bright, near-white across VNIR


def cloud_fraction(seed: int, cloud_probability: float, cloud_free: bool = False) -> float:
    """Fraction of the scene under cloud for this seed: 0 with probability 1 - p, else skewed towards small."""
    if cloud_free or cloud_probability <= 0:
        return 0.0
    rng = np.random.default_rng(derive_seed("cloud-draw", seed))
    if rng.random() >= cloud_probability:
        return 0.0
    return float(np.clip(0.02 + 0.93 * rng.random() ** 1.6, 0.0, 0.95))


@dataclass
class CloudLayer:
    opacity: np.ndarray  # (H, W) 0..1
    shadow: np.ndarray  # (H, W) 0..1 darkening strength
    invalid: np.ndarray  # (H, W) bool
    brightness: float


def cloud_layer(shape: tuple[int, int], fraction: float, rng: np.random.Generator, *,
                shadow_shift_px: tuple[float, float], edge_softness: float = 1.0,
                shadow_depth: float = 0.55) -> CloudLayer | None:
    """A cloud field covering ``fraction`` of the grid, its shadow displaced by ``shadow_shift_px`` (drow, dcol)."""
    if fraction <= 0:
        return None
    h, w = shape
    field = fractal_noise((h, w), rng, beta=3.4)
    thr = float(np.quantile(field, 1.0 - fraction))
    opacity = np.clip((field - thr) / edge_softness, 0.0, 1.0) ** 0.7
    cloudy = field > thr
    dr, dc = int(round(shadow_shift_px[0])), int(round(shadow_shift_px[1]))
    shadow = np.zeros_like(opacity)
    shadow_mask = np.zeros_like(cloudy)
    src_r = slice(max(0, -dr), min(h, h - dr))
    dst_r = slice(max(0, dr), min(h, h + dr))
    src_c = slice(max(0, -dc), min(w, w - dc))
    dst_c = slice(max(0, dc), min(w, w + dc))
    if src_r.start < src_r.stop and src_c.start < src_c.stop:
        shadow[dst_r, dst_c] = opacity[src_r, src_c]
        shadow_mask[dst_r, dst_c] = cloudy[src_r, src_c]
    shadow = np.clip(shadow * 1.5, 0, 1) * shadow_depth
    shadow_mask &= shadow > 0.05
    return CloudLayer(opacity=opacity.astype(np.float32), shadow=shadow.astype(np.float32),
                      invalid=cloudy | shadow_mask, brightness=float(rng.uniform(0.35, 0.8)))


def apply_clouds(bands: np.ndarray, layer: CloudLayer, rng: np.random.Generator) -> np.ndarray:
    """Darken under shadows, then blend the cloud tops (thicker = brighter) over everything."""
    out = bands * (1.0 - layer.shadow)[None]
    thick = 0.6 + 0.4 * layer.opacity
    spec = CLOUD_SPECTRUM * rng.uniform(0.97, 1.03, 4).astype(np.float32)
    cloud = layer.brightness * thick[None] * spec[:, None, None]
    op = layer.opacity[None]
    return (out * (1.0 - op) + cloud * op).astype(np.float32)


def haze_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth 0..1 field for thin haze."""
    f = fractal_noise(shape, rng, beta=4.0)
    f = (f - f.min()) / max(float(np.ptp(f)), 1e-6)
    return f.astype(np.float32)
