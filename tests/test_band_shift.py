"""A column's direction from the B02 -> B04 offset along its road: synthetic trucks and the simulator's own."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest
from shapely.geometry import LineString

from pipeline.band_shift import along_track_shift, orient_by_band_shift, vote_agreement
from pipeline.columns import heading_of, road_tangent
from pipeline.config import ColumnsConfig, load_aoi, load_scenario
from pipeline.georef import map_to_lonlat
from pipeline.types import Acquisition, Column, MapObject, Scene

B02_TO_B04_S = 1.005


@pytest.fixture(scope="module")
def tartus():
    return load_aoi("tartus")


def _scene_with_trucks(aoi, road: str, speed_mps: float, outbound: bool, n: int = 6, noise: float = 0.004,
                       seed: int = 0) -> tuple[Scene, list[tuple[float, float]]]:
    """Tartus's grid, flat asphalt and noise; ``n`` bright trucks 50 m apart on ``road``, each imaged in B04
    speed x 1.005 s further along its way than in B02 (B03 halfway). Returns the scene and the B03 positions."""
    grid = aoi.grid()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:grid.height, 0:grid.width]
    cx = grid.transform.c + (xx + 0.5) * grid.transform.a
    cy = grid.transform.f + (yy + 0.5) * grid.transform.e
    bands = 0.08 + rng.normal(0.0, noise, (4, grid.height, grid.width))
    line = aoi.to_utm(next(r.line for r in aoi.roads if r.name == road))
    centres = []
    for i in range(n):
        s = 300.0 + 50.0 * i
        p = line.interpolate(s)
        u = road_tangent(line, s) * (1.0 if outbound else -1.0)
        centres.append((p.x, p.y))
        for band, t in ((0, -0.5), (1, 0.0), (2, 0.5), (3, 0.1)):
            x, y = p.x + u[0] * speed_mps * B02_TO_B04_S * t, p.y + u[1] * speed_mps * B02_TO_B04_S * t
            bands[band] += 0.05 * np.exp(-((cx - x) ** 2 + (cy - y) ** 2) / (2 * 6.0 ** 2))
    acq = Acquisition(source="test", id="t", sensor="Sentinel-2A", datetime=np.datetime64("2024-12-13").item(),
                      simulated=True)
    scene = Scene(bands=bands.astype(np.float32), band_names=("B02", "B03", "B04", "B08"),
                  transform=grid.transform, crs=grid.crs, valid=np.ones((grid.height, grid.width), bool),
                  acquisition=acq, simulated=True)
    return scene, centres


def _outward(aoi, road: str, points):
    line = aoi.to_utm(next(r.line for r in aoi.roads if r.name == road))
    from shapely.geometry import Point

    return [road_tangent(line, line.project(Point(p))) for p in points]


@pytest.mark.parametrize("speed", [8.0, 15.0])
def test_the_offset_along_the_road_gives_the_way_trucks_move(tartus, speed):
    for outbound in (True, False):
        scene, points = _scene_with_trucks(tartus, "north_coast_road", speed, outbound)
        shift = along_track_shift(scene, points, _outward(tartus, "north_coast_road", points))
        assert shift is not None and shift.members == len(points) and shift.correlation > 0.5
        assert np.sign(shift.shift_px) == (1 if outbound else -1)
        assert abs(shift.shift_px) == pytest.approx(speed * B02_TO_B04_S / 10.0, abs=0.5)


def test_parked_trucks_show_no_offset_and_clouded_ones_are_left_out(tartus):
    scene, points = _scene_with_trucks(tartus, "north_coast_road", 0.0, True)
    shift = along_track_shift(scene, points, _outward(tartus, "north_coast_road", points))
    assert shift is not None and abs(shift.shift_px) < 0.25
    clouded = replace(scene, valid=np.zeros_like(scene.valid))
    assert along_track_shift(clouded, points, _outward(tartus, "north_coast_road", points)) is None


def _column(aoi, points, direction: str, road: str) -> Column:
    crs = aoi.crs.to_string()
    line = LineString([map_to_lonlat(crs, x, y) for x, y in points])
    return Column(id="c", members=tuple(f"m{i}" for i in range(len(points))), line=line, length_m=250.0,
                  heading_deg=190.0 if direction == "inbound" else 10.0, direction=direction, vehicles=len(points),
                  road=road)


def _members(column: Column, headings: list[float]) -> dict[str, MapObject]:
    """The column's trucks as the detector saw them: one heading each, equal score and speed."""
    return {m: MapObject(cls="vehicle", x=0.0, y=0.0, lon=0.0, lat=0.0, heading_deg=h, moving=True, speed_mps=12.0,
                         score=0.8, id=m) for m, h in zip(column.members, headings, strict=True)}


def _split(column: Column, tangents) -> dict[str, MapObject]:
    """Half the trucks read one way along the road, half the other."""
    return _members(column, [heading_of(t if i % 2 else -t) for i, t in enumerate(tangents)])


