"""`basewatch alerts`: the store's open alerts, most severe first, marked simulated, from the store alone."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from typer.testing import CliRunner

from pipeline.alert_list import list_alerts
from pipeline.cli import app
from pipeline.config import BasewatchConfig
from pipeline.errors import StoreError
from pipeline.store import STORE_FILENAME, open_store
from pipeline.types import Alert


def _alert(aoi, kind, severity, confidence, status, day, model="m1") -> Alert:
    when = datetime(2024, 12, day, 8, 25, tzinfo=UTC)
    return Alert(id=f"{aoi}:{kind}:{day}:{model}", aoi=aoi, kind=kind, severity=severity, confidence=confidence,
                 status=status, first_seen=when, last_seen=when.replace(day=day + 5), acquisitions=["a", "b"],
                 evidence=["d1", "d2", "d3"])


@pytest.fixture
def store_dir(tmp_path):
    data = tmp_path / "data"
    with open_store(data) as store:
        run_id = store.begin_run(BasewatchConfig(), source="simulated", simulated=True, model="m1",
                                 aois=["tartus", "khmeimim"], start=date(2024, 12, 1), end=date(2024, 12, 31))
        store.replace_alerts(run_id, "tartus", "m1", [
            _alert("tartus", "outbound_columns", "low", 1.0, "updated", 13),
            _alert("tartus", "withdrawal_activity", "high", 0.8, "new", 18)])
        store.replace_alerts(run_id, "khmeimim", "m1", [
            _alert("khmeimim", "airlift_surge", "medium", 0.6, "closed", 3),
            _alert("khmeimim", "withdrawal_activity", "high", 0.63, "updated", 13)])
        store.finish_run(run_id, "ok", {})
    return data


def test_open_alerts_most_severe_first(store_dir):
    listing = list_alerts(store_dir)
    assert listing.simulated and listing.model == "m1"
    assert [(a.aoi, a.kind) for a in listing.alerts] == [
        ("tartus", "withdrawal_activity"), ("khmeimim", "withdrawal_activity"), ("tartus", "outbound_columns")]
    everything = list_alerts(store_dir, include_closed=True, aoi="khmeimim")
    assert [a.kind for a in everything.alerts] == ["withdrawal_activity", "airlift_surge"]


def test_the_command_prints_a_table_or_json_and_says_simulated(store_dir):
    runner = CliRunner()
    ran = runner.invoke(app, ["alerts", "--data-dir", str(store_dir)])
    assert ran.exit_code == 0, ran.output
    assert "SIMULATED" in ran.output and "withdrawal_activity" in ran.output and "airlift_surge" not in ran.output
    assert "2024-12-18..12-23" in ran.output
    ran = runner.invoke(app, ["alerts", "--data-dir", str(store_dir), "--json", "--all"])
    assert ran.exit_code == 0, ran.output
    data = json.loads(ran.output)
    assert data["simulated"] is True and len(data["alerts"]) == 4 and data["alerts"][0]["evidence"] == 3


def test_no_store_is_an_error_and_none_is_created(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        list_alerts(tmp_path / "empty")
    ran = CliRunner().invoke(app, ["alerts", "--data-dir", str(tmp_path / "empty")])
    assert ran.exit_code == 2 and not (tmp_path / "empty" / STORE_FILENAME).exists()


def test_an_unknown_model_names_the_stored_ones(store_dir):
    with pytest.raises(StoreError, match="models stored: m1"):
        list_alerts(store_dir, model="m2")
