"""Each event rule on hand-built observation histories, with gaps and clouds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import LineString, box

from pipeline.config import DiffConfig
from pipeline.diff import LARGE_AIRCRAFT, PARKED_AIRCRAFT, compare, measure, signals
from pipeline.types import AOI, Acquisition, Column, EgressRoad, MapObject, Observation, Zone

AOI_ = AOI(
    name="base", title="Test base",
    outline=box(35.90, 35.37, 35.98, 35.44),
    zones=(Zone("apron", "apron", box(35.93, 35.39, 35.94, 35.40)),
           Zone("runway", "runway", box(35.945, 35.38, 35.947, 35.41)),
           Zone("park", "vehicle_park", box(35.95, 35.41, 35.96, 35.42))),
    roads=(EgressRoad("gate_road", LineString([(35.96, 35.42), (35.96, 35.43)])),
           EgressRoad("south_road", LineString([(35.94, 35.38), (35.93, 35.375)]))),
)
CFG = DiffConfig()
T0 = datetime(2024, 11, 28, 8, 25, tzinfo=UTC)


def obs(day: int, *, large: int = 1, small: int = 12, parked: int = 40, valid: dict | None = None,
        outbound: tuple[int, ...] = (), inbound: tuple[int, ...] = (),
        road: str | None | tuple = "gate_road", confident: int | None = None,
        inbound_road: str | None | tuple = ...) -> Observation:
    """Observation ``day`` days after T0; ``outbound``/``inbound`` list the vehicles of each column; ``confident``
    of the ``large`` aircraft score >= the surge's min_score (default: all); inbound columns run on ``inbound_road``
    (default: ``road``)."""
    confident = large if confident is None else confident
    acq = Acquisition(source="simulated", id=f"acq{day:02d}", sensor="Sentinel-2A",
                      datetime=T0 + timedelta(days=day), simulated=True)
    valid = {"apron": 1.0, "runway": 1.0, "park": 1.0, **(valid or {})}
    cols = []
    roads = {"outbound": road, "inbound": road if inbound_road is ... else inbound_road}
    for direction, sizes in (("outbound", outbound), ("inbound", inbound)):
        for i, n in enumerate(sizes):
            on = roads[direction] if not isinstance(roads[direction], tuple) else roads[direction][i]
            cols.append(Column(id=f"acq{day:02d}:{direction}{i}", members=tuple(f"acq{day:02d}:v{direction}{i}-{k}"
                                                                             for k in range(n)),
                               line=LineString([(35.96, 35.42), (35.96, 35.425)]), length_m=500.0,
                               heading_deg=0.0 if direction == "outbound" else 180.0, direction=direction,
                               vehicles=n, road=on))
    counts = {"large_aircraft": large, "large_aircraft_confident": confident, "small_aircraft": small,
              "parked_vehicle": parked,
              "vehicles_outbound": sum(outbound), "vehicles_inbound": sum(inbound),
              "columns_outbound": len(outbound), "columns_inbound": len(inbound)}
    zone_counts = {"apron": {"large_aircraft": large, "large_aircraft_confident": confident, "small_aircraft": small},
                   "runway": {},
                   "park": {"parked_vehicle": parked}}
    vf = sum(valid.values()) / 3
    return Observation(aoi="base", acquisition=acq, counts=counts, zone_counts=zone_counts, zone_valid=valid,
                       columns=tuple(cols), valid_fraction=vf, model="m")


def kinds(history: list[Observation], new: Observation, cfg: DiffConfig = CFG) -> set[str]:
    return {e.kind for e in compare(AOI_, history, new, [], cfg)}


ROUTINE = [obs(0), obs(5), obs(10)]


def test_routine_history_raises_nothing():
    assert kinds(ROUTINE, obs(15)) == set()
    assert kinds(ROUTINE, obs(15, large=2, small=10, parked=36, outbound=(3,))) == set()


def test_airlift_surge_needs_factor_and_increase():
    assert kinds(ROUTINE, obs(15, large=3)) == {"airlift_surge"}  # 3 >= 2 x 1 and >= 1 + 2
    assert kinds(ROUTINE, obs(15, large=2)) == set()  # doubled but only one more
    [ev] = compare(AOI_, ROUTINE, obs(15, large=5), [], CFG)
    assert ev.baseline["large_aircraft"]["median"] == 1 and ev.current["large_aircraft"]["count"] == 5
    assert 0 < ev.confidence <= 1


def test_a_large_base_surges_on_a_significant_rise_short_of_a_doubling():
    busy = [obs(0, large=20), obs(5, large=21), obs(10, large=19)]  # baseline 20: sqrt 4.5, 2 sigma = 8.9
    assert kinds(busy, obs(15, large=29)) == {"airlift_surge"}  # +9: significant, though far from 40
    assert kinds(busy, obs(15, large=27)) == set()  # +7: within what a count of 20 scatters
    # a volatile history needs more: the spread (1.4826 x MAD = 7.4) replaces sqrt(baseline)
    volatile = [obs(0, large=15), obs(5, large=20), obs(10, large=25)]
    assert kinds(volatile, obs(15, large=29)) == set()
    assert kinds(volatile, obs(15, large=35)) == {"airlift_surge"}
    # on a small base the doubling rule still decides: 4 -> 7 is neither a doubling nor 2 sigma (4 + 2 x 2)
    small = [obs(0, large=4), obs(5, large=4), obs(10, large=4)]
    assert kinds(small, obs(15, large=7)) == set() and kinds(small, obs(15, large=8)) == {"airlift_surge"}


def test_surge_is_judged_on_confident_aircraft_only():
    """A detector's marginal peaks (fighters read as transports) come and go between passes: neither their coming
    nor their going makes a surge, while aircraft it is sure of do. Only the sure ones are its evidence."""
    noisy = [obs(0, large=5, confident=1), obs(5, large=3, confident=1), obs(10, large=6, confident=1)]
    assert kinds(noisy, obs(15, large=6, confident=4)) == {"airlift_surge"}  # all peaks: 6 against 5
    assert kinds(noisy, obs(15, large=10, confident=1)) == set()  # ten peaks, no more of them sure
    plane = MapObject(cls="large_aircraft", x=0.0, y=0.0, lon=35.95, lat=35.41, zone="apron")
    dets = [replace(plane, id="acq15:m:0", score=0.9), replace(plane, id="acq15:m:1", score=0.5),
            replace(plane, id="acq15:m:2", score=None)]  # unscored (truth, labels) always counts
    [ev] = compare(AOI_, noisy, obs(15, large=6, confident=4), dets, CFG)
    assert ev.evidence == ("acq15:m:0", "acq15:m:2") and ev.current["large_aircraft"]["min_score"] == 0.55
    # the analyst sees the margin: the count that makes a surge here (baseline 1: 1 + surge_min_increase) and the
    # scores the count rests on (an unscored truth object has none to show)
    assert ev.current["large_aircraft"]["needed"] == 3 and ev.current["large_aircraft"]["count"] == 4
    assert ev.current["large_aircraft"]["scores"] == [0.9]
    events = {e.kind: e for e in compare(AOI_, noisy, obs(15, large=6, confident=4, outbound=(8,)), dets, CFG)}
    assert events["withdrawal_activity"].current["airlift_surge"]["large_aircraft"]["scores"] == [0.9]


def test_observations_stored_before_the_confident_count_are_no_surge_baseline():
    """A store written before surges counted confident aircraft holds only the count of all peaks. That is not
    comparable, so those observations give no baseline (never a baseline of 0 that any aircraft would beat)."""
    def legacy(o: Observation) -> Observation:
        return replace(o, zone_counts={z: {k: v for k, v in c.items() if k != "large_aircraft_confident"}
                                       for z, c in o.zone_counts.items()})

    old = [legacy(obs(day, large=3, confident=0)) for day in (0, 5, 10)]
    assert measure(LARGE_AIRCRAFT, AOI_, old, obs(15, large=3, confident=3), CFG) is None
    assert kinds(old, obs(15, large=3, confident=3)) == set()
    fresh = [*old, obs(15, large=3), obs(20, large=3)]
    assert measure(LARGE_AIRCRAFT, AOI_, fresh, obs(25, large=6), CFG).n_history == 2
    assert kinds(fresh, obs(25, large=6)) == {"airlift_surge"}


def test_no_baseline_without_min_history():
    strict = DiffConfig(surge_single_pass_increase=None)
    assert kinds([obs(0)], obs(5, large=6), strict) == set()  # one earlier observation < min_history 2
    assert kinds([obs(0)], obs(5, large=6), DiffConfig(min_history=1)) == {"airlift_surge"}
    assert kinds([obs(0, parked=40)], obs(5, parked=5), strict) == set()  # no drawdown on one pass either


def test_one_earlier_pass_makes_a_surge_only_for_a_large_rise_at_half_confidence():
    """surge_single_pass_increase (4): one clear earlier pass is enough for transports arriving in numbers."""
    assert kinds([obs(0)], obs(5, large=4)) == set()  # +3: a surge on two passes, not on one
    assert kinds([obs(0), obs(2)], obs(5, large=4)) == {"airlift_surge"}
    [one] = compare(AOI_, [obs(0)], obs(5, large=6), [], CFG)
    [two] = compare(AOI_, [obs(0), obs(2)], obs(5, large=6), [], CFG)
    assert one.kind == two.kind == "airlift_surge"
    assert one.baseline["large_aircraft"]["observations"] == 1
    assert one.confidence < two.confidence  # history_factor: 1/2 against 2/3
    assert kinds([obs(0, parked=40)], obs(5, parked=5)) == set()  # other baselines still need min_history
    assert kinds([], obs(5, large=9)) == set()  # and no earlier pass, no baseline at all


def test_outbound_columns_threshold_and_own_baseline():
    assert kinds(ROUTINE, obs(15, outbound=(4,))) == set()
    [ev] = compare(AOI_, ROUTINE, obs(15, outbound=(8,)), [], CFG)
    assert ev.kind == "outbound_columns" and ev.current["outbound_vehicles"] == 8
    assert len(ev.evidence) == 8 and all(e.startswith("acq15:voutbound0") for e in ev.evidence)
    busy = [obs(0, outbound=(8,)), obs(5, outbound=(8,)), obs(10, outbound=(9,))]
    assert kinds(busy, obs(15, outbound=(9,))) == set()  # routine traffic for this base
    assert kinds(ROUTINE, obs(15, inbound=(12,))) == set()  # arrivals are not departures


def test_outbound_columns_are_counted_net_of_inbound_ones_on_the_same_road():
    """The reinforcement replay (seed 7) that raised a false withdrawal: an arriving column whose slow trucks were
    partly read backwards shows as 5 trucks out and 3 in on one road. Per road only the excess going out counts."""
    assert kinds(ROUTINE, obs(15, outbound=(5,), inbound=(3,))) == set()  # net 2 out on the gate road
    [ev] = compare(AOI_, ROUTINE, obs(15, outbound=(9,), inbound=(3,)), [], CFG)  # net 6: still a departure
    assert ev.current["net_outbound_vehicles"] == 6 and ev.current["outbound_vehicles"] == 9
    # arrivals on another road do not cancel departures on this one
    [ev] = compare(AOI_, ROUTINE, obs(15, outbound=(6,), inbound=(12,), inbound_road="south_road"), [], CFG)
    assert ev.kind == "outbound_columns" and ev.current["net_outbound_vehicles"] == 6


def test_drawdown_needs_confirmation_on_second_observation():
    first_low = obs(15, parked=15)
    assert kinds(ROUTINE, first_low) == set()  # a drop seen once is only provisional
    assert {s.kind for s in signals(AOI_, ROUTINE, first_low, CFG)} == {"asset_drop"}
    [ev] = compare(AOI_, [*ROUTINE, first_low], obs(20, parked=14), [], CFG)
    assert ev.kind == "asset_drawdown" and ev.current["parked_vehicles"]["confirmed"]
    assert ev.current["acquisitions"] == ["acq15", "acq20"]
    # recovered on the second look: not confirmed
    assert kinds([*ROUTINE, first_low], obs(20, parked=38)) == set()


def test_drawdown_confirmation_skips_a_clouded_observation():
    first_low = obs(15, small=4)
    clouded = obs(20, small=0, valid={"apron": 0.1})
    assert kinds([*ROUTINE, first_low, clouded], obs(25, small=3)) == {"asset_drawdown"}


def test_clouded_zone_is_not_observed_never_empty():
    all_cloud = obs(15, large=0, small=0, parked=0, valid={"apron": 0.2, "runway": 0.1, "park": 0.3})
    assert measure(PARKED_AIRCRAFT, AOI_, ROUTINE, all_cloud, CFG) is None
    assert signals(AOI_, ROUTINE, all_cloud, CFG) == []
    # two clouded looks in a row never confirm a drawdown either
    assert kinds([*ROUTINE, all_cloud], obs(20, large=0, small=0, parked=0, valid={"apron": 0.0, "park": 0.0})) \
        == set()


def test_partly_clouded_zone_is_scaled_not_read_as_drop():
    # 70 % of the park visible, 70 % of its trucks counted: that is the baseline, not a drawdown
    half = obs(15, parked=28, small=8, valid={"park": 0.7, "apron": 0.7})
    assert signals(AOI_, ROUTINE, half, CFG) == []
    [m] = [measure(PARKED_AIRCRAFT, AOI_, ROUTINE, half, CFG)]
    assert m.expected == pytest.approx(8.4) and m.coverage == pytest.approx(0.7)


def test_clouds_lower_confidence():
    clear = compare(AOI_, ROUTINE, obs(15, large=6), [], CFG)[0]
    cloudy = compare(AOI_, ROUTINE, obs(15, large=6, valid={"apron": 0.65, "park": 0.0}), [], CFG)[0]
    assert cloudy.kind == clear.kind == "airlift_surge" and cloudy.confidence < clear.confidence


def test_short_history_lowers_confidence():
    long_history = [obs(-15), obs(-10), obs(-5), *ROUTINE]
    short = compare(AOI_, ROUTINE[1:], obs(15, large=6), [], CFG)[0]
    long = compare(AOI_, long_history, obs(15, large=6), [], CFG)[0]
    assert short.confidence < long.confidence


def test_gap_in_history_outside_window_means_no_baseline():
    assert kinds(ROUTINE, obs(60, large=6)) == set()  # all history older than 30 days


def test_withdrawal_when_surge_and_outbound_cooccur():
    evs = {e.kind: e for e in compare(AOI_, ROUTINE, obs(15, large=5, outbound=(9,)), [], CFG)}
    assert set(evs) == {"airlift_surge", "outbound_columns", "withdrawal_activity"}
    w = evs["withdrawal_activity"]
    assert {s["kind"] for s in w.current["signals"]} == {"airlift_surge", "outbound_columns"}
    assert set(evs["airlift_surge"].evidence) == set() and set(evs["outbound_columns"].evidence) <= set(w.evidence)


def test_withdrawal_from_signals_days_apart_within_window():
    surge_day = obs(15, large=5)
    assert kinds(ROUTINE, surge_day) == {"airlift_surge"}
    assert kinds([*ROUTINE, surge_day], obs(20, outbound=(9,))) == {"outbound_columns", "withdrawal_activity"}
    # the same two signals 10 days apart (cooccurrence 7 days) do not combine
    assert kinds([*ROUTINE, surge_day], obs(25, outbound=(9,))) == {"outbound_columns"}


def test_a_clouded_pass_between_two_signals_does_not_use_up_the_window():
    surge_day = obs(15, large=5)
    clouded = obs(20, valid={"apron": 0.0, "runway": 0.0, "park": 0.1}, large=0, parked=0)
    history = [*ROUTINE, surge_day, clouded]
    # 10 days apart, but the pass between them saw nothing: the columns are seen on the next clear pass
    assert kinds(history, obs(25, outbound=(9,))) == {"outbound_columns", "withdrawal_activity"}
    [withdrawal] = [e for e in compare(AOI_, history, obs(25, outbound=(9,)), [], CFG)
                    if e.kind == "withdrawal_activity"]
    assert "acq15" in withdrawal.current["acquisitions"]
    # the older signal weighs less (7 / 10): the same two signals on passes 5 days apart give more confidence
    [near] = [e for e in compare(AOI_, [*ROUTINE, obs(15), obs(20, large=5)], obs(25, outbound=(9,)), [], CFG)
              if e.kind == "withdrawal_activity"]
    assert withdrawal.confidence < near.confidence
    # a clear pass between them: 10 days of observed time, no co-occurrence
    assert kinds([*ROUTINE, surge_day, obs(20)], obs(25, outbound=(9,))) == {"outbound_columns"}
    # and clouds stretch the window only up to cooccurrence_max_days (14): three clouded passes do not bridge 20
    long_gap = [*ROUTINE, surge_day, *(replace(clouded, acquisition=replace(
        clouded.acquisition, id=f"acq{d}", datetime=T0 + timedelta(days=d))) for d in (20, 25, 30))]
    assert kinds(long_gap, obs(35, outbound=(9,))) == {"outbound_columns"}
    no_stretch = CFG.model_copy(update={"cooccurrence_max_days": 7})
    assert kinds(history, obs(25, outbound=(9,)), no_stretch) == {"outbound_columns"}


def test_withdrawal_from_outbound_and_provisional_drop():
    assert kinds(ROUTINE, obs(15, parked=10, outbound=(7,))) == {"outbound_columns", "withdrawal_activity"}


def test_reinforcement_is_not_withdrawal():
    # arrivals: transports surge, inbound columns, more parked trucks
    assert kinds(ROUTINE, obs(15, large=6, parked=60, inbound=(10, 8))) == {"airlift_surge"}


def test_mass_outbound_alone_is_withdrawal():
    two_roads = ("gate_road", "south_road")
    assert kinds(ROUTINE, obs(15, outbound=(9, 8), road=two_roads)) == {"outbound_columns", "withdrawal_activity"}
    # one column split in two by detection gaps is still one road's column: no withdrawal on its own
    assert kinds(ROUTINE, obs(15, outbound=(6, 4))) == {"outbound_columns"}
    # columns out on two roads but as many coming in on each: traffic, not a departure (not even outbound columns)
    assert kinds(ROUTINE, obs(15, outbound=(9, 8), inbound=(9, 8), road=two_roads)) == set()


def test_off_road_chains_are_not_departures():
    assert kinds(ROUTINE, obs(15, large=5, outbound=(9, 8), road=None)) == {"airlift_surge"}


def test_no_surge_while_the_count_falls_from_a_peak():
    """Routine month, seed 6 (MODEL_CARD): 1 and 1 confident aircraft, 4 when a transport arrives, then 3. Against
    the two-pass median the 3 is still "a surge", which a routine column days later turned into a withdrawal; a
    count below the previous look's is the surge ending, not a new one."""
    history = [obs(0), obs(5), obs(10, large=4)]
    assert kinds(history[:2], history[2]) == {"airlift_surge"}
    assert kinds(history, obs(15, large=3)) == set()
    assert kinds(history, obs(15, large=4)) == {"airlift_surge"}  # a level held is a surge still going on
    assert kinds(history, obs(15, large=3), CFG.model_copy(update={"surge_not_falling": False})) == {"airlift_surge"}
    # the previous look is the latest that saw the aprons: a clouded pass in between does not count
    clouded = obs(12, large=0, valid={"apron": 0.0, "runway": 0.0})
    assert kinds([*history, clouded], obs(15, large=3)) == set()
    assert kinds([*history, clouded], obs(15, large=5)) == {"airlift_surge"}


