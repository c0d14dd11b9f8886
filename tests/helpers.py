"""Hand-built scenes for unit tests that must not depend on the simulator."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from affine import Affine

from pipeline.types import BAND_NAMES, Acquisition, Scene

ORIGIN = (760000.0, 3920000.0)  # a point in EPSG:32636 near Khmeimim


def flat_scene(height: int = 128, width: int = 128, seed: int = 0, level: float = 0.12,
               noise: float = 0.004, crs: str = "EPSG:32636") -> Scene:
    rng = np.random.default_rng(seed)
    bands = (level + noise * rng.standard_normal((4, height, width))).astype(np.float32)
    acq = Acquisition(source="test", id=f"test-{seed}", sensor="Sentinel-2A",
                      datetime=datetime(2024, 12, 13, 8, 25, tzinfo=UTC), cloud_cover=0.0)
    return Scene(bands=bands, band_names=BAND_NAMES, transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
                 crs=crs, valid=np.ones((height, width), bool), acquisition=acq, simulated=False)


def plant_blob(scene: Scene, row: int, col: int, size: int, delta: float = 0.15) -> None:
    r0, c0 = row - size // 2, col - size // 2
    scene.bands[:, r0:r0 + size, c0:c0 + size] += delta


def plant_truck(scene: Scene, row: int, col: int, d_row: int, d_col: int, delta: float = 0.12) -> None:
    """A moving truck's rainbow: seen in B02 at (row, col), B03 one step on, B04 two steps on (B08 with B02)."""
    idx = {b: i for i, b in enumerate(scene.band_names)}
    scene.bands[idx["B02"], row, col] += delta
    scene.bands[idx["B08"], row, col] += delta
    scene.bands[idx["B03"], row + d_row, col + d_col] += delta
    scene.bands[idx["B04"], row + 2 * d_row, col + 2 * d_col] += delta
