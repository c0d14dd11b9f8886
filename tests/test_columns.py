"""Column grouping and direction on synthetic detections placed along the AOI's real egress roads."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.columns import angle_diff, group_columns, heading_of
from pipeline.config import ColumnsConfig, load_aoi
from pipeline.georef import map_to_lonlat
from pipeline.types import MapObject


def vehicles_along(aoi, road_name: str, start_m: float, n: int, spacing: float, outbound: bool,
                   prefix: str) -> list[MapObject]:
    line = aoi.to_utm(next(r.line for r in aoi.roads if r.name == road_name))
    crs = aoi.crs.to_string()
    out = []
    for i in range(n):
        s = start_m + i * spacing
        a, b = line.interpolate(s), line.interpolate(s + 5)
        vec = np.array([b.x - a.x, b.y - a.y])
        heading = heading_of(vec if outbound else -vec)
        lon, lat = map_to_lonlat(crs, a.x, a.y)
        out.append(MapObject(cls="vehicle", x=a.x, y=a.y, lon=lon, lat=lat, heading_deg=heading, moving=True,
                             score=0.9, id=f"{prefix}{i}"))
    return out


@pytest.fixture(scope="module")
def tartus():
    return load_aoi("tartus")


def test_outbound_and_inbound_columns_on_roads(tartus):
    out = vehicles_along(tartus, "east_to_m1_highway", 200, 8, 40, outbound=True, prefix="o")
    inn = vehicles_along(tartus, "north_coast_road", 300, 5, 50, outbound=False, prefix="i")
    cols = group_columns(out + inn, tartus, ColumnsConfig())
    by_road = {c.road: c for c in cols}
    assert len(cols) == 2
    assert by_road["east_to_m1_highway"].direction == "outbound"
    assert by_road["east_to_m1_highway"].vehicles == 8
    assert by_road["north_coast_road"].direction == "inbound"
    assert set(by_road["north_coast_road"].members) == {f"i{i}" for i in range(5)}
    assert by_road["east_to_m1_highway"].length_m == pytest.approx(7 * 40, rel=0.1)


def test_gap_splits_a_column_and_short_chains_are_dropped(tartus):
    first = vehicles_along(tartus, "east_to_m1_highway", 100, 4, 40, outbound=True, prefix="a")
    second = vehicles_along(tartus, "east_to_m1_highway", 900, 4, 40, outbound=True, prefix="b")
    pair = vehicles_along(tartus, "north_coast_road", 300, 2, 40, outbound=True, prefix="p")
    cols = group_columns(first + second + pair, tartus, ColumnsConfig(max_gap_m=120, min_vehicles=3))
    assert sorted(c.vehicles for c in cols) == [4, 4]


def test_opposite_headings_do_not_merge(tartus):
    a = vehicles_along(tartus, "east_to_m1_highway", 200, 5, 40, outbound=True, prefix="a")
    b = vehicles_along(tartus, "east_to_m1_highway", 220, 5, 40, outbound=False, prefix="b")
    cols = group_columns(a + b, tartus, ColumnsConfig())
    assert sorted(c.direction for c in cols) == ["inbound", "outbound"]


def test_parked_and_non_vehicle_detections_are_ignored(tartus):
    parked = [
        MapObject(cls="vehicle", x=v.x, y=v.y, lon=v.lon, lat=v.lat, moving=False, id=v.id)
        for v in vehicles_along(tartus, "east_to_m1_highway", 200, 6, 30, outbound=True, prefix="p")
    ]
    assert group_columns(parked, tartus, ColumnsConfig()) == []


def test_angle_diff_wraps():
    assert angle_diff(350, 10) == 20
    assert angle_diff(90, 270) == 180


def test_default_gap_bridges_one_missed_truck(tartus):
    column = vehicles_along(tartus, "east_to_m1_highway", 100, 9, 70, outbound=True, prefix="m")
    del column[4]  # the detector missed one: a 140 m hole
    cols = group_columns(column, tartus, ColumnsConfig())
    assert [c.vehicles for c in cols] == [8]


# ---------------------------------------------------------------- faint candidates extend a column


def _faint(objs: list[MapObject], heading: float | None = None) -> list[MapObject]:
    """The same positions as faint peaks whose own heading is noise (or the given one)."""
    from dataclasses import replace

    return [replace(o, score=0.3, heading_deg=heading if heading is not None else (o.heading_deg + 120) % 360,
                    id=None) for o in objs]


def test_faint_peaks_in_line_with_a_column_are_admitted_with_its_heading(tartus):
    from pipeline.columns import admit_candidates

    column = vehicles_along(tartus, "east_to_m1_highway", 200, 8, 50, outbound=True, prefix="c")
    confident, faint = [column[0], column[2]], _faint([column[1], *column[3:]])
    admitted = admit_candidates(confident, faint, tartus, ColumnsConfig())
    assert sorted(admitted) == list(range(len(faint)))  # the chain grows truck by truck to the end of the column
    for i, heading in admitted.items():
        assert angle_diff(heading, column[0].heading_deg) < 5  # the column's heading, not the faint peak's own
        assert angle_diff(faint[i].heading_deg, column[0].heading_deg) > 90


def test_faint_peaks_off_the_line_off_the_road_or_beside_a_lone_truck_are_not(tartus):
    from dataclasses import replace

    from pipeline.columns import admit_candidates

    column = vehicles_along(tartus, "east_to_m1_highway", 200, 4, 50, outbound=True, prefix="c")
    h = np.deg2rad(column[0].heading_deg)
    across = np.array([np.cos(h), -np.sin(h)])  # perpendicular to the travel direction
    beside = replace(column[1], x=column[1].x + 60 * across[0], y=column[1].y + 60 * across[1])
    far_ahead = vehicles_along(tartus, "east_to_m1_highway", 200 + 3 * 50 + 400, 1, 50, outbound=True, prefix="f")
    cfg = ColumnsConfig()
    assert admit_candidates(column[:2], _faint([beside, *far_ahead]), tartus, cfg) == {}
    # one confident truck plus faint peaks along the road is not a column
    assert admit_candidates(column[:1], _faint(column[1:]), tartus, cfg) == {}
    # and with candidate_gap_m 0 nothing is ever admitted
    assert admit_candidates(column[:2], _faint(column[2:]), tartus, ColumnsConfig(candidate_gap_m=0)) == {}
    assert set(admit_candidates(column[:2], _faint(column[2:]), tartus, cfg)) == {0, 1}


def test_one_sure_truck_leads_a_column_when_enough_faint_peaks_read_its_direction_themselves(tartus):
    """columns.single_truck_candidates: three faint peaks behind one sure truck that head its way on their own make
    a column; peaks whose own headings are noise, or too few agreeing ones, do not."""
    from pipeline.columns import admit_candidates

    column = vehicles_along(tartus, "east_to_m1_highway", 200, 5, 50, outbound=True, prefix="c")
    truck, rest = column[:1], column[1:]
    cfg = ColumnsConfig(single_truck_candidates=3)
    agreeing = _faint(rest, heading=column[0].heading_deg + 10)
    assert admit_candidates(truck, agreeing, tartus, ColumnsConfig()) == {}  # the default: two sure trucks
    assert sorted(admit_candidates(truck, agreeing, tartus, cfg)) == [0, 1, 2, 3]
    assert admit_candidates(truck, _faint(rest), tartus, cfg) == {}  # their own headings are noise
    two_agree = agreeing[:2] + _faint(rest[2:])
    assert admit_candidates(truck, two_agree, tartus, cfg) == {}
    assert sorted(admit_candidates(truck, two_agree, tartus, ColumnsConfig(single_truck_candidates=2))) == [0, 1, 2, 3]


def test_a_slow_truck_read_backwards_stays_in_its_column_and_cannot_turn_it(tartus):
    from dataclasses import replace

    column = [replace(v, speed_mps=9.0) for v in
              vehicles_along(tartus, "east_to_m1_highway", 200, 6, 50, outbound=True, prefix="s")]
    column[2] = replace(column[2], heading_deg=(column[2].heading_deg + 180) % 360, speed_mps=6.0, score=0.5)
    cols = group_columns(column, tartus, ColumnsConfig())
    assert len(cols) == 1 and cols[0].vehicles == 6 and cols[0].direction == "outbound"
    # with flips never allowed, the reversed truck splits the chain (the 200 m gap bridges it, so still one column)
    strict = group_columns(column, tartus, ColumnsConfig(flip_speed_mps=0, max_gap_m=80))
    assert sorted(c.vehicles for c in strict) == [3]  # 2 + reversed 1 + 3: only the 3-chain is a column


def test_faint_candidates_do_not_vote_on_the_direction(tartus):
    """Admitted candidates repeat the heading of the truck that vouched for them: a truck read backwards (slow, so
    it chains) with the three candidates it vouched for must not outvote the two trucks read right through them."""
    from dataclasses import replace

    column = [replace(v, speed_mps=10.0, score=0.6) for v in
              vehicles_along(tartus, "north_coast_road", 300, 6, 60, outbound=True, prefix="v")]
    column[2:] = [replace(v, heading_deg=(v.heading_deg + 180) % 360, score=0.5 if i == 0 else 0.35)
                  for i, v in enumerate(column[2:])]  # v2 read backwards; v3-v5 candidates it vouched for
    inherited = frozenset({"v3", "v4", "v5"})
    votes_only = ColumnsConfig()  # the vote alone: the contested-direction rule is off by default
    [col] = group_columns(column, tartus, votes_only, inherited)
    assert col.vehicles == 6 and col.direction == "outbound"  # 2 x 0.6 x 10 against 0.5 x 10
    # the rule before 27 Nov: 0.5 x 10 + 3 x 0.35 x 10 inbound against 2 x 0.6 x 10 outbound
    [before] = group_columns(column, tartus, votes_only.model_copy(update={"candidate_votes": True}), inherited)
    assert before.vehicles == 6 and before.direction == "inbound"
    # without the ids every member is a truck with its own heading, as before
    [plain] = group_columns(column, tartus, votes_only)
    assert plain.direction == "inbound"
    # with the contested-direction rule two trucks one way against one the other is in doubt (0.5 against 1.2)
    [contested] = group_columns(column, tartus, ColumnsConfig(contested_ratio=0.4), inherited)
    assert contested.vehicles == 6 and contested.direction == "unknown"


def test_a_column_beside_a_truck_read_the_other_way_is_contested(tartus):
    """Al Khadim, seed 8, 19 Dec (MODEL_CARD_heading): two trucks of an arriving column read backwards chain with
    four faint peaks into an "outbound" column; a third truck of it, read right, runs just behind them on its own."""
    from dataclasses import replace

    rule = ColumnsConfig(contested_ratio=0.4)  # the setting used with the heading network

    trucks = [replace(v, speed_mps=17.0, score=0.5) for v in
              vehicles_along(tartus, "north_coast_road", 300, 7, 50, outbound=True, prefix="v")]
    trucks[0] = replace(trucks[0], heading_deg=(trucks[0].heading_deg + 180) % 360)  # the one read right: inbound
    candidates = frozenset({"v3", "v4", "v5", "v6"})
    [col] = group_columns(trucks, tartus, rule, candidates)
    assert col.vehicles == 6 and "v0" not in col.members and col.direction == "unknown"  # 0.5 against 1.0
    [votes_only] = group_columns(trucks, tartus, ColumnsConfig(), candidates)  # off by default
    assert votes_only.direction == "outbound"
    # the same truck read right behind a column of six confident trucks does not put it in doubt (0.5 against 3.0)
    [col] = group_columns(trucks, tartus, rule)
    assert col.vehicles == 6 and col.direction == "outbound"
    # nor does a truck read the other way on the same road more than max_gap_m from every member
    [far] = vehicles_along(tartus, "north_coast_road", 1200, 1, 50, outbound=False, prefix="f")
    [col] = group_columns([replace(far, speed_mps=17.0, score=0.5)] + trucks[1:], tartus, rule, candidates)
    assert col.direction == "outbound"
    [near] = vehicles_along(tartus, "north_coast_road", 720, 1, 50, outbound=False, prefix="f")
    [col] = group_columns([replace(near, speed_mps=17.0, score=0.5)] + trucks[1:], tartus, rule, candidates)
    assert col.direction == "unknown"  # 120 m ahead of the last member


def test_fast_columns_in_opposite_directions_still_do_not_merge(tartus):
    from dataclasses import replace

    out = [replace(v, speed_mps=18.0) for v in vehicles_along(tartus, "east_to_m1_highway", 200, 5, 40, True, "a")]
    inn = [replace(v, speed_mps=18.0) for v in vehicles_along(tartus, "east_to_m1_highway", 220, 5, 40, False, "b")]
    cols = group_columns(out + inn, tartus, ColumnsConfig())
    assert sorted(c.direction for c in cols) == ["inbound", "outbound"]


# ---------------------------------------------------------------- the road is the line of travel


def _scattered(column: list[MapObject], offsets: list[float], speed: float) -> list[MapObject]:
    """The column with each truck's heading turned by the next offset (degrees), as slow trucks' headings scatter."""
    from dataclasses import replace

    return [replace(v, heading_deg=(v.heading_deg + offsets[i % len(offsets)]) % 360, speed_mps=speed)
            for i, v in enumerate(column)]


def test_trucks_whose_headings_scatter_about_the_road_chain_along_it(tartus):
    # 110 m apart, headings alternately 45 degrees either side of the road: no two neighbours agree within 35
    column = _scattered(vehicles_along(tartus, "east_to_m1_highway", 150, 8, 110, outbound=True, prefix="r"),
                        [45.0, -45.0], speed=14.0)
    cols = group_columns(column, tartus, ColumnsConfig())
    assert len(cols) == 1 and cols[0].vehicles == 8 and cols[0].direction == "outbound"
    assert cols[0].road == "east_to_m1_highway"
    assert group_columns(column, tartus, ColumnsConfig(road_axis_deg=0)) == []  # headings alone: no chain


def test_the_road_does_not_chain_trucks_crossing_it_or_fast_trucks_going_both_ways(tartus):
    across = _scattered(vehicles_along(tartus, "east_to_m1_highway", 150, 8, 110, outbound=True, prefix="x"),
                        [60.0, -60.0], speed=14.0)
    assert group_columns(across, tartus, ColumnsConfig()) == []
    # alternate trucks read the other way, all fast: no link between neighbours, so no column
    both = _scattered(vehicles_along(tartus, "east_to_m1_highway", 150, 8, 110, outbound=True, prefix="b"),
                      [0.0, 180.0], speed=18.0)
    assert group_columns(both, tartus, ColumnsConfig()) == []


def test_faint_peaks_are_looked_for_along_the_road_not_along_a_scattered_heading(tartus):
    from pipeline.columns import admit_candidates

    column = vehicles_along(tartus, "east_to_m1_highway", 200, 8, 50, outbound=True, prefix="c")
    confident = _scattered([column[0], column[2]], [25.0], speed=14.0)  # both read 25 degrees off the road
    faint = _faint([column[1], *column[3:]])
    admitted = admit_candidates(confident, faint, tartus, ColumnsConfig())
    assert sorted(admitted) == list(range(len(faint)))
    # along the trucks' own heading (15 degrees allowed) the road's next trucks are out of line
    assert len(admit_candidates(confident, faint, tartus, ColumnsConfig(road_axis_deg=0))) < len(faint)


class _StubDetector:
    """Returns fixed detections as the learned detector's column interface does (detect_with_candidates)."""

    def __init__(self, detections, candidates, disagree: set[int]):
        self.found = (detections, candidates, disagree)

    def detect_with_candidates(self, scene, unsure_heading_deg: float = 0.0):
        from pipeline.detect import ColumnDetections

        dets, cands, disagree = self.found
        return ColumnDetections(dets, cands, frozenset(disagree) if unsure_heading_deg > 0 else frozenset())