def test_thin_outbound_traffic_corroborates_a_surge():
    """At 10 m half a column's trucks go unseen (cloudy month: 3-4 of a column found beside Khmeimim's surge), so
    with ``surge_corroborating_vehicles`` a surge plus thinner outbound traffic is a withdrawal, and nothing else
    changes: thin traffic alone, traffic both ways, or off-road chains are not departures."""
    on = CFG.model_copy(update={"surge_corroborating_vehicles": 3})
    assert kinds(ROUTINE, obs(15, large=5, outbound=(3,))) == {"airlift_surge"}  # off: the rule before
    assert kinds(ROUTINE, obs(15, large=5, outbound=(3,)), on) == {"airlift_surge", "withdrawal_activity"}
    assert kinds(ROUTINE, obs(15, large=5, outbound=(2,)), on) == {"airlift_surge"}
    assert kinds(ROUTINE, obs(15, outbound=(4,)), on) == set()  # no surge: thin traffic is just traffic
    assert kinds(ROUTINE, obs(15, large=5, outbound=(3,), inbound=(3,)), on) == {"airlift_surge"}
    assert kinds(ROUTINE, obs(15, large=5, outbound=(4,), road=None), on) == {"airlift_surge"}
    # the surge one pass, the trucks the next (a look that itself shows only thin traffic still raises it)
    surge = obs(15, large=5)
    assert kinds([*ROUTINE, surge], obs(20, large=5, outbound=(3,)), on) == {"airlift_surge",
                                                                             "withdrawal_activity"}
    [event] = [e for e in compare(AOI_, [*ROUTINE, surge], obs(20, large=4, outbound=(3,)), [], on)
               if e.kind == "withdrawal_activity"]
    kinds_seen = {s["kind"] for s in event.current["signals"]}
    assert kinds_seen == {"airlift_surge", "outbound_traffic"}
    assert set(event.evidence) == {f"acq20:voutbound0-{k}" for k in range(3)}  # the trucks behind it
    # thinner evidence, lower confidence than a full column beside the same surge
    [full] = [e for e in compare(AOI_, [*ROUTINE, surge], obs(20, large=4, outbound=(5,)), [], on)
              if e.kind == "withdrawal_activity"]
    assert event.confidence < full.confidence


