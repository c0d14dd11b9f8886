"""The DESIGN.md matching rule on hand-made cases."""

from __future__ import annotations

import pytest

from pipeline.evaluation import ClassSummary, evaluate_scenes, heading_error_deg, match_class
from pipeline.types import MapObject


def obj(cls: str, x: float, y: float, score: float | None = None, moving: bool | None = None,
        heading: float | None = None) -> MapObject:
    return MapObject(cls=cls, x=x, y=y, lon=0.0, lat=0.0, score=score, moving=moving, heading_deg=heading)


def test_radius_is_per_class():
    truth = [obj("large_aircraft", 0, 0), obj("vehicle", 1000, 0, moving=True)]
    dets = [obj("large_aircraft", 29, 0, 0.9), obj("vehicle", 1021, 0, 0.9, moving=True)]
    assert match_class(dets, truth, "large_aircraft").tp == 1  # 29 m <= 30 m
    r = match_class(dets, truth, "vehicle")  # 21 m > 20 m
    assert (r.tp, r.fp, r.fn) == (0, 1, 1)


def test_greedy_in_descending_score_and_one_to_one():
    truth = [obj("large_aircraft", 0, 0)]
    low = obj("large_aircraft", 1, 0, 0.3)
    high = obj("large_aircraft", 20, 0, 0.95)
    r = match_class([low, high], truth, "large_aircraft")
    assert r.tp == 1 and r.matches[0].detection is high  # higher score wins even though it is farther
    assert r.false_positives == [low]
    assert r.count_error == 1


def test_nearest_unmatched_truth_is_taken():
    truth = [obj("large_aircraft", 0, 0), obj("large_aircraft", 40, 0)]
    dets = [obj("large_aircraft", 25, 0, 0.9), obj("large_aircraft", 5, 0, 0.8)]
    r = match_class(dets, truth, "large_aircraft")
    assert r.tp == 2 and r.fp == 0 and r.fn == 0
    assert {(m.detection.x, m.truth.x) for m in r.matches} == {(25, 40), (5, 0)}


def test_class_must_agree_and_parked_vehicles_are_not_scored():
    truth = [obj("vehicle", 0, 0, moving=False), obj("vehicle", 100, 0, moving=True), obj("small_aircraft", 200, 0)]
    dets = [obj("large_aircraft", 200, 0, 0.9), obj("vehicle", 101, 0, 0.8, moving=True)]
    assert match_class(dets, truth, "large_aircraft").fp == 1
    r = match_class(dets, truth, "vehicle")
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)


def test_small_aircraft_are_scored_as_parked_aircraft_fighters_and_helicopters_alike():
    truth = [obj("small_aircraft", 0, 0), obj("helicopter", 100, 0), obj("large_aircraft", 300, 0)]
    dets = [obj("small_aircraft", 15, 0, 0.9), obj("small_aircraft", 100, 19, 0.8), obj("small_aircraft", 300, 0, 0.7)]
    r = match_class(dets, truth, "small_aircraft")
    assert (r.tp, r.fp, r.fn) == (2, 1, 0)  # a transport is not a parked fighter
    assert match_class([obj("small_aircraft", 121, 0, 0.9)], truth, "small_aircraft").tp == 0  # 21 m > 20 m
    assert match_class(dets, truth, "large_aircraft").fn == 1


