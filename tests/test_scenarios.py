"""The scenario suite, asserted: every simulated scenario raises the alerts its expectations name and no others
they forbid; columns are grouped with the right direction; a failed expectation makes the command fail.

Detections come from the simulator's ground truth (TruthDetector), so these tests judge columns, observations,
diff and alerts on real rendered scenes (clouds, valid masks, zones) without inheriting detector errors; the
detectors are judged by their own benchmarks.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_aoi, load_config, load_scenario
from pipeline.scenarios import ColumnScore, ScenarioResult, default_scenarios, evaluate_scenario

CONFIG = load_config()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenarios")
    return {load_scenario(p).name: evaluate_scenario(p, config=CONFIG, data_dir=root / p.stem, detector="truth")
            for p in default_scenarios()}


def test_suite_has_the_four_scenarios(results):
    assert set(results) == {"syria-drawdown-2024-12", "routine-2024-10", "cloudy-2024-12", "reinforcement-2025-03"}


@pytest.mark.parametrize("name", ["syria-drawdown-2024-12", "routine-2024-10", "cloudy-2024-12",
                                  "reinforcement-2025-03"])
def test_scenario_matches_its_expectations(results, name):
    res = results[name]
    bad = [f"{r.expectation.id}: {r.detail} {r.fired}" for r in res.expectations if not r.ok]
    assert res.ok and not bad, bad
    assert res.failures == []


def test_seed_withdrawal_in_the_reported_window_with_evidence(results):
    res = results["syria-drawdown-2024-12"]
    for aoi in ("tartus", "khmeimim"):
        [w] = [a for a in res.alerts if a.aoi == aoi and a.kind == "withdrawal_activity"]
        assert date(2024, 12, 13) <= w.first_seen.date() <= date(2024, 12, 15)
        assert w.evidence and w.severity in ("medium", "high")
        assert w.baseline and w.current["signals"]
    surge = [a for a in res.alerts if a.aoi == "khmeimim" and a.kind == "airlift_surge"]
    assert surge and surge[0].current["large_aircraft"]["count"] > surge[0].baseline["large_aircraft"]["median"]


def test_no_withdrawal_in_routine_or_reinforcement(results):
    for name in ("routine-2024-10", "reinforcement-2025-03"):
        assert not [a for a in results[name].alerts if a.kind in ("withdrawal_activity", "asset_drawdown")]


def test_clouds_lower_confidence_against_the_clear_run(results):
    clear = [a for a in results["syria-drawdown-2024-12"].alerts if a.kind == "withdrawal_activity"]
    cloudy = [a for a in results["cloudy-2024-12"].alerts if a.kind == "withdrawal_activity"]
    first_clear = {a.aoi: a.first_seen for a in clear}
    first_cloudy = {a.aoi: a.first_seen for a in cloudy}
    assert all(first_cloudy[aoi] >= first_clear[aoi] for aoi in first_cloudy)  # never earlier than the clear run
    drawdowns = [a for a in results["cloudy-2024-12"].alerts if a.kind == "asset_drawdown"]
    assert all(a.first_seen.date() >= date(2024, 12, 12) for a in drawdowns)  # none from clouds before it began


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """The scenarios on their own seeds with the committed learned detector (about 30 s)."""
    root = tmp_path_factory.mktemp("learned")
    return {load_scenario(p).name: evaluate_scenario(p, config=CONFIG, data_dir=root / p.stem)
            for p in default_scenarios()}


def test_learned_detector_raises_no_false_withdrawal(learned):
    """What the committed detector must never say: withdrawal (or drawdown) in a routine month or a reinforcement."""
    for name in ("routine-2024-10", "reinforcement-2025-03"):
        assert learned[name].ok, [r.expectation.id for r in learned[name].expectations if not r.ok]
        assert not [a for a in learned[name].alerts if a.kind in ("withdrawal_activity", "asset_drawdown")]


def test_learned_detector_sees_the_seed_withdrawals_in_the_reported_window(learned):
    """What the committed detector concludes on the seed scenario (README): Khmeimim's An-124 surge and its
    withdrawal on 13 Dec, Al Khadim's arrival, and Tartus's withdrawal on 13 Dec: its ships gone from the piers
    (they left for anchorages on 9-10 Dec) and an outbound column the same day. Before ships were counted, Tartus's
    came a pass late (18 Dec), when the detector found both of its columns."""
    res = learned["syria-drawdown-2024-12"]
    first = {(a.aoi, a.kind): a.first_seen.date() for a in res.alerts}
    assert date(2024, 12, 13) <= first[("khmeimim", "airlift_surge")] <= date(2024, 12, 15)
    assert date(2024, 12, 14) <= first[("al_khadim", "airlift_surge")] <= date(2024, 12, 20)
    assert date(2024, 12, 13) <= first[("khmeimim", "withdrawal_activity")] <= date(2024, 12, 15)
    assert date(2024, 12, 13) <= first[("tartus", "withdrawal_activity")] <= date(2024, 12, 15)
    assert date(2024, 12, 13) <= first[("tartus", "asset_drawdown")] <= date(2024, 12, 20)
    [withdrawal] = [a for a in res.alerts if a.aoi == "tartus" and a.kind == "withdrawal_activity"]
    kinds = {s["kind"] for s in withdrawal.current["signals"]}
    assert "outbound_columns" in kinds and kinds & {"asset_drawdown", "asset_drop"}


def test_column_direction_and_count_against_truth(results):
    total = ColumnScore()
    for res in results.values():
        total.add(res.columns)
    assert total.matched >= 40
    assert total.direction_accuracy >= 0.95
    assert total.within_one == 1.0  # with perfect detections, on every scene (truth columns under cloud excluded)


def test_a_column_under_cloud_is_not_truth_to_find():
    from dataclasses import replace

    from pipeline.scenarios import observable_columns
    from pipeline.sources.simulated import SimulatedSource

    aoi = load_aoi("tartus")
    source = SimulatedSource(load_scenario())
    acq = next(a for a in source.search(aoi, date(2024, 12, 13), date(2024, 12, 13)))
    sim = source.truth(acq, aoi)
    assert sim.truth_columns and observable_columns(sim.truth_columns, sim.truth, sim.scene, 3) == sim.truth_columns
    clouded = replace(sim.scene, valid=np.zeros_like(sim.scene.valid))
    assert observable_columns(sim.truth_columns, sim.truth, clouded, 3) == []


def test_evaluate_scenarios_exits_non_zero_on_mismatch(tmp_path):
    data = yaml.safe_load(default_scenarios()[0].read_text())
    data["sites"] = [s for s in data["sites"] if s["aoi"] == "tartus"]
    data["start"], data["end"] = date(2024, 11, 25), date(2024, 12, 9)  # routine weeks only
    data["expectations"] = [
        {"id": "quiet", "claim": "nothing yet", "aoi": "tartus", "kind": "withdrawal_activity", "expect": "absent",
         "start": date(2024, 11, 25), "end": date(2024, 12, 9)},
        {"id": "wrong", "claim": "a withdrawal that never happened", "aoi": "tartus", "kind": "withdrawal_activity",
         "start": date(2024, 11, 25), "end": date(2024, 12, 9)},
    ]
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = CliRunner().invoke(app, ["evaluate-scenarios", str(path), "--detector", "truth",
                                   "--data-dir", str(tmp_path / "data")])
    assert out.exit_code == 1, out.output
    assert "MISMATCH wrong" in out.output.replace("\n", " ") and "ok       quiet" in out.output
    data["expectations"] = data["expectations"][:1]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = CliRunner().invoke(app, ["evaluate-scenarios", str(path), "--detector", "truth",
                                   "--data-dir", str(tmp_path / "data")])
    assert out.exit_code == 0, out.output
    assert "1/1 scenarios match" in out.output
    # --seeds replays the same story with other seeds and says how often each expectation held
    out = CliRunner().invoke(app, ["evaluate-scenarios", str(path), "--detector", "truth", "--seeds", "2",
                                   "--data-dir", str(tmp_path / "sweep")])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "over 2 other seeds: 2/2 runs match every expectation" in text and "2/2 quiet" in text
    name = data["name"]
    one, two = (sorted((tmp_path / "sweep" / f"{name}-seed{k}" / "scenes" / "tartus").glob("*.tif"))
                for k in (1, 2))
    assert [p.name for p in one] == [p.name for p in two] and one[0].read_bytes() != two[0].read_bytes()
    # --jobs runs the same replays in worker processes: same outcome, same pixels; --out records every replay
    out = CliRunner().invoke(app, ["evaluate-scenarios", str(path), "--detector", "truth", "--seeds", "2",
                                   "--first-seed", "1", "--jobs", "2", "--out", str(tmp_path / "sweep.json"),
                                   "--data-dir", str(tmp_path / "sweep2")])
    assert out.exit_code == 0, out.output
    assert "over 2 other seeds: 2/2 runs match every expectation" in " ".join(out.output.split())
    assert (tmp_path / "sweep2" / f"{name}-seed2" / "scenes" / "tartus" / two[0].name).read_bytes() \
        == two[0].read_bytes()
    replays = json.loads((tmp_path / "sweep.json").read_text())["replays"]
    assert [(r["scenario"], r["seed"], r["ok"]) for r in replays] == [(name, None, True), (name, 1, True),
                                                                       (name, 2, True)]
    assert all(r["expectations"] == {"quiet": {"ok": True, "fired": []}} for r in replays)
    out = CliRunner().invoke(app, ["evaluate-scenarios", str(path), "--detector", "truth", "--seeds", "2",
                                   "--jobs", "2", "--compare", str(tmp_path / "sweep.json"),
                                   "--data-dir", str(tmp_path / "sweep3")])
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and f"3 -> 3 of 3 {name} / quiet" in text and "0 of 1 expectations changed" in text
    # --weights reaches the detector: a missing candidate is named in the error
    out = CliRunner().invoke(app, ["evaluate-scenarios", str(path), "--weights", str(tmp_path / "candidate.pt"),
                                   "--data-dir", str(tmp_path / "data2")])
    assert out.exit_code != 0 and "candidate.pt not found" in out.output.replace("\n", "")


# ---------------------------------------------------------------- expectation checks on hand-built stores


def _store_with(tmp_path, parked: list[int], valid: list[float], events=()):
    from datetime import UTC, datetime, timedelta

    from pipeline.store import Store
    from pipeline.types import Acquisition, ChangeEvent, Observation

    store = Store(tmp_path / "basewatch.sqlite")
    run_id = store.begin_run(CONFIG, source="simulated", simulated=True, model="m", aois=["khmeimim"],
                             start=date(2024, 12, 1), end=date(2024, 12, 31))
    aoi = load_aoi("khmeimim")
    aprons = [z.name for z in aoi.zones if z.kind == "apron"]
    for i, (n, v) in enumerate(zip(parked, valid, strict=True)):
        when = datetime(2024, 12, 1, 8, 25, tzinfo=UTC) + timedelta(days=5 * i)
        acq = Acquisition(source="simulated", id=f"a{i}", sensor="Sentinel-2A", datetime=when, simulated=True)
        zc = {z.name: {} for z in aoi.zones}
        zc[aprons[0]] = {"small_aircraft": n}
        obs = Observation(aoi="khmeimim", acquisition=acq, counts={"small_aircraft": n}, zone_counts=zc,
                          zone_valid={z.name: v for z in aoi.zones}, columns=(), valid_fraction=v, model="m")
        evs = [ChangeEvent(aoi="khmeimim", kind=k, acquisition_id=acq.id, when=when, score=1.0, confidence=c,
                           baseline={}, current={}) for (day, k, c) in events if day == i]
        store.save_acquisition(run_id, "khmeimim", f"{i}.tif", obs, [], [], evs)
    return store, aoi


def _exp(kind: str, expect: str = "present", **kw):
    from pipeline.config import ExpectationFile

    return ExpectationFile(id="x", claim="c", aoi="khmeimim", kind=kind, start=date(2024, 12, 1),
                           end=date(2024, 12, 31), expect=expect, **kw)


def test_expectation_present_absent_and_confidence(tmp_path):
    from pipeline.scenarios import check_expectation

    store, aoi = _store_with(tmp_path, [10, 10, 10], [1, 1, 1],
                             events=[(1, "withdrawal_activity", 0.8), (2, "airlift_surge", 0.1)])
    assert check_expectation(_exp("withdrawal_activity"), store, aoi, "m", CONFIG).ok
    assert check_expectation(_exp("withdrawal_activity"), store, aoi, "other-model", CONFIG).ok is False
    assert not check_expectation(_exp("withdrawal_activity", "absent"), store, aoi, "m", CONFIG).ok
    assert not check_expectation(_exp("withdrawal_activity", max_confidence=0.7), store, aoi, "m", CONFIG).ok
    # under min_confidence an event stays silent, so it neither confirms nor breaks an expectation
    assert check_expectation(_exp("airlift_surge", "absent"), store, aoi, "m", CONFIG).ok
    store.close()


def test_no_abandonment_sees_empty_aprons_but_not_clouded_ones(tmp_path):
    from pipeline.scenarios import check_expectation

    store, aoi = _store_with(tmp_path / "a", [10, 10, 10, 0], [1, 1, 1, 1])
    res = check_expectation(_exp("no_abandonment"), store, aoi, "m", CONFIG)
    assert not res.ok and res.fired == [("2024-12-16", 1.0)]
    store.close()
    store, aoi = _store_with(tmp_path / "b", [10, 10, 10, 0], [1, 1, 1, 0.2])  # the empty look was clouded
    assert check_expectation(_exp("no_abandonment"), store, aoi, "m", CONFIG).ok
    store.close()


def test_seed_sweep_counts_where_each_expectation_held():
    from pipeline.config import ExpectationFile
    from pipeline.scenarios import ExpectationResult, SeedSweep

    def result(ok_a: bool, ok_b: bool) -> ScenarioResult:
        exps = [ExpectationResult(ExpectationFile(id=i, claim="c", aoi="tartus", kind="outbound_columns",
                                                  start=date(2024, 12, 1), end=date(2024, 12, 2)), [], ok, "")
                for i, ok in (("a", ok_a), ("b", ok_b))]
        cols = ColumnScore(scenes=2, truth_columns=2, detected_columns=2, matched=2, direction_right=1,
                           count_errors=[0, 1])
        return ScenarioResult("s", Path("s.yaml"), "run", "m", 1.0, exps, [], cols, [])

    sweep = SeedSweep("s")
    for seed, oks in ((1, (True, True)), (2, (True, False)), (3, (False, False))):
        sweep.add(seed, result(*oks))
    assert (sweep.runs, sweep.matched_runs) == (3, 1)
    assert sweep.held == {"a": 2, "b": 1} and sweep.failed_seeds == {"a": [3], "b": [2, 3]}
    assert (sweep.columns.matched, sweep.columns.direction_right, sweep.columns.scenes) == (6, 3, 6)


def test_lookback_starts_the_replay_before_the_scenario(tmp_path):
    data = yaml.safe_load(default_scenarios()[0].read_text())
    data["sites"] = [s for s in data["sites"] if s["aoi"] == "tartus"]
    data["start"], data["end"] = date(2024, 11, 25), date(2024, 12, 9)
    data["expectations"] = [{"id": "quiet", "claim": "nothing yet", "aoi": "tartus", "kind": "withdrawal_activity",
                             "expect": "absent", "start": date(2024, 11, 25), "end": date(2024, 12, 9)}]
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = CliRunner().invoke(app, ["evaluate-scenarios", str(path), "--detector", "truth", "--lookback-days", "15",
                                   "--data-dir", str(tmp_path / "data")])
    assert out.exit_code == 0, out.output
    assert "history from 2024-11-10" in " ".join(out.output.split())
    scenes = tmp_path / "data" / data["name"] / "scenes" / "tartus"
    days = sorted(p.stem.split("-")[-1][:8] for p in scenes.glob("*.tif"))
    # Tartus passes every 5 days (13 Dec, 8 Dec, ...): 3 of them in the 15 days before the scenario's own start
    assert days[0] < "20241125" and sum(d < "20241125" for d in days) == 3 and days[-1] <= "20241209"


def test_sweep_seeds_start_where_asked():
    from pipeline.scenarios import sweep_seeds

    assert sweep_seeds(3) == [1, 2, 3] and sweep_seeds(3, 17) == [17, 18, 19] and sweep_seeds(0, 5) == []


def test_replay_comparison_names_the_seeds_that_flipped(tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.replay_compare import compare_replays, load_replays

    def replay(seed, **held):
        return {"scenario": "s", "seed": seed, "expectations": {k: {"ok": v, "fired": []} for k, v in held.items()}}

    before = [replay(None, a=True, b=False), replay(1, a=True, b=True), replay(2, a=False, b=True)]
    after = [replay(None, a=False, b=True), replay(1, a=True, b=True), replay(3, a=True, b=True)]  # 2 and 3: not shared
    rows = {c.expectation: c for c in compare_replays(before, after)}
    assert (rows["a"].runs, rows["a"].held_before, rows["a"].held_after, rows["a"].lost, rows["a"].gained) \
        == (2, 2, 1, (None,), ())
    assert (rows["b"].held_before, rows["b"].held_after, rows["b"].gained) == (1, 2, (None,))
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": []}')
    with pytest.raises(ConfigError, match="not a replay file written by `evaluate-scenarios --out`"):
        load_replays(bad)


def test_replay_comparison_says_whether_the_flips_are_beyond_chance():
    """Verdicts flip a seed or two either way on a hundredth of a score (MODEL_CARD, stage 18): the comparison gives
    the exact sign test on the flipped seeds, and names only changes no coin toss explains."""
    import io

    from rich.console import Console

    from pipeline.replay_compare import compare_replays, print_comparison, sign_test

    assert sign_test(0, 0) == 1.0 and sign_test(1, 0) == 1.0 and sign_test(2, 3) == 1.0
    assert sign_test(5, 0) == pytest.approx(2 / 32) and sign_test(0, 6) == pytest.approx(2 / 64)
    assert sign_test(8, 1) == pytest.approx(2 * 10 / 512)

    def replay(seed, **held):
        return {"scenario": "s", "seed": seed, "expectations": {k: {"ok": v, "fired": []} for k, v in held.items()}}

    seeds = range(1, 17)
    before = [replay(s, surge=True, quiet=s > 2, arrival=True) for s in seeds]
    after = [replay(s, surge=s > 6, quiet=s != 5, arrival=s != 9) for s in seeds]  # surge lost on 6 seeds
    rows = {c.expectation: c for c in compare_replays(before, after)}
    assert rows["surge"].p_value == pytest.approx(2 / 64) and rows["quiet"].p_value == 1.0
    out = io.StringIO()
    print_comparison(list(rows.values()), Console(file=out, width=200), "earlier.json")
    text = out.getvalue()
    assert "lost on 1, 2, 3, 4, 5, 6; p = 0.03" in text and "lost on 5; gained on 1, 2; p = 1.00" in text
    assert "beyond chance (sign test, p < 0.05): s / surge (worse)" in text and "quiet (" not in text.split("chance")[1]
    calm = {k: v for k, v in rows.items() if k != "surge"}
    out = io.StringIO()
    print_comparison(list(calm.values()), Console(file=out, width=200), "earlier.json")
    assert "beyond chance (sign test, p < 0.05): none (it takes 6 seeds flipped one way" in out.getvalue()
