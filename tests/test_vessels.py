"""The vessel detector on hand-made harbours: ships at sea and alongside a pier, land, haze, boats."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from affine import Affine

from pipeline.types import Acquisition, Scene
from pipeline.vessels import VesselRule, detect_vessels, otsu, water_threshold

WATER = np.array([0.06, 0.05, 0.03, 0.02], np.float32)
LAND = np.array([0.12, 0.15, 0.18, 0.30], np.float32)
GREY_HULL = np.array([0.09, 0.09, 0.09, 0.09], np.float32)
ORIGIN = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 3_860_000.0)


def harbour(shape=(120, 160), water=WATER, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Sea on the left, land on the right (columns 120+), a pier (rows 40-44) reaching from the land into the sea."""
    bands = np.empty((4, *shape), np.float32)
    bands[:] = water[:, None, None]
    bands[:, :, 120:] = LAND[:, None, None]
    bands[:, 40:45, 70:120] = LAND[:, None, None]
    bands += np.random.default_rng(seed).normal(0, 0.002, bands.shape).astype(np.float32)
    return bands, np.ones(shape, bool)


def scene(bands: np.ndarray, valid: np.ndarray) -> Scene:
    acq = Acquisition("test", "harbour", "Sentinel-2A", datetime(2024, 12, 13, tzinfo=UTC))
    return Scene(bands, ("B02", "B03", "B04", "B08"), ORIGIN, "EPSG:32636", valid, acq, False)


def ship(bands: np.ndarray, rows: slice, cols: slice, paint=GREY_HULL) -> None:
    bands[:, rows, cols] = paint[:, None, None]


def pixel(d) -> tuple[float, float]:
    col, row = ~ORIGIN @ (d.x, d.y)
    return row, col


def test_ships_at_sea_are_found_with_their_size_and_axis_and_land_is_not():
    bands, valid = harbour()
    ship(bands, slice(10, 22), slice(20, 22))  # 120 x 20 m, north-south
    ship(bands, slice(80, 82), slice(30, 45))  # 150 x 20 m, east-west
    found = sorted(detect_vessels(scene(bands, valid)), key=lambda d: pixel(d)[0])
    assert len(found) == 2  # not the land, not the pier
    (r0, c0), (r1, c1) = pixel(found[0]), pixel(found[1])
    assert abs(r0 - 16) < 0.6 and abs(c0 - 21) < 0.6 and abs(r1 - 81) < 0.6 and abs(c1 - 37.5) < 0.6
    assert 110 <= found[0].length_m <= 130 and found[0].width_m <= 30
    assert found[0].heading_deg in (0.0, 180.0) or min(found[0].heading_deg, 180 - found[0].heading_deg) < 5
    assert abs(found[1].heading_deg - 90) < 5 and 140 <= found[1].length_m <= 160
    assert all(d.cls == "vessel" and 0.5 <= d.score <= 1.0 for d in found)


def test_a_ship_alongside_a_pier_is_found_once_the_pier_is_outside_the_search():
    bands, valid = harbour()
    ship(bands, slice(45, 47), slice(80, 95))  # moored against the pier's south side
    assert detect_vessels(scene(bands, valid)) == []  # merged with the pier and the land: no vessel
    search = np.ones(valid.shape, bool)
    search[:, 120:] = False
    search[40:45, 70:120] = False  # the AOI's land zones (pier, shore) are not searched
    found = detect_vessels(scene(bands, valid), search=search)
    assert len(found) == 1 and abs(pixel(found[0])[0] - 46) < 0.6


def test_hazy_water_is_still_water():
    """Haze lifts water's NIR: NDWI ~0.08 here, under the fixed cut; the scene's own split finds the water."""
    hazy = np.array([0.16, 0.15, 0.13, 0.127], np.float32)
    bands, valid = harbour(water=hazy)
    bands[:, :, 120:] += 0.1  # hazy land too
    ship(bands, slice(10, 22), slice(20, 22), paint=np.array([0.2, 0.2, 0.2, 0.2], np.float32))
    index = (bands[1] - bands[3]) / (bands[1] + bands[3])
    assert float(np.median(index[:, :100])) < VesselRule().ndwi_water
    assert water_threshold(index, valid, VesselRule()) < float(np.median(index[:, :100]))
    assert len(detect_vessels(scene(bands, valid))) == 1


