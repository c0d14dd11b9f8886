"""Land-cover classes, their surface reflectance, and spatially correlated texture.

Mean reflectances (B02, B03, B04, B08) are L2A values checked against real scenes in realdata/sen2ships
(CALIBRATION.md). Texture is 1/f^beta noise: brightness variation shared by all bands plus a greenness term that
mixes the class towards vegetation or soil, so texture is spectrally plausible rather than grey.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.simulate.physics import fractal_noise


@dataclass(frozen=True)
class Cover:
    name: str
    reflectance: tuple[float, float, float, float]
    texture: float  # relative std of brightness texture
    greenness: float  # std of the soil<->vegetation mixing term


COVERS: tuple[Cover, ...] = (
    Cover("soil", (0.085, 0.12, 0.165, 0.235), 0.14, 0.10),
    Cover("red_soil", (0.065, 0.095, 0.15, 0.23), 0.14, 0.08),
    Cover("desert", (0.16, 0.23, 0.31, 0.38), 0.09, 0.01),
    Cover("vegetation", (0.035, 0.065, 0.045, 0.31), 0.20, 0.15),
    Cover("shrub", (0.055, 0.085, 0.095, 0.22), 0.20, 0.12),
    Cover("urban", (0.10, 0.115, 0.13, 0.175), 0.28, 0.04),
    Cover("concrete", (0.19, 0.21, 0.225, 0.255), 0.05, 0.0),
    Cover("asphalt", (0.065, 0.075, 0.085, 0.105), 0.06, 0.0),
    Cover("water", (0.032, 0.033, 0.017, 0.010), 0.08, 0.0),
    Cover("dry_grass", (0.065, 0.095, 0.115, 0.225), 0.12, 0.08),
    Cover("gravel", (0.13, 0.15, 0.17, 0.20), 0.08, 0.0),
    Cover("runway", (0.095, 0.105, 0.115, 0.135), 0.05, 0.0),
)
COVER_INDEX: dict[str, int] = {c.name: i for i, c in enumerate(COVERS)}
VEGETATION = np.array(COVERS[COVER_INDEX["vegetation"]].reflectance, dtype=np.float32)
SOIL = np.array(COVERS[COVER_INDEX["soil"]].reflectance, dtype=np.float32)


def cover_id(name: str) -> int:
    return COVER_INDEX[name]


def palette(rng: np.random.Generator | None = None, jitter: float = 0.0) -> np.ndarray:
    """(n_classes, 4) mean reflectances, optionally jittered per scene/chip (domain randomisation)."""
    pal = np.array([c.reflectance for c in COVERS], dtype=np.float32)
    if rng is not None and jitter > 0:
        pal = pal * rng.uniform(1 - jitter, 1 + jitter, (len(COVERS), 1)).astype(np.float32)
        pal = pal * rng.uniform(1 - jitter / 3, 1 + jitter / 3, pal.shape).astype(np.float32)
    return pal


def render_cover(labels: np.ndarray, rng: np.random.Generator, *, pal: np.ndarray | None = None,
                 texture_scale: float = 1.0, fine: np.ndarray | None = None,
                 coarse: np.ndarray | None = None, green: np.ndarray | None = None) -> np.ndarray:
    """(4, H, W) float32 reflectance of a land-cover label image with correlated texture.

    Texture fields may be passed in (to keep a site's texture fixed across dates); otherwise they are drawn.
    """
    h, w = labels.shape
    pal = palette() if pal is None else pal
    if fine is None:
        fine = fractal_noise((h, w), rng, beta=1.3)  # pixel-scale grain (calibrated: CALIBRATION.md)
    if coarse is None:
        coarse = fractal_noise((h, w), rng, beta=3.2)
    if green is None:
        green = fractal_noise((h, w), rng, beta=2.6)
    tex_amp = np.array([c.texture for c in COVERS], dtype=np.float32)[labels] * texture_scale
    green_amp = np.array([c.greenness for c in COVERS], dtype=np.float32)[labels]
    bright = 1.0 + tex_amp * (0.8 * fine + 0.5 * coarse)
    base = pal[labels].transpose(2, 0, 1)  # (4, H, W)
    g = np.clip(green_amp * green, -0.6, 0.6)
    towards = np.where(g[None] > 0, VEGETATION[:, None, None], SOIL[:, None, None])
    out = base * bright[None] + np.abs(g)[None] * (towards - base)
    return np.clip(out, 0.003, 1.0).astype(np.float32)


def parcels(shape: tuple[int, int], rng: np.random.Generator, block_px: tuple[float, float],
            strip_px: tuple[float, float], classes: list[str]) -> np.ndarray:
    """Agricultural parcels: rotated blocks, each cut into strips of its own width and offset, each strip one cover.

    Field patterns of uneven sizes, as on real farmland (a plain checkerboard looks synthetic).
    """
    h, w = shape
    ang = rng.uniform(0, np.pi)
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    u = rr * np.cos(ang) + cc * np.sin(ang)
    v = -rr * np.sin(ang) + cc * np.cos(ang)
    n = 100003
    table = np.random.default_rng(int(rng.integers(1 << 31)))
    iu = np.floor(u / rng.uniform(*block_px) + rng.random()).astype(np.int64)
    key_u = (iu * 7919) % n
    width = table.uniform(*strip_px, n)[key_u]
    offset = table.uniform(0, 50, n)[key_u]
    iv = np.floor((v + offset) / width).astype(np.int64)
    cell = (iu * 7919 + iv * 104729) % n
    ids = np.array([cover_id(c) for c in classes])
    return ids[table.integers(0, len(ids), n)][cell]
