"""Simulator physics: band-offset rainbow of moving trucks, sub-pixel coverage, plan forms, clouds."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.simulate import physics, sensor
from pipeline.simulate.aircraft import CATALOGUE, plan_form
from pipeline.simulate.canvas import Canvas, Placement, coverage, rect
from pipeline.simulate.clouds import cloud_fraction, cloud_layer
from pipeline.simulate.painters import paint_truck

BANDS = {b: i for i, b in enumerate(physics.BANDS)}


def _truck_scene(heading: float, speed: float, psf: float = 0.5, seed: int = 0) -> np.ndarray:
    """A bright truck on flat asphalt, through the sensor model (PSF + noise), no misregistration."""
    canvas = Canvas(np.full((4, 40, 40), 0.07, np.float32))
    paint_truck(canvas, 20.0, 20.0, heading, 12.0, 2.5, np.array([0.42, 0.43, 0.44, 0.46]), speed_mps=speed)
    # no noise: this checks geometry through the PSF, not detectability (see test_simulate_render for that)
    params = sensor.SensorParams((psf,) * 4, 0.0, 1.0, (1.0,) * 4, 0.0, (0.0, 0.0), ((0.0, 0.0),) * 4)
    bands, _ = sensor.observe(canvas.bands, params, np.random.default_rng(seed))
    return bands


def _centroid(img: np.ndarray, background: float = 0.07, half: int = 5) -> np.ndarray:
    """Mass centroid of the excess over the background in a window around the truck (pixel centres at +0.5)."""
    win = img[20 - half:20 + half, 20 - half:20 + half] - background
    rr, cc = np.mgrid[20 - half:20 + half, 20 - half:20 + half] + 0.5
    return np.array([(win * rr).sum() / win.sum(), (win * cc).sum() / win.sum()])


@pytest.mark.parametrize("speed", [10.0, 22.0, 30.0])
def test_truck_moving_east_shows_red_east_of_blue_by_speed_times_1005ms(speed):
    bands = _truck_scene(heading=90.0, speed=speed)
    c02, c03, c04 = (_centroid(bands[BANDS[b]]) for b in ("B02", "B03", "B04"))
    expected_px = speed * 1.005 / 10.0
    assert c04[1] - c02[1] == pytest.approx(expected_px, abs=0.1)
    assert abs(c04[0] - c02[0]) < 0.05  # no north-south offset for an eastbound truck
    assert c02[1] < c03[1] < c04[1]  # the rainbow order: blue, green, red along the direction of travel


def test_truck_moving_north_west_offsets_point_north_west():
    bands = _truck_scene(heading=315.0, speed=25.0)
    d = _centroid(bands[BANDS["B04"]]) - _centroid(bands[BANDS["B02"]])
    step = 25.0 * 1.005 / 10.0 / np.sqrt(2)
    assert d[0] == pytest.approx(-step, abs=0.1)  # north = up = -row
    assert d[1] == pytest.approx(-step, abs=0.1)  # west = -col


def test_parked_truck_has_no_band_offset():
    bands = _truck_scene(heading=90.0, speed=0.0)
    d = _centroid(bands[BANDS["B04"]]) - _centroid(bands[BANDS["B02"]])
    assert np.hypot(*d) < 0.02


def test_band_delays_are_ordered_as_on_the_focal_plane():
    t = physics.BAND_TIME_OFFSET_S
    assert t["B02"] == 0.0 and t["B04"] == pytest.approx(1.005)
    assert t["B02"] < t["B08"] < t["B03"] < t["B04"]


def test_coverage_is_area_preserving_for_any_heading():
    for heading in (0.0, 33.0, 90.0, 147.0):
        got = coverage([Placement(10.3, 10.7, heading).to_pixels(rect(12.0, 2.5))], 24, (20, 20))  # trucks use ss=24
        assert got is not None
        assert got[0].sum() * 100.0 == pytest.approx(12.0 * 2.5, rel=0.08)


def test_an124_plan_form_has_real_dimensions_and_covers_about_7x7_pixels():
    t = CATALOGUE["An-124"]
    pts = np.concatenate(plan_form(t))
    assert np.ptp(pts[:, 0]) == pytest.approx(t.length_m, rel=0.02)
    assert np.ptp(pts[:, 1]) == pytest.approx(t.span_m, rel=0.02)
    canvas = Canvas(np.zeros((4, 20, 20), np.float32))
    from pipeline.simulate.painters import paint_aircraft

    paint_aircraft(canvas, t, 10.0, 10.0, 30.0, np.ones(4))
    touched = canvas.bands[0] > 0.05
    rows, cols = np.nonzero(touched)
    assert 6 <= np.ptp(rows) + 1 <= 10 and 6 <= np.ptp(cols) + 1 <= 10
    assert CATALOGUE["Su-24"].cls == "small_aircraft" and CATALOGUE["Mi-8"].cls == "helicopter"
    assert all((t.cls == "large_aircraft") == (t.length_m >= 35) for t in CATALOGUE.values() if not t.rotor_blades)


def test_cloud_layer_covers_the_drawn_fraction_and_is_invalid():
    layer = cloud_layer((200, 200), 0.3, np.random.default_rng(1), shadow_shift_px=(-15.0, 10.0))
    cloudy = layer.opacity > 0
    assert cloudy.mean() == pytest.approx(0.3, abs=0.02)
    assert layer.invalid[cloudy].all()
    assert layer.invalid.mean() > cloudy.mean()  # shadows are invalid too
    assert cloud_fraction(5, 0.0) == 0.0 and cloud_fraction(5, 1.0) > 0.0
    assert cloud_fraction(5, 0.7) == cloud_fraction(5, 0.7)


def test_derive_seed_is_stable_across_processes():
    # a fixed value: Python's hash() would change between interpreter runs
    assert physics.derive_seed("acquisition", 20241213, "khmeimim", "2024-12-13") == physics.derive_seed(
        "acquisition", 20241213, "khmeimim", "2024-12-13")
    assert physics.derive_seed("a", 1) != physics.derive_seed("a", 2)
    assert physics.derive_seed("x") == 1637211439935739938
