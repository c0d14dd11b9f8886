"""The aircraft swap of benchmarks/aircraft_swap.py: the procedure alone changes nothing, and a swap puts the donor's
local change on the host's ground."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from affine import Affine

from benchmarks.aircraft_swap import HALF, RADIUS, Spot, describe, local_change, swapped
from pipeline.types import Acquisition, Scene


def _scene(seed: int, ground: float) -> Scene:
    rng = np.random.default_rng(seed)
    bands = (ground + 0.01 * rng.standard_normal((4, 64, 64))).astype(np.float32)
    acq = Acquisition(source="simulated", id=f"s{seed}", sensor="Sentinel-2A",
                      datetime=datetime(2024, 12, 13, tzinfo=UTC), simulated=True)
    return Scene(bands=bands, band_names=("B02", "B03", "B04", "B08"), transform=Affine(10, 0, 500000, 0, -10, 3900000),
                 crs="EPSG:32636", valid=np.ones((64, 64), bool), acquisition=acq, simulated=True)


def test_an_aircraft_swapped_for_itself_leaves_the_scene_as_it_was():
    scene = _scene(1, 0.2)
    scene.bands[:, 30:35, 30:35] += 0.15  # a bright aircraft
    spot = Spot(32, 32, 0.0, 0.0, "ours")
    again = swapped(scene, [spot], [local_change(scene, spot)[0]])
    assert np.allclose(again.bands, scene.bands, atol=1e-6)


def test_a_swap_lays_the_donors_change_on_the_hosts_ground():
    donor_scene = _scene(2, 0.35)
    donor_scene.bands[:, 31:34, 31:34] -= 0.1  # a dark aircraft on bright ground
    donor, _ = local_change(donor_scene, Spot(32, 32, 0.0, 0.0, "grey"))
    host = _scene(3, 0.2)
    host.bands[:, 30:35, 30:35] += 0.15
    out = swapped(host, [Spot(32, 32, 0.0, 0.0, "ours")], [donor])
    centre = out.bands[:, 31:34, 31:34].mean()
    assert abs(centre - (0.2 - 0.1)) < 0.02  # the host's ground, darkened as the donor's aircraft darkened its own
    far = RADIUS > 10
    window = out.bands[:, 32 - HALF:32 + HALF + 1, 32 - HALF:32 + HALF + 1]
    assert np.allclose(window[:, far], host.bands[:, 32 - HALF:32 + HALF + 1, 32 - HALF:32 + HALF + 1][:, far])
    stats = describe([donor])
    assert stats["centre_brighter"] == 0.0 and stats["change_within_3px"] > 0.5
