"""Alert rules: severity from config, silence under min confidence, dedup, lifecycle, change tracking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.alerts import changes, replay, severity
from pipeline.config import AlertsConfig
from pipeline.types import ChangeEvent

CFG = AlertsConfig()
T0 = datetime(2024, 12, 3, 8, 25, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def ev(n: int, kind: str = "withdrawal_activity", confidence: float = 0.8, aoi: str = "tartus") -> ChangeEvent:
    return ChangeEvent(aoi=aoi, kind=kind, acquisition_id=f"acq{n}", when=day(n), score=1.0, confidence=confidence,
                       baseline={"b": n}, current={"c": n}, evidence=(f"acq{n}:m:0",))


def test_severity_from_config_lowered_by_low_confidence():
    assert severity("withdrawal_activity", 0.8, CFG) == "high"
    assert severity("withdrawal_activity", 0.3, CFG) == "medium"
    assert severity("outbound_columns", 0.3, CFG) == "low"
    custom = AlertsConfig(severity={"airlift_surge": "high"})
    assert severity("airlift_surge", 0.9, custom) == "high"


def test_continuing_event_updates_one_alert():
    observed = [day(n) for n in (0, 5, 10)]
    [alert] = replay([ev(0), ev(5)], observed, CFG, model="m")
    assert alert.status == "updated" and alert.first_seen == day(0) and alert.last_seen == day(5)
    assert alert.acquisitions == ["acq0", "acq5"] and alert.id == "tartus:withdrawal_activity:20241203:m"
    assert alert.baseline == {"b": 0} and alert.current == {"c": 5}  # baseline from before the change
    assert alert.evidence == ["acq5:m:0", "acq0:m:0"]


def test_alert_closes_after_quiet_period_and_reopens_as_new():
    observed = [day(n) for n in range(0, 60, 5)]
    alerts = replay([ev(0), ev(40)], observed, CFG, model="m")
    assert [(a.status, a.first_seen) for a in alerts] == [("closed", day(0)), ("new", day(40))]
    assert len({a.id for a in alerts}) == 2


def test_not_closed_without_a_later_observation():
    [alert] = replay([ev(0)], [day(0)], CFG)
    assert alert.status == "new"


def test_silent_kinds_and_low_confidence():
    observed = [day(0)]
    assert replay([ev(0, kind="asset_drop"), ev(0, confidence=0.1)], observed, CFG) == []
    assert len(replay([ev(0, kind="airlift_surge"), ev(0)], observed, CFG)) == 2


def test_dedup_is_per_aoi_and_kind():
    alerts = replay([ev(0), ev(0, aoi="khmeimim"), ev(0, kind="outbound_columns")], [day(0)], CFG)
    assert sorted((a.aoi, a.kind) for a in alerts) == [
        ("khmeimim", "withdrawal_activity"), ("tartus", "outbound_columns"), ("tartus", "withdrawal_activity")]


def test_replay_is_order_independent():
    events = [ev(0), ev(5), ev(10, kind="airlift_surge")]
    observed = [day(n) for n in (0, 5, 10, 30)]
    assert replay(events, observed, CFG) == replay(list(reversed(events)), list(reversed(observed)), CFG)


def test_changes_between_states():
    before = replay([ev(0)], [day(0)], CFG)
    after = replay([ev(0), ev(5), ev(5, kind="airlift_surge")], [day(0), day(5)], CFG)
    assert changes(before, after) == {before[0].id: "updated", after[1].id: "new"}
    assert changes(after, after) == {}
    closed = replay([ev(0), ev(5)], [day(0), day(5), day(30)], CFG)
    assert changes(after[:1], closed) == {before[0].id: "closed"}


def test_update_keeps_first_baseline_per_key_and_latest_current():
    first = ChangeEvent(aoi="k", kind="withdrawal_activity", acquisition_id="a0", when=day(0), score=1, confidence=0.8,
                        baseline={"airlift_surge": {"median": 2}}, current={"airlift_surge": {"count": 6}})
    later = ChangeEvent(aoi="k", kind="withdrawal_activity", acquisition_id="a5", when=day(5), score=1, confidence=0.6,
                        baseline={"airlift_surge": {"median": 4}, "asset_drawdown": {"median": 40}},
                        current={"asset_drawdown": {"count": 20}})
    [alert] = replay([first, later], [day(0), day(5)], CFG)
    assert alert.baseline == {"airlift_surge": {"median": 2}, "asset_drawdown": {"median": 40}}
    assert alert.current == {"airlift_surge": {"count": 6}, "asset_drawdown": {"count": 20}}
    assert alert.confidence == 0.8 and alert.severity == "high"