def test_summary_precision_recall_f1_count_error_and_heading():
    scene1 = ([obj("vehicle", 0, 0, 0.9, True, heading=350), obj("vehicle", 500, 0, 0.5, True, heading=0)],
              [obj("vehicle", 5, 0, moving=True, heading=10)])
    scene2 = ([], [obj("vehicle", 0, 0, moving=True, heading=90), obj("vehicle", 300, 0, moving=True, heading=90)])
    s: ClassSummary = evaluate_scenes([scene1, scene2], ("vehicle",))["vehicle"]
    assert (s.tp, s.fp, s.fn) == (1, 1, 2)
    assert s.precision == pytest.approx(0.5)
    assert s.recall == pytest.approx(1 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert s.count_errors == [1, 2] and s.mean_count_error == pytest.approx(1.5)
    assert s.heading_errors == [pytest.approx(20.0)]
    assert s.heading_within(30) == 1.0 and s.heading_within(10) == 0.0


def test_heading_error_wraps():
    assert heading_error_deg(359, 1) == pytest.approx(2)
    assert heading_error_deg(90, 270) == pytest.approx(180)
    assert heading_error_deg(-10, 10) == pytest.approx(20)


def test_evaluate_command_pairs_scenes_and_writes_report(tmp_path):
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app

    scenes = tmp_path / "scenes"
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["evaluate", "--scenes", str(scenes), "--make-heldout", "2", "--heldout-size",
                                      "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["scenes"] == 2 and set(report["detectors"]) == {"learned", "classical"}
    for name, det in report["detectors"].items():  # each scored on the classes it can report
        own = {"large_aircraft", "vehicle"} | ({"small_aircraft"} if name == "classical" else set())
        assert set(det["classes"]) == own
        assert set(det["recall_by_contrast"]) == own  # chip truth carries contrast
        assert set(det["recall_by_ground"]) == own and all(  # and stands on ground of some kind
            {r["ground"] for r in rows} == {"bare", "vegetated"} for rows in det["recall_by_ground"].values())
        assert {"precision", "recall", "f1", "mean_abs_count_error", "heading_within_30deg"} <= set(
            det["classes"]["vehicle"])
    bad = CliRunner().invoke(app, ["evaluate", "--scenes", str(tmp_path / "nothing"), "--out", str(out)])
    assert bad.exit_code == 2 and "not a folder" in bad.output
    # --weights compares another checkpoint: a copy of the committed one scores exactly the same
    import shutil

    from pipeline.config import resolve_path

    copy = shutil.copy(resolve_path("models/weights/basewatch_centernet.pt"), tmp_path / "candidate.pt")
    again = tmp_path / "again.json"
    result = CliRunner().invoke(app, ["evaluate", "--scenes", str(scenes), "--detectors", "learned", "--weights",
                                      str(copy), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert json.loads(again.read_text())["detectors"]["learned"]["classes"] == report["detectors"]["learned"]["classes"]
    missing = CliRunner().invoke(app, ["evaluate", "--scenes", str(scenes), "--weights", str(tmp_path / "no.pt")])
    assert missing.exit_code != 0 and "no.pt not found" in missing.output


def test_recall_by_truth_contrast_separates_faint_from_clear_misses():
    from dataclasses import replace

    from models.evaluate import recall_by_contrast

    truth = [replace(obj("vehicle", 0, 0, moving=True), contrast=0.004),
             replace(obj("vehicle", 500, 0, moving=True), contrast=0.05),
             replace(obj("vehicle", 1000, 0, moving=True), contrast=0.05),
             replace(obj("vehicle", 1500, 0, moving=False), contrast=0.05)]  # parked: not scored
    dets = [obj("vehicle", 505, 0, score=0.9, moving=True)]
    table = recall_by_contrast([(dets, truth)], ("vehicle",))["vehicle"]
    rows = {(r["contrast_from"], r["contrast_to"]): r for r in table}
    assert rows[(0.0, 0.006)] == {"contrast_from": 0.0, "contrast_to": 0.006, "objects": 1, "found": 0, "recall": 0.0}
    assert rows[(0.04, None)]["objects"] == 2 and rows[(0.04, None)]["found"] == 1
    assert rows[(0.012, 0.02)]["recall"] is None
    assert recall_by_contrast([(dets, [obj("vehicle", 0, 0, moving=True)])], ("vehicle",)) == {}  # no contrast: none


def test_visible_scores_ignore_faint_truth_and_give_the_full_rules_ceiling():
    from dataclasses import replace

    from models.evaluate import visible_scores

    truth = [replace(obj("vehicle", 0, 0, moving=True), contrast=0.004),  # faint, found
             replace(obj("vehicle", 500, 0, moving=True), contrast=0.005),  # faint, missed
             replace(obj("vehicle", 1000, 0, moving=True), contrast=0.05),  # visible, found
             replace(obj("vehicle", 1500, 0, moving=True), contrast=0.05)]  # visible, missed
    dets = [obj("vehicle", 3, 0, score=0.9, moving=True), obj("vehicle", 1004, 0, score=0.8, moving=True),
            obj("vehicle", 3000, 0, score=0.7, moving=True)]  # the last a false alarm
    v = visible_scores([(dets, truth)], ("vehicle",))["vehicle"]
    assert (v["tp"], v["fp"], v["fn"]) == (1, 1, 1)  # the faint pair neither helps nor hurts
    assert (v["faint_truth"], v["faint_found"]) == (2, 1)
    assert v["precision"] == 0.5 and v["recall"] == 0.5
    assert v["f1_ceiling"] == round(2 * 0.5 / 1.5, 4)  # finding both visible trucks: recall 0.5 under the full rule
    assert visible_scores([(dets, [obj("vehicle", 0, 0, moving=True)])], ("vehicle",)) == {}  # no contrast: none


def test_parked_vehicles_are_scored_as_counts_per_scene():
    from models.evaluate import detail_lines, parked_count_error

    def parked(n, x0=0.0):
        return [MapObject(cls="vehicle", x=x0 + 3 * k, y=0, lon=0, lat=0, moving=False) for k in range(n)]

    moving = [MapObject(cls="vehicle", x=0, y=0, lon=0, lat=0, moving=True, heading_deg=0)]
    runs = [(parked(18) + moving, parked(20)),  # 2 short
            (parked(33, x0=500.0), parked(30)),  # 3 over, wherever they sit: counts are not matched
            (parked(1), moving)]  # one counted where there is none
    p = parked_count_error(runs)
    assert p["truth"] == 50 and p["counted"] == 52
    assert p["mean_abs_count_error"] == pytest.approx(2.0) and p["relative_count_error"] == pytest.approx(0.12)
    assert p["scenes_with_10_or_more"] == 2 and p["median_relative_error_there"] == pytest.approx(0.1)
    assert p["false_count_in_scenes_without"] == 1
    assert parked_count_error([(moving, moving)]) == {}
    line = detail_lines({"detectors": {"learned": {"parked_vehicles": p}}})
    assert line == ["learned parked vehicles (counted, not matched): 52 counted for 50 true; mean |error| 2.0 per "
                    "scene, 12 % of the truth; 1 counted in scenes without any"]


def test_heading_accuracy_by_truth_speed_says_when_a_direction_can_be_trusted():
    from models.evaluate import detail_lines, heading_by_speed

    def truck(x, speed, heading, score=None):
        return MapObject(cls="vehicle", x=x, y=0, lon=0, lat=0, moving=True, speed_mps=speed, heading_deg=heading,
                         score=score)

    truth = [truck(0, 4.0, 90.0), truck(500, 4.0, 90.0), truck(1000, 18.0, 90.0), truck(1500, 25.0, 270.0),
             truck(2000, 25.0, 0.0)]
    dets = [truck(2, None, 270.0, 0.9),  # slow truck read backwards
            truck(502, None, 100.0, 0.9),
            truck(1003, None, 80.0, 0.9),
            truck(1502, None, 265.0, 0.9),
            truck(2002, None, 60.0, 0.9)]  # fast but 60 deg off: neither right nor reversed
    rows = {r["speed_from"]: r for r in heading_by_speed([(dets, truth)])}
    assert rows[0.0] == {"speed_from": 0.0, "speed_to": 5.0, "matched": 2, "within_30": 0.5, "reversed": 0.5}
    assert rows[5.0]["matched"] == 0 and rows[5.0]["within_30"] is None
    assert rows[15.0]["within_30"] == 1.0 and rows[20.0] == {"speed_from": 20.0, "speed_to": None, "matched": 2,
                                                             "within_30": 0.5, "reversed": 0.0}
    assert heading_by_speed([(dets, [truck(0, None, 90.0)])]) == []  # truth without speeds: nothing to say
    line = detail_lines({"detectors": {"learned": {"heading_by_speed": list(rows.values())}}})
    assert line == ["learned vehicle heading within 30 deg by truth speed: <5 m/s: 50 % of 2 (50 % reversed), "
                    "15-20 m/s: 100 % of 1 (0 % reversed), >=20 m/s: 50 % of 2 (0 % reversed)"]


def test_recall_by_truth_speed_shows_what_share_of_a_slow_column_is_seen():
    from dataclasses import replace

    from models.evaluate import detail_lines, recall_by_speed

    def truck(x, speed, contrast=0.03):
        return replace(obj("vehicle", x, 0, moving=True), speed_mps=speed, contrast=contrast)

    truth = [truck(0, 10.0), truck(500, 10.5), truck(1000, 10.0, contrast=0.004), truck(1500, 17.0),
             replace(obj("vehicle", 2000, 0, moving=False), speed_mps=0.0, contrast=0.05)]
    dets = [obj("vehicle", x + 2, 0, score=0.9, moving=True) for x in (0, 1000, 1500, 2000)]
    rows = {r["speed_from"]: r for r in recall_by_speed([(dets, truth)])}
    # the invisible truck and the parked one are not scored; the match at 1000 m is a found faint truck, not counted
    assert rows[10.0] == {"speed_from": 10.0, "speed_to": 15.0, "objects": 2, "found": 1, "recall": 0.5}
    assert rows[15.0]["recall"] == 1.0 and rows[0.0]["objects"] == 0 and rows[0.0]["recall"] is None
    assert recall_by_speed([(dets, [replace(t, speed_mps=None) for t in truth])]) == []
    line = detail_lines({"detectors": {"learned": {"recall_by_speed": list(rows.values())}}})
    assert line == ["learned recall of visible moving trucks by truth speed: 10-15 m/s: 0.50 of 2, "
                    "15-20 m/s: 1.00 of 1"]


def _desert_beside_fields():
    """A 40 x 80 px scene: bare sand (NDVI 0) on the left half, green fields (NDVI 0.78) on the right half; a cloud
    over the bottom rows."""
    from datetime import UTC, datetime

    import numpy as np
    from affine import Affine

    from pipeline.types import Acquisition, Scene

    bands = np.empty((4, 40, 80), dtype=np.float32)
    bands[:, :, :40] = 0.3
    bands[2, :, 40:], bands[3, :, 40:] = 0.05, 0.40
    bands[:2, :, 40:] = 0.05
    valid = np.ones((40, 80), dtype=bool)
    valid[30:] = False
    acq = Acquisition(source="test", id="a", sensor="Sentinel-2A", datetime=datetime(2024, 1, 1, tzinfo=UTC))
    return Scene(bands=bands, band_names=("B02", "B03", "B04", "B08"), transform=Affine(10, 0, 0, 0, -10, 400),
                 crs="EPSG:32636", valid=valid, acquisition=acq, simulated=True)


def test_recall_by_ground_separates_trucks_on_sand_from_trucks_in_fields():
    from dataclasses import replace

    from models.evaluate import ground_ndvi, recall_by_ground

    scene = _desert_beside_fields()

    def truck(col: int, row: int, contrast: float = 0.03) -> MapObject:  # pixel centre -> map coordinates
        return replace(obj("vehicle", col * 10 + 5, 400 - (row * 10 + 5), moving=True), contrast=contrast)

    on_sand, on_sand_missed, in_field = truck(15, 10), truck(20, 20), truck(60, 10)
    invisible, under_cloud = truck(25, 10, contrast=0.004), truck(60, 38)
    truth = [on_sand, on_sand_missed, in_field, invisible, under_cloud]
    grounds = ground_ndvi(scene, truth)
    assert grounds[id(on_sand)] == pytest.approx(0.0) and grounds[id(in_field)] == pytest.approx(0.778, abs=1e-3)
    assert id(under_cloud) not in grounds  # its whole ring is clouded: no ground to speak of
    dets = [obj("vehicle", d.x + 3, d.y, score=0.9, moving=True) for d in (on_sand, in_field, invisible)]
    rows = {r["ground"]: r for r in recall_by_ground([(dets, truth)], grounds, ("vehicle",))["vehicle"]}
    assert rows["bare"] == {"ground": "bare", "objects": 2, "found": 1, "recall": 0.5}  # the invisible one not scored
    assert rows["vegetated"] == {"ground": "vegetated", "objects": 1, "found": 1, "recall": 1.0}
    assert recall_by_ground([(dets, truth)], {}, ("vehicle",)) == {}
