"""`basewatch rederive`: new diff/alerts settings applied to the stored history without detecting again."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import DEFAULT_CONFIG, BasewatchConfig, load_config
from pipeline.errors import ConfigError, StoreError
from pipeline.rederive import rederive
from pipeline.store import open_store
from tests.test_run import _content, _run, tiny_scenario


@pytest.fixture
def config() -> BasewatchConfig:
    cfg = load_config()
    return cfg.model_copy(update={"detector": cfg.detector.model_copy(update={"name": "classical"})})


def _stricter(config):
    """Diff and alert settings that change counts (surge_min_score), events and alerts of the tiny scenario."""
    return config.model_copy(update={
        "diff": config.diff.model_copy(update={"outbound_min_vehicles": 2, "surge_min_score": 0.9,
                                               "drawdown_fraction": 0.8}),
        "alerts": config.alerts.model_copy(update={"min_confidence": 0.1})})


def test_rederive_ends_as_a_fresh_run_with_the_new_settings(tmp_path, config):
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    _run(config, data, scen)
    new = _stricter(config)
    [note] = _run(new, data, scen).notes
    assert "basewatch rederive" in note and "--reprocess" not in note  # only diff/alerts changed: no re-detection
    before = _content(data)
    with open_store(data) as store:
        result = rederive(store, new)
    assert result.observations == {"tartus": 4} and "diff.surge_min_score" in result.changed
    _run(new, tmp_path / "fresh", scen)
    after, fresh = _content(data), _content(tmp_path / "fresh")
    assert after == fresh  # every table, observations' counts included
    assert after["events"] != before["events"] or after["observations"] != before["observations"]
    assert after["detections"] == before["detections"]  # nothing detected again
    gone = {row[0] for row in before["alerts"]} - {row[0] for row in after["alerts"]}
    assert sorted(gone) == result.withdrawn  # alerts the new settings no longer raise are named
    assert _run(new, data, scen).notes == []  # the history now matches the settings


def test_rederive_refuses_detector_and_column_changes(tmp_path, config):
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    _run(config, data, scen)
    before = _content(data)
    changed = config.model_copy(update={
        "detector": config.detector.model_copy(update={"score_threshold": 0.9}),
        "columns": config.columns.model_copy(update={"min_vehicles": 5})})
    with open_store(data) as store, pytest.raises(ConfigError, match=r"columns.min_vehicles.*--reprocess"):
        rederive(store, changed)
    assert _content(data) == before
    [note] = _run(changed, data, scen).notes
    assert "--reprocess" in note and "rederive" not in note


def test_rederive_refuses_a_model_the_store_does_not_hold(tmp_path, config):
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    _run(config, data, scen)
    learned = config.model_copy(update={"detector": config.detector.model_copy(update={"name": "learned"})})
    with open_store(data) as store, pytest.raises(StoreError, match="models stored: classical-1.0"):
        rederive(store, learned)


def test_rederive_command(tmp_path, config):
    runner = CliRunner()
    empty = runner.invoke(app, ["rederive", "--data-dir", str(tmp_path / "none")])
    assert empty.exit_code == 2 and "basewatch run" in empty.output
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    _run(config, data, scen)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["detector"]["name"], raw["diff"]["outbound_min_vehicles"] = "classical", 2
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "aois").symlink_to(DEFAULT_CONFIG.parent / "aois")
    cfg = tmp_path / "configs" / "mine.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    done = runner.invoke(app, ["rederive", "--config", str(cfg), "--data-dir", str(data)])
    assert done.exit_code == 0, done.output
    assert "SIMULATED" in done.output and "4 observations of tartus" in done.output
    assert "diff.outbound_min_vehicles" in done.output and "index.html" in done.output


def test_evaluate_scenarios_rederives_stored_replays(tmp_path, config):
    """--rederive judges new diff settings on replays detected once: the same verdicts as replaying afresh."""
    from pipeline.scenarios import evaluate_scenario

    scen = tiny_scenario(tmp_path)
    evaluate_scenario(scen, config=config, data_dir=tmp_path / "once", detector="classical")
    new = _stricter(config)
    again = evaluate_scenario(scen, config=new, data_dir=tmp_path / "once", detector="classical", rederive=True)
    fresh = evaluate_scenario(scen, config=new, data_dir=tmp_path / "fresh", detector="classical")
    assert [(r.expectation.id, r.ok, r.fired) for r in again.expectations] == \
        [(r.expectation.id, r.ok, r.fired) for r in fresh.expectations]
    assert [a.id for a in again.alerts] == [a.id for a in fresh.alerts]
    assert _content(tmp_path / "once")["events"] == _content(tmp_path / "fresh")["events"]
    other = new.model_copy(update={"columns": new.columns.model_copy(update={"min_vehicles": 6})})
    with pytest.raises(ConfigError, match=r"columns.min_vehicles changed since this replay was stored.*without "
                                          r"--rederive"):
        evaluate_scenario(scen, config=other, data_dir=tmp_path / "once", detector="classical", rederive=True)
    # without a stored replay there is nothing to re-derive: it is run
    first = evaluate_scenario(scen, config=new, data_dir=tmp_path / "new", detector="classical", rederive=True)
    assert first.columns.scenes > 0 and again.columns.scenes == 0


def test_truth_replays_are_rederived_too(tmp_path, config):
    """Perfect-detection replays store the configured detector's settings: re-deriving them must not read that as
    a detector change."""
    from pipeline.scenarios import evaluate_scenario

    scen = tiny_scenario(tmp_path)
    first = evaluate_scenario(scen, config=config, data_dir=tmp_path / "t", detector="truth")
    again = evaluate_scenario(scen, config=_stricter(config), data_dir=tmp_path / "t", detector="truth",
                              rederive=True)
    assert again.model == first.model == "truth-sim" and again.columns.scenes == 0


def test_rederive_names_the_alerts_new_settings_no_longer_raise(tmp_path, config):
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    lenient = config.model_copy(update={"diff": config.diff.model_copy(update={"outbound_min_vehicles": 2})})
    _run(lenient, data, scen)
    with open_store(data) as store:
        raised = {a.id for a in store.alerts("tartus")}
        assert any(":outbound_columns:" in a for a in raised)
        strict = config.model_copy(update={"diff": config.diff.model_copy(update={"outbound_min_vehicles": 50})})
        result = rederive(store, strict)
        assert set(result.withdrawn) == raised - {a.id for a in store.alerts("tartus")}
        assert any(":outbound_columns:" in a for a in result.withdrawn)
