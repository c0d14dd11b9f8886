"""`basewatch run` end to end on a tiny simulated scenario: incremental, idempotent, kill-safe, failure-tolerant."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import DEFAULT_SCENARIO, BasewatchConfig, load_config
from pipeline.errors import ConfigError, SceneError
from pipeline.geotiff import read_scene
from pipeline.run import make_source, run
from pipeline.store import open_store

START, END = date(2024, 12, 8), date(2024, 12, 23)  # four Tartus passes: 8, 13, 18, 23 Dec


def tiny_scenario(folder: Path, start: date = START, end: date = END) -> Path:
    """The seed scenario cut down to Tartus over two weeks (the drawdown starts inside the window)."""
    data = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    data["sites"] = [s for s in data["sites"] if s["aoi"] == "tartus"]
    data["expectations"] = [e for e in data["expectations"] if e["aoi"] == "tartus"]
    data["start"], data["end"], data["name"] = start, end, "tiny-tartus"
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def config() -> BasewatchConfig:
    cfg = load_config()
    return cfg.model_copy(update={"detector": cfg.detector.model_copy(update={"name": "classical"})})


def _run(config, data_dir, scenario, **kw):
    return run(config, data_dir=data_dir, source_kind="simulated", scenario=scenario, progress=False,
               report=False, **kw)


def _content(data_dir: Path) -> dict:
    with open_store(data_dir) as store:
        return store.content()


def test_run_end_to_end_and_incremental(tmp_path, config):
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    first = _run(config, data, scen)
    assert first.simulated and first.processed == 4 and first.skipped == 0 and first.failures == []
    assert first.model == "classical-1.0"
    with open_store(data) as store:
        rec = store.run(first.run_id)
        assert rec.status == "ok" and rec.simulated and rec.aois == ["tartus"] and rec.start == START
        assert rec.config["detector"]["name"] == "classical" and rec.config["source"]["kind"] == "simulated"
        assert rec.config["data_dir"] == str(data) and rec.config["scenario"] == str(scen)
        assert rec.summary["processed"] == 4
        acqs = store.acquisitions("tartus")
        assert len(acqs) == 4 and all(Path(a.scene_path).exists() for a in acqs)
        assert all(Path(a.scene_path).parent == data / "scenes" / "tartus" for a in acqs)
        obs = store.observations("tartus", first.model)
        assert [o.acquisition.datetime.date() for o in obs] == [date(2024, 12, d) for d in (8, 13, 18, 23)]
        assert all(set(o.zone_valid) == {"sea", "north_pier", "naval_quay", "naval_vehicle_park", "tartus_city"}
                   for o in obs)
        dets = store.detections("tartus", obs[1].acquisition.id)
        assert dets and all(d.id.startswith(obs[1].acquisition.id) for d in dets)
        assert set(obs[1].detection_ids) == {d.id for d in dets}
    before = _content(data)
    second = _run(config, data, scen)
    assert second.processed == 0 and second.skipped == 4 and second.new_alerts == []
    assert _content(data) == before


def test_history_extended_backwards_equals_one_run(tmp_path, config):
    scen = tiny_scenario(tmp_path)
    late, whole = tmp_path / "late", tmp_path / "whole"
    _run(config, late, scen, start=date(2024, 12, 13))
    _run(config, late, scen)  # --start earlier: adds 8 Dec and re-scores what follows
    _run(config, whole, scen)
    assert _content(late) == _content(whole)


class _FlakySource:
    """A real simulated source of which one acquisition is unreadable and one entirely under cloud."""

    def __init__(self, inner, broken: str, clouded: str):
        self.inner, self.broken, self.clouded = inner, broken, clouded
        self.name, self.simulated = inner.name, inner.simulated

    def search(self, aoi, start, end):
        return self.inner.search(aoi, start, end)

    def load(self, acq, aoi):
        if acq.id == self.broken:
            raise SceneError(f"{acq.id}: pixel data is corrupt or truncated; re-download it")
        scene = self.inner.load(acq, aoi)
        if acq.id == self.clouded:
            scene = replace(scene, valid=np.zeros_like(scene.valid))
        return scene


def test_bad_and_all_cloud_scenes_do_not_stop_the_run(tmp_path, config):
    from pipeline.config import load_aoi, load_scenario

    scen = load_scenario(tiny_scenario(tmp_path))
    inner = make_source(config, kind="simulated", data_dir=tmp_path, scenario=scen)
    acqs = inner.search(load_aoi("tartus"), START, END)
    source = _FlakySource(inner, broken=acqs[1].id, clouded=acqs[2].id)
    result = _run(config, tmp_path / "data", scen, source=source)
    assert result.processed == 3 and len(result.failures) == 1 and acqs[1].id in result.failures[0]
    with open_store(tmp_path / "data") as store:
        assert store.run(result.run_id).status == "partial"
        assert not store.has_acquisition("tartus", acqs[1].id, result.model)  # retried next run
        clouded = [o for o in store.observations("tartus") if o.acquisition.id == acqs[2].id][0]
        assert clouded.valid_fraction == 0 and set(clouded.zone_valid.values()) == {0.0} and clouded.counts == {}


def test_real_source_needs_a_window(tmp_path, config):
    with pytest.raises(ConfigError, match="--start and --end"):
        run(config, data_dir=tmp_path, source_kind="files", progress=False, report=False)


def _count(db: Path, table: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("stored_before_kill", [0, 2])
def test_kill_9_mid_run_then_rerun_equals_uninterrupted(tmp_path, stored_before_kill):
    scen = tiny_scenario(tmp_path)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-c", "from pipeline.cli import app; app()", "run", "--scenario", str(scen),
           "--data-dir", str(killed), "--source", "simulated", "--detector", "classical", "--no-report"]
    env = {**os.environ, "BASEWATCH_LOG": "WARNING"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    db = killed / "basewatch.sqlite"
    while time.time() < deadline and proc.poll() is None and not (
            _count(db, "runs") and _count(db, "observations") >= stored_before_kill):
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed; make the scenario longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _count(db, "observations")
    assert stored_before_kill <= killed_at < 4
    with open_store(killed) as store:
        assert store.runs()[-1].status == "running"  # the killed run never finished
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    clean = [*cmd[:cmd.index("--data-dir") + 1], str(tmp_path / "clean"), *cmd[cmd.index("--data-dir") + 2:]]
    subprocess.run(clean, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    got, want = _content(killed), _content(tmp_path / "clean")
    differ = {t: (sorted(set(got[t]) - set(want[t]))[:2], sorted(set(want[t]) - set(got[t]))[:2])
              for t in want if got[t] != want[t]}
    assert differ == {}, f"killed at {killed_at} stored acquisitions"
    with open_store(killed) as store:  # every stored scene is whole under its real name
        for rec in store.acquisitions("tartus"):
            assert read_scene(rec.scene_path).acquisition.id == rec.acquisition.id


def test_cli_run_prints_summary_and_says_simulated(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    scen = tiny_scenario(tmp_path, end=date(2024, 12, 13))
    args = ["run", "--scenario", str(scen), "--data-dir", str(tmp_path / "d"), "--detector", "classical",
            "--no-report"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "SIMULATED" in out.output and "tartus" in out.output and "classical-1.0" in out.output
    bad = CliRunner().invoke(app, ["run", "--source", "satellite", "--data-dir", str(tmp_path / "d")])
    assert bad.exit_code == 2 and "--source 'satellite' is not one of" in bad.output
    backwards = CliRunner().invoke(app, [*args, "--start", "2024-12-20", "--end", "2024-12-10"])
    assert backwards.exit_code == 2 and "before --start" in backwards.output


def test_two_concurrent_runs_on_one_store_end_like_one(tmp_path, config):
    import threading

    scen = tiny_scenario(tmp_path, end=date(2024, 12, 13))
    shared = tmp_path / "shared"
    errors: list[BaseException] = []

    def go():
        try:
            _run(config, shared, scen)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    _run(config, tmp_path / "single", scen)
    assert _content(shared) == _content(tmp_path / "single")


def test_sweep_removes_only_stale_temp_files(tmp_path):
    from pipeline.run import STALE_PART_S, _sweep_partial_files

    folder = tmp_path / "scenes" / "tartus"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".a.tif.123.part", folder / ".b.tif.456.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - STALE_PART_S - 60
    os.utime(stale, (old, old))
    _sweep_partial_files(tmp_path)
    assert not stale.exists() and fresh.exists()  # a concurrent run may still be writing the fresh one


def test_changed_settings_are_noted_and_reprocess_derives_the_history_anew(tmp_path, config):
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    first = _run(config, data, scen)
    assert first.processed == 4 and first.notes == []
    stricter = config.model_copy(update={
        "detector": config.detector.model_copy(update={"score_threshold": 0.9, "threads": 1}),
        "diff": config.diff.model_copy(update={"outbound_min_vehicles": 50})})
    # stored acquisitions are not processed again, and the run says why its figures may be stale
    again = _run(stricter, data, scen)
    assert again.processed == 0 and again.skipped == 4
    [note] = again.notes
    assert "detector.score_threshold" in note and "diff.outbound_min_vehicles" in note and "--reprocess" in note
    assert "threads" not in note  # how fast, not what
    assert _content(data) == _content_after(_run, config, tmp_path / "old", scen)
    from pipeline.report import render_report

    with open_store(data) as store:  # the report says it too
        assert note in (render_report(store, again.run_id, data) / "index.html").read_text()
    # --reprocess replaces every stored acquisition: the store ends as a fresh run with the new settings makes it
    redone = _run(stricter, data, scen, reprocess=True)
    assert redone.processed == 4 and redone.skipped == 0 and redone.notes == []
    assert _content(data) == _content_after(_run, stricter, tmp_path / "new", scen)
    assert _content(data) != _content_after(_run, config, tmp_path / "old", scen)
    assert _run(stricter, data, scen).notes == []  # the history now matches the settings


def test_settings_drift_is_judged_per_aoi(tmp_path, config):
    """A run over another AOI with new settings does not make an AOI's old history current: the next run over that
    AOI still says its stored acquisitions were derived with the old settings."""
    data = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    data["sites"] = [s for s in data["sites"] if s["aoi"] in ("tartus", "al_khadim")]
    data["expectations"] = [e for e in data["expectations"] if e["aoi"] in ("tartus", "al_khadim")]
    data["start"], data["end"], data["name"] = START, END, "two-aois"
    scen = tmp_path / "two.yaml"
    scen.write_text(yaml.safe_dump(data, sort_keys=False))
    stricter = config.model_copy(update={"diff": config.diff.model_copy(update={"outbound_min_vehicles": 50})})
    store_dir = tmp_path / "data"
    first = _run(config, store_dir, scen, aois=["tartus"])
    assert first.processed > 0 and first.notes == []
    other = _run(stricter, store_dir, scen, aois=["al_khadim"])
    assert other.processed > 0 and other.notes == []  # al_khadim had no history to be stale
    [note] = _run(stricter, store_dir, scen, aois=["tartus"]).notes
    assert f"since run {first.run_id}" in note and "diff.outbound_min_vehicles" in note and "for tartus" in note
    assert _run(stricter, store_dir, scen, aois=["al_khadim"]).notes == []
    [both] = _run(config, store_dir, scen).notes  # back to the old settings: now al_khadim is the stale one
    assert f"since run {other.run_id}" in both and "for al_khadim" in both and "tartus" not in both


def _content_after(run_fn, config, data_dir: Path, scen: Path) -> dict:
    if not (data_dir / "basewatch.sqlite").exists():
        run_fn(config, data_dir, scen)
    return _content(data_dir)


def _forget_setting(data: Path, section: str, key: str):
    """Make the store's one run look written before ``section.key`` existed (drop it from the stored config);
    returns the value it had."""
    import json

    with sqlite3.connect(data / "basewatch.sqlite") as db:
        [(run_id, raw)] = db.execute("SELECT id, config FROM runs").fetchall()
        stored = json.loads(raw)
        value = stored[section].pop(key)
        db.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(stored), run_id))
    return value


def test_a_setting_added_since_with_its_default_is_not_drift(tmp_path, config):
    """A store written before a setting existed (its run config lacks the key) is current when the setting keeps
    its default, which is the old behaviour; any other value is a change."""
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    _run(config, data, scen)
    _forget_setting(data, "detector", "tta_views")
    assert _run(config, data, scen).notes == []
    views = config.model_copy(update={"detector": config.detector.model_copy(update={"tta_views": 4})})
    [note] = _run(views, data, scen).notes
    assert "detector.tta_views" in note


@pytest.mark.parametrize(("section", "key", "old_value", "fix"), [
    ("diff", "surge_not_falling", False, "basewatch rederive"),  # diff settings re-derive from the store
    ("columns", "candidate_votes", True, "--reprocess"),  # grouping is not re-derivable
])
def test_a_setting_added_with_a_new_behaviour_is_drift_for_older_stores(tmp_path, config, section, key, old_value,
                                                                        fix):
    """diff.surge_not_falling and columns.candidate_votes came with defaults that derive differently from what
    stores written before them did: those stores are told how to catch up, and are current again at the old
    value."""
    scen = tiny_scenario(tmp_path)
    data = tmp_path / "data"
    _run(config, data, scen)
    assert _forget_setting(data, section, key) is (not old_value)
    [note] = _run(config, data, scen).notes
    assert f"{section}.{key}" in note and fix in note
    part = getattr(config, section)
    as_before = config.model_copy(update={section: part.model_copy(update={key: old_value})})
    assert _run(as_before, data, scen).notes == []
