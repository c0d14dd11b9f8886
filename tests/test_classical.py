"""Classical baseline: finds a planted aircraft-sized blob and reads a truck's heading from its band offset."""

from __future__ import annotations

import math

import pytest

from pipeline.classical import ClassicalDetector
from pipeline.georef import map_to_pixel
from tests.helpers import flat_scene, plant_blob, plant_truck


def test_planted_aircraft_is_found_where_it_is():
    scene = flat_scene(128, 128, seed=1)
    plant_blob(scene, 40, 60, size=7)
    plant_blob(scene, 90, 30, size=2, delta=0.25)
    dets = ClassicalDetector().detect(scene)
    large = [d for d in dets if d.cls == "large_aircraft"]
    small = [d for d in dets if d.cls == "small_aircraft"]
    assert len(large) == 1 and len(small) == 1
    row, col = map_to_pixel(scene.transform, large[0].x, large[0].y)
    assert row == pytest.approx(40.5, abs=0.7) and col == pytest.approx(60.5, abs=0.7)
    assert 35.0 < large[0].lat < 36.0 and 35.0 < large[0].lon < 37.0


@pytest.mark.parametrize(("d_row", "d_col", "heading"), [(0, 1, 90.0), (-1, 0, 0.0), (1, -1, 225.0)])
def test_truck_heading_from_band_offset(d_row, d_col, heading):
    scene = flat_scene(64, 64, seed=2)
    plant_truck(scene, 30, 30, d_row, d_col)
    dets = [d for d in ClassicalDetector().detect(scene) if d.cls == "vehicle"]
    assert len(dets) == 1
    assert dets[0].moving is True
    diff = abs((dets[0].heading_deg - heading + 180) % 360 - 180)
    assert diff < 1.0
    expected_speed = 2 * math.hypot(d_row, d_col) * 10 / 1.005
    assert dets[0].speed_mps == pytest.approx(expected_speed, rel=0.02)


def test_clouded_pixels_yield_nothing():
    scene = flat_scene(96, 96, seed=4)
    plant_blob(scene, 48, 48, size=7)
    scene.valid[30:70, 30:70] = False
    assert ClassicalDetector().detect(scene) == []