def _column_stage(tartus, detector, cfg: ColumnsConfig):
    """detect_for_columns then group_columns, as process_acquisition chains them (ids given in list order)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from pipeline.run import detect_for_columns

    config = SimpleNamespace(columns=cfg)
    scene = SimpleNamespace(crs=tartus.crs.to_string())
    found = detect_for_columns(detector, scene, tartus, config)
    at = len(found.detections) - found.admitted
    ids = [d.id or f"cand{k}" for k, d in enumerate(found.detections)]
    dets = [replace(d, id=i) for d, i in zip(found.detections, ids, strict=True)]
    inherited, unsure = frozenset(ids[at:]), frozenset(ids[at - found.unsure:at])
    return found, group_columns(dets, tartus, cfg, inherited, unsure)


def test_detections_with_unsure_headings_are_candidates_for_columns_only(tartus):
    """Reinforcement month, seed 16, 16 Mar (MODEL_CARD_heading): one real truck leaving, a false detection on the
    road behind it that the heading network reads the same way (the detector's own heading disagrees), and faint
    peaks along the road. Two agreeing "trucks" admitted the faint peaks into a false outbound column."""
    from dataclasses import replace

    road = vehicles_along(tartus, "east_to_m1_highway", 200, 7, 50, outbound=True, prefix="t")
    real, clutter = road[0], replace(road[1], score=0.43)
    faint = _faint(road[2:], heading=real.heading_deg)
    stub = _StubDetector([real, clutter], faint, disagree={1})
    found, cols = _column_stage(tartus, stub, ColumnsConfig())  # off: the false column forms
    assert len(cols) == 1 and cols[0].vehicles == 7 and cols[0].direction == "outbound"
    found, cols = _column_stage(tartus, stub, ColumnsConfig(unsure_heading_deg=60))
    assert cols == []
    assert [d.id for d in found.detections] == ["t0", "t1"] and found.unsure == 1  # still a detection, counted

    # an unsure truck inside a real column joins it as a candidate, with the column's heading
    column = vehicles_along(tartus, "east_to_m1_highway", 200, 5, 50, outbound=True, prefix="c")
    doubted = replace(column[2], heading_deg=(column[2].heading_deg + 150) % 360)
    stub = _StubDetector([column[0], column[1], doubted, column[3], column[4]], [], disagree={2})
    found, [col] = _column_stage(tartus, stub, ColumnsConfig(unsure_heading_deg=60))
    assert found.admitted == 1 and found.unsure == 0 and col.vehicles == 5 and col.direction == "outbound"
    joined = found.detections[-1]
    assert (joined.x, joined.y) == (doubted.x, doubted.y)
    assert angle_diff(joined.heading_deg, column[0].heading_deg) < 5