def test_vote_agreement_is_one_for_a_unanimous_column_and_low_for_a_split_one(tartus):
    _, points = _scene_with_trucks(tartus, "north_coast_road", 9.0, outbound=True)
    tangents = _outward(tartus, "north_coast_road", points)
    col = _column(tartus, points, "inbound", "north_coast_road")
    backwards = _members(col, [heading_of(-t) for t in tangents])
    assert vote_agreement([backwards[m] for m in col.members], tangents) == pytest.approx(1.0)
    split = _split(col, tangents)
    assert vote_agreement([split[m] for m in col.members], tangents) < 0.05
    # a truck with three times the speed weighs three times: |-36 - 2 x 12 + 3 x 12| / (36 + 5 x 12)
    weighted = dict(split, m0=replace(split["m0"], speed_mps=36.0))
    assert vote_agreement([weighted[m] for m in col.members], tangents) == pytest.approx(24 / 96)
    assert vote_agreement([None] * len(tangents), tangents) == 1.0


def test_a_split_column_is_turned_round_by_its_band_offset_a_unanimous_one_is_not(tartus):
    scene, points = _scene_with_trucks(tartus, "north_coast_road", 9.0, outbound=True)
    tangents = _outward(tartus, "north_coast_road", points)
    misread = _column(tartus, points, "inbound", "north_coast_road")
    split = _split(misread, tangents)
    [fixed] = orient_by_band_shift([misread], scene, tartus, ColumnsConfig(), split)
    assert fixed.direction == "outbound" and fixed.heading_deg == pytest.approx(10.0)
    # every truck read backwards: the detector's 2-D reading of the same offset stands against the 1-D one
    unanimous = _members(misread, [heading_of(-t) for t in tangents])
    assert orient_by_band_shift([misread], scene, tartus, ColumnsConfig(), unanimous) == [misread]
    assert orient_by_band_shift([misread], scene, tartus, ColumnsConfig(band_shift_max_agreement=1.0),
                                unanimous)[0].direction == "outbound"
    # turned off, or off the roads, the trucks' own vote stands
    assert orient_by_band_shift([misread], scene, tartus, ColumnsConfig(band_shift_min_px=0), split) == [misread]
    offroad = replace(misread, road=None)
    assert orient_by_band_shift([offroad], scene, tartus, ColumnsConfig(), split) == [offroad]
    # no offset to read (parked, or under cloud): unchanged
    still, _ = _scene_with_trucks(tartus, "north_coast_road", 0.0, outbound=True)
    assert orient_by_band_shift([misread], still, tartus, ColumnsConfig(), split) == [misread]


def test_the_simulators_columns_are_read_right_from_their_band_offset(tartus):
    """The simulator's own truth columns of the seed scenario's 13 Dec at Tartus (two outbound columns, one of
    slow trucks at 9-10 m/s), given the wrong direction and split trucks: the band offset turns both round."""
    from pipeline.sources.simulated import SimulatedSource

    source = SimulatedSource(load_scenario())
    acq = next(a for a in source.search(tartus, date(2024, 12, 13), date(2024, 12, 13)))
    sim = source.truth(acq, tartus)
    on_roads = [c for c in sim.truth_columns if c.road]
    assert len(on_roads) == 2 and {c.direction for c in on_roads} == {"outbound"}
    flipped = [replace(c, direction="inbound") for c in on_roads]
    split = {m: d for c in on_roads for m, d in _members(c, [c.heading_deg + 180.0 * (i % 2)
                                                             for i in range(len(c.members))]).items()}
    assert [c.direction for c in orient_by_band_shift(flipped, sim.scene, tartus, ColumnsConfig(), split)] == [
        "outbound", "outbound"]


def test_the_band_offset_lets_a_truck_read_backwards_join_its_column(tartus):
    """The column stage with the real orienter: six trucks on the road, the third read backwards by the detector
    (fast enough that the slow-truck rule does not apply): one column of six, outbound, as the image shows."""
    from pipeline.band_shift import road_orienter
    from pipeline.columns import group_columns

    scene, points = _scene_with_trucks(tartus, "north_coast_road", 14.0, outbound=True)
    crs = tartus.crs.to_string()
    trucks = []
    for i, (p, u) in enumerate(zip(points, _outward(tartus, "north_coast_road", points), strict=True)):
        heading = heading_of(-u if i == 2 else u)
        lon, lat = map_to_lonlat(crs, *p)
        trucks.append(MapObject(cls="vehicle", x=p[0], y=p[1], lon=lon, lat=lat, heading_deg=heading, moving=True,
                                speed_mps=14.0, score=0.9, id=f"t{i}"))
    cfg = ColumnsConfig(max_gap_m=80)
    [column] = group_columns(trucks, tartus, cfg, road_orienter(scene, tartus, cfg))
    assert column.vehicles == 6 and column.direction == "outbound"
    # the same trucks driving the other way in the image: the backwards-read truck is right, nothing is joined
    against, _ = _scene_with_trucks(tartus, "north_coast_road", 14.0, outbound=False)
    assert [c.vehicles for c in group_columns(trucks, tartus, cfg, road_orienter(against, tartus, cfg))] == [3]