def test_boats_and_specks_are_not_vessels():
    bands, valid = harbour()
    ship(bands, slice(10, 12), slice(20, 23))  # 30 x 20 m: a boat
    bands[:, 60, 50] = GREY_HULL  # one pixel
    assert detect_vessels(scene(bands, valid)) == []


def test_otsu_splits_two_modes():
    values = np.concatenate([np.random.default_rng(1).normal(-0.3, 0.05, 500),
                             np.random.default_rng(2).normal(0.4, 0.05, 500)])
    assert -0.15 < otsu(values) < 0.25


def test_sen2ships_real_harbours():
    """Real labelled harbours (../shared/realdata/sen2ships): a regression guard on the measured figures."""
    from benchmarks.realdata import REALDATA

    if not (REALDATA / "sen2ships").exists():
        pytest.skip("realdata/sen2ships absent")
    from benchmarks.vessels_realdata import run

    overall = run()["overall"]
    assert overall["tp"] + overall["fn"] == 93  # the five cities' labelled vessels
    assert overall["f1"] >= 0.25 and overall["recall"] >= 0.35


def test_ships_moored_at_tartus_are_counted_at_their_piers_and_nothing_else_changes():
    """The simulator moors the phase's ships alongside the piers (their own random stream: every other pixel as
    without them), and the berth reading counts them in the pier zones."""
    from datetime import date

    from pipeline.config import PhaseFile, load_aoi
    from pipeline.observe import prepare_detections
    from pipeline.simulate.render import render_scene
    from pipeline.types import reproject_geometry
    from pipeline.vessels import vessels_in_aoi

    aoi = load_aoi("tartus")
    when = datetime(2024, 11, 28, 8, 25, tzinfo=UTC)
    phase = PhaseFile(name="routine", start=date(2024, 11, 1), parked_vehicles=20, local_traffic=2)
    empty = render_scene(aoi, when, seed=11, activity=phase, cloud_free=True)
    full = render_scene(aoi, when, seed=11, activity=phase.model_copy(update={"moored_vessels": 5}), cloud_free=True)
    ships = [o for o in full.truth if o.cls == "vessel"]
    assert 4 <= len(ships) <= 6 and not [o for o in empty.truth if o.cls == "vessel"]
    changed = np.argwhere(np.any(full.scene.bands != empty.scene.bands, axis=0))
    piers = [reproject_geometry(z.polygon, "EPSG:4326", full.scene.crs) for z in aoi.zones if z.kind == "pier"]
    from shapely.geometry import Point

    t = full.scene.transform
    far = [rc for rc in changed[::50]
           if min(p.distance(Point(*(t @ (rc[1] + 0.5, rc[0] + 0.5)))) for p in piers) > 250]
    assert len(changed) > 0 and not far  # only around the piers

    def moored(sim) -> list:
        found = prepare_detections(vessels_in_aoi(sim.scene, aoi), aoi, sim.scene.crs, "a", "m", berth_m=80)
        return [d for d in found if d.zone in ("north_pier", "naval_quay")]

    found = moored(full)
    assert len(ships) - 1 <= len(found) <= len(ships)  # a narrow hull (submarine, corvette) is missed now and then
    assert len(moored(empty)) <= 1
    assert all(d.cls == "vessel" and d.score >= 0.5 for d in found)


def test_detect_command_adds_ships_with_vessels(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.geotiff import write_scene
    from pipeline.objects import read_objects

    bands, valid = harbour()
    ship(bands, slice(10, 22), slice(20, 22))
    path = write_scene(scene(bands, valid), tmp_path / "harbour.tif")
    for extra, ships in (([], 0), (["--vessels"], 1)):
        out = tmp_path / "found.geojson"
        result = CliRunner().invoke(app, ["detect", str(path), "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        assert sum(o.cls == "vessel" for o in read_objects(out, crs="EPSG:32636")) == ships
