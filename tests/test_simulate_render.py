"""AOI scene rendering: determinism, ground-truth consistency, clouds, GeoTIFF round trip, columns."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from shapely.geometry import Point

from pipeline.config import PhaseFile, load_aoi, load_scenario
from pipeline.georef import lonlat_to_map, map_to_pixel
from pipeline.geotiff import read_scene
from pipeline.simulate.command import write_simulated
from pipeline.simulate.physics import BAND_TIME_OFFSET_S
from pipeline.simulate.render import render_grid, render_scene

WHEN = datetime(2024, 12, 13, 8, 25, tzinfo=UTC)
DRAWDOWN = PhaseFile(name="drawdown", start="2024-12-12", parked_aircraft={"An-124": 2, "Il-76": 3, "Tu-154": 1,
                     "Su-24": 4, "Mi-8": 2}, parked_vehicles=30, outbound_columns=3, inbound_columns=1,
                     vehicles_per_column=(10, 14), local_traffic=3)


@pytest.fixture(scope="module")
def khmeimim():
    return load_aoi("khmeimim")


@pytest.fixture(scope="module")
def clear_scene(khmeimim):
    return render_scene(khmeimim, WHEN, seed=11, activity=DRAWDOWN, cloud_free=True)


def _score(bands: np.ndarray, row: float, col: float) -> float:
    """How far the 3x3 window at (row, col) departs from the surrounding ring, in robust sigmas (band mean)."""
    i, j = int(row), int(col)
    win = bands[:, i - 1:i + 2, j - 1:j + 2].reshape(4, -1)
    yy, xx = np.mgrid[-8:9, -8:9]
    ring = bands[:, i - 8:i + 9, j - 8:j + 9][:, np.maximum(abs(yy), abs(xx)) >= 6]
    med = np.median(ring, axis=1)
    mad = np.median(np.abs(ring - med[:, None]), axis=1) * 1.4826 + 1e-4
    return float((np.abs(win - med[:, None]).max(axis=1) / mad).mean())


def test_scene_is_on_the_aoi_grid_and_marked_simulated(clear_scene, khmeimim):
    s = clear_scene.scene
    g = khmeimim.grid()
    assert s.bands.shape == (4, g.height, g.width) and s.bands.dtype == np.float32
    assert s.band_names == ("B02", "B03", "B04", "B08")
    assert s.transform == g.transform and s.crs == g.crs
    assert s.simulated and s.acquisition.simulated
    assert s.valid.all()  # cloud_free
    assert float(s.bands.min()) >= 0.0 and float(np.median(s.bands)) < 0.4


def test_truth_counts_follow_the_activity(clear_scene):
    classes = [o.cls for o in clear_scene.truth]
    assert classes.count("large_aircraft") == 6  # An-124 x2, Il-76 x3, Tu-154
    assert classes.count("small_aircraft") == 4
    assert classes.count("helicopter") == 2
    types = [o.type for o in clear_scene.truth if o.cls == "large_aircraft"]
    assert types.count("An-124") == 2
    parked = [o for o in clear_scene.truth if o.cls == "vehicle" and not o.moving]
    assert len(parked) == 30
    assert all(o.speed_mps == 0.0 for o in parked)


def test_large_aircraft_are_where_the_pixels_stand_out(clear_scene, khmeimim):
    s = clear_scene.scene
    aircraft = [o for o in clear_scene.truth if o.cls == "large_aircraft"]
    scores = [_score(s.bands, *map_to_pixel(s.transform, o.x, o.y)) for o in aircraft]
    assert min(scores) > 2.5, scores
    # and an aircraft-free spot of the same aprons does not: shift each truth position by 150 m
    rng = np.random.default_rng(0)
    empty = []
    for o in aircraft:
        row, col = map_to_pixel(s.transform, o.x, o.y)
        ang = rng.uniform(0, 2 * np.pi)
        r2, c2 = row + 15 * np.sin(ang), col + 15 * np.cos(ang)
        if all(np.hypot(*(np.array(map_to_pixel(s.transform, t.x, t.y)) - (r2, c2))) > 8 for t in clear_scene.truth):
            empty.append(_score(s.bands, r2, c2))
    assert np.median(scores) > 2 * np.median(empty)
    # truth geometry is consistent: lon/lat and map x/y agree, aircraft sit in apron or runway zones
    for o in aircraft:
        x, y = lonlat_to_map(s.crs, o.lon, o.lat)
        assert abs(x - o.x) < 0.5 and abs(y - o.y) < 0.5
        assert o.zone is not None and khmeimim.zone(o.zone).kind in ("apron", "runway")
        assert khmeimim.zone(o.zone).polygon.buffer(0.0005).contains(Point(o.lon, o.lat))


def _centroid_along(excess: np.ndarray, t: np.ndarray) -> float:
    w = np.clip(excess - 0.4 * excess.max(), 0, None)
    return float((w * t).sum() / w.sum())


def test_moving_trucks_show_the_band_offset_along_their_heading(khmeimim):
    """Stack (median) every moving truck's profile along its heading, in units of its expected B02->B04 displacement
    (speed x 1.005 s): the B04 image must sit one unit ahead of the B02 image, B03 about half-way."""
    from scipy.ndimage import map_coordinates

    traffic = PhaseFile(name="traffic", start="2024-12-01", parked_vehicles=0, local_traffic=80)
    sim = render_scene(khmeimim, WHEN, seed=3, activity=traffic, cloud_free=True)
    s = sim.scene
    movers = [o for o in sim.truth if o.cls == "vehicle" and o.moving and o.speed_mps > 8]
    assert len(movers) >= 15
    u = np.arange(-2.5, 2.501, 0.05)  # along-heading position / expected displacement
    profiles = []
    for o in movers:
        row, col = map_to_pixel(s.transform, o.x, o.y)
        h = np.deg2rad(o.heading_deg)
        t = u * o.speed_mps * BAND_TIME_OFFSET_S["B04"] / 10.0  # pixels
        pts = np.array([row - 0.5 - t * np.cos(h), col - 0.5 + t * np.sin(h)])  # pixel centres at +0.5
        prof = [map_coordinates(s.bands[i], pts, order=1) for i in range(4)]
        profiles.append([p - np.median(np.concatenate([p[:10], p[-10:]])) for p in prof])
    stack = np.median(np.array(profiles), axis=0)  # median: robust to clutter next to a few trucks
    c02, c03, c04 = (_centroid_along(stack[i], u) for i in (0, 1, 2))
    assert c04 - c02 == pytest.approx(1.0, abs=0.3)  # red ahead of blue by speed x 1.005 s
    assert c02 < c03 < c04
    # B03 is imaged 0.527 s after B02: about half-way along the rainbow
    assert c03 - c02 == pytest.approx(0.527 / 1.005, abs=0.25)


def test_columns_move_outbound_away_from_the_road_start(clear_scene, khmeimim):
    cols = clear_scene.truth_columns
    assert {c.direction for c in cols} == {"outbound", "inbound"}
    by_id = {o.id: o for o in clear_scene.truth}
    roads = {r.name: khmeimim.to_utm(r.line) for r in khmeimim.roads}
    for col in cols:
        assert col.vehicles == len(col.members) >= 2
        road = roads[col.road]
        for mid in col.members:
            o = by_id[mid]
            assert o.moving and o.cls == "vehicle"
            h = np.deg2rad(o.heading_deg)
            here = road.project(Point(o.x, o.y))
            ahead = road.project(Point(o.x + 30 * np.sin(h), o.y + 30 * np.cos(h)))
            assert (ahead > here) == (col.direction == "outbound")
        start = col.line.coords[0]
        assert -180 <= start[0] <= 180 and -90 <= start[1] <= 90  # lon/lat line


def test_same_seed_same_pixels_different_seed_different(khmeimim, clear_scene):
    again = render_scene(khmeimim, WHEN, seed=11, activity=DRAWDOWN, cloud_free=True)
    assert again.scene.bands.tobytes() == clear_scene.scene.bands.tobytes()
    assert [o.id for o in again.truth] == [o.id for o in clear_scene.truth]
    other = render_scene(khmeimim, WHEN, seed=12, activity=DRAWDOWN, cloud_free=True)
    assert other.scene.bands.tobytes() != clear_scene.scene.bands.tobytes()
    # the ground itself is the same site: most of the scene differs only by noise / misregistration
    diff = np.abs(other.scene.bands - clear_scene.scene.bands).mean(axis=0)
    assert float(np.median(diff)) < 0.02


def test_clouds_make_pixels_invalid_and_bright(khmeimim):
    cloudy = render_scene(khmeimim, WHEN, seed=5, activity=DRAWDOWN, cloud_fraction_override=0.4)
    s = cloudy.scene
    assert s.acquisition.cloud_cover == pytest.approx(40.0)
    assert 0.3 < 1 - s.valid_fraction < 0.75  # cloud plus its shadow
    invalid = ~s.valid
    bright = s.bands[:3].mean(axis=0) > 0.3
    assert (bright & invalid).sum() > 0.2 * s.valid.size  # the cloud tops
    assert not (bright & s.valid).mean() > 0.02


def test_geotiff_round_trip(tmp_path, clear_scene):
    written = write_simulated(clear_scene, tmp_path)
    back = read_scene(written.scene)
    assert np.array_equal(back.bands, clear_scene.scene.bands)
    assert np.array_equal(back.valid, clear_scene.scene.valid)
    assert back.crs == clear_scene.scene.crs and back.transform == clear_scene.scene.transform
    assert back.simulated and back.acquisition.id == clear_scene.scene.acquisition.id
    assert back.acquisition.datetime == WHEN


def test_generic_grid_renders_without_an_aoi():
    aoi = load_aoi("tartus")
    grid = aoi.grid()
    sim = render_grid(grid, WHEN, seed=3, aoi=None, cloud_free=True)
    assert sim.scene.bands.shape == (4, grid.height, grid.width)
    assert all(o.cls == "vehicle" for o in sim.truth)  # generic routine: trucks only
    assert len(sim.truth) > 0


def test_render_is_fast_enough(khmeimim):
    import time

    render_scene(khmeimim, WHEN, seed=1, activity=DRAWDOWN)  # site cached
    t0 = time.perf_counter()
    render_scene(khmeimim, WHEN, seed=2, activity=DRAWDOWN)
    assert time.perf_counter() - t0 < 1.5  # ~0.15 s here; < 1 s target on one core, slack for a busy CI box


def test_seed_scenario_has_two_an124_at_khmeimim_on_13_dec():
    scenario = load_scenario()
    site = next(s for s in scenario.sites if s.aoi == "khmeimim")
    from pipeline.simulate.timeline import activity_on

    assert activity_on(site, WHEN.date()).parked_aircraft.get("An-124") == 2


def test_other_pixel_sizes_are_rendered_at_10m_and_resampled(khmeimim):
    from affine import Affine

    from pipeline.types import GridSpec

    g0 = khmeimim.grid()
    h, w = g0.height // 2, g0.width // 2
    g = GridSpec(g0.crs, g0.transform, 2 * w, 2 * h)
    g20 = GridSpec(g.crs, Affine(20.0, 0, g.transform.c, 0, -20.0, g.transform.f), w, h)
    sim = render_grid(g20, WHEN, seed=4, aoi=khmeimim, activity=DRAWDOWN, cloud_free=True, terrain_seed=9)
    assert sim.scene.bands.shape == (4, h, w) and sim.scene.transform == g20.transform
    full = render_grid(g, WHEN, seed=4, aoi=khmeimim, activity=DRAWDOWN, cloud_free=True, terrain_seed=9)
    coarse = full.scene.bands.reshape(4, h, 2, w, 2).mean(axis=(2, 4))
    assert np.abs(sim.scene.bands - coarse).mean() < 0.002  # the same scene, block-averaged
    assert len(sim.truth) == len(full.truth)


def test_absurd_grids_are_refused_with_a_clear_error(khmeimim):
    from affine import Affine

    from pipeline.errors import SceneError
    from pipeline.types import GridSpec

    huge = GridSpec("EPSG:32636", Affine(10.0, 0, 700000, 0, -10.0, 3950000), 20000, 20000)
    with pytest.raises(SceneError, match="split a large area"):
        render_grid(huge, WHEN, seed=1)


def test_unknown_aircraft_type_is_a_config_error(khmeimim):
    from pipeline.errors import ConfigError

    bad = PhaseFile(name="typo", start="2024-12-01", parked_aircraft={"An124": 1})
    with pytest.raises(ConfigError, match="unknown aircraft type.*An124.*known types: An-124"):
        render_scene(khmeimim, WHEN, seed=1, activity=bad)