PORT = replace(AOI_, zones=AOI_.zones + (Zone("pier", "pier", box(35.97, 35.43, 35.975, 35.432)),))


def port_obs(day: int, ships: int, *, pier_valid: float = 1.0, outbound: tuple[int, ...] = ()) -> Observation:
    o = obs(day, outbound=outbound)
    return replace(o, zone_counts={**o.zone_counts, "pier": {"vessel": ships}},
                   zone_valid={**o.zone_valid, "pier": pier_valid}, counts={**o.counts, "vessel": ships})


def test_ships_leaving_their_piers_are_a_drawdown_and_with_columns_a_withdrawal():
    history = [port_obs(0, 5), port_obs(5, 4), port_obs(10, 6)]
    assert {e.kind for e in compare(PORT, history, port_obs(15, 5), [], CFG)} == set()
    assert {e.kind for e in compare(PORT, history, port_obs(15, 4), [], CFG)} == set()  # a rotation: not a drop
    drop = port_obs(15, 1)
    assert {e.kind for e in compare(PORT, history, drop, [], CFG)} == set()  # one low look: provisional
    [confirmed] = compare(PORT, history + [drop], port_obs(20, 1), [], CFG)
    assert confirmed.kind == "asset_drawdown" and confirmed.current["moored_vessels"]["count"] == 1
    withdrawal = {e.kind for e in compare(PORT, history, port_obs(15, 1, outbound=(8,)), [], CFG)}
    assert withdrawal == {"outbound_columns", "withdrawal_activity"}  # the first low look and a column leaving
    clouded = port_obs(15, 0, pier_valid=0.3)  # berths under cloud: not observed, never empty
    assert {e.kind for e in compare(PORT, history, replace(clouded, columns=()), [], CFG)} == set()


def test_a_confirmation_is_judged_against_the_baseline_before_the_first_low_look():
    """With the first low look in it, a short history's median sinks (4, 5, 3, 1 -> 3.5: one ship is then only 2.5
    fewer, under diff.moored_min_drop), so the second low look would not read low; against the baseline before both
    (4) it does."""
    history = [port_obs(0, 4), port_obs(5, 5), port_obs(10, 3)]
    first = port_obs(15, 1)
    assert {e.kind for e in compare(PORT, history, first, [], CFG)} == set()  # provisional: no event
    [confirmed] = compare(PORT, history + [first], port_obs(20, 1), [], CFG)
    assert confirmed.kind == "asset_drawdown" and confirmed.baseline["moored_vessels"]["median"] == 4
