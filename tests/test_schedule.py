"""Cron parsing, the one-scheduler-per-data-dir lock, tick retries, the loop's timing, and the acceptance check:
`BASEWATCH_WEBHOOK_URL=... basewatch schedule --once` posts each seed-scenario alert once; a second --once posts
nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.config import BasewatchConfig, ScheduleEntry
from pipeline.cron import parse_cron
from pipeline.errors import ConfigError, SourceError
from pipeline.run import run as real_run
from pipeline.schedule import Scheduler, SchedulerBusyError, scheduler_lock
from pipeline.store import open_store
from tests.test_notify import Hook

ROOT = Path(__file__).resolve().parents[1]
BASEWATCH = [str(Path(sys.executable).parent / "basewatch")]  # the console script of this environment


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- cron


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("30 12 * * *", utc(2024, 12, 13, 12, 30), utc(2024, 12, 14, 12, 30)),
    ("30 12 * * *", utc(2024, 12, 13, 12, 29, 59), utc(2024, 12, 13, 12, 30)),
    ("*/15 9-17 * * mon-fri", utc(2024, 12, 13, 17, 50), utc(2024, 12, 16, 9, 0)),  # Fri evening -> Mon 09:00
    ("0 0 1 * *", utc(2024, 12, 31, 23, 59), utc(2025, 1, 1, 0, 0)),
    ("0 6 13 * 5", utc(2024, 12, 1), utc(2024, 12, 6, 6, 0)),  # day 13 OR Friday (Vixie rule)
    ("0 6 */10 * *", utc(2024, 12, 2), utc(2024, 12, 11, 6, 0)),  # '*/' keeps weekday-AND semantics
    ("0 0 29 2 *", utc(2025, 3, 1), utc(2028, 2, 29, 0, 0)),
    ("5 4 * * 7", utc(2024, 12, 13), utc(2024, 12, 15, 4, 5)),  # 7 = Sunday
    ("@daily", utc(2024, 12, 13, 0, 0), utc(2024, 12, 14, 0, 0)),
    ("0 1-10/3 * * *", utc(2024, 12, 13, 4, 0), utc(2024, 12, 13, 7, 0)),
    ("0 0 * jan,JUL *", utc(2024, 12, 13), utc(2025, 1, 1, 0, 0)),
])
def test_cron_next_firing(expr, after, expected):
    assert parse_cron(expr).next_after(after) == expected


@pytest.mark.parametrize(("expr", "message"), [
    ("30 12 * *", "has 4 fields; expected 5"),
    ("60 * * * *", "minute value 60 is outside 0-59"),
    ("* 24 * * *", "hour value 24 is outside 0-23"),
    ("* * * foo *", "month value 'foo' is not a number or a name"),
    ("*/0 * * * *", "step '0' in the minute field must be >= 1"),
    ("* * 10-2 * *", "range '10-2' in the day of month field runs backwards"),
    ("0 0 30 2 *", "never fires"),
])
def test_cron_errors_say_what_is_wrong(expr, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        parse_cron(expr).next_after(utc(2024, 1, 1))
    assert expr in str(err.value)


def test_the_shipped_config_schedules_parse():
    from pipeline.config import load_config

    for entry in load_config().schedules:
        assert parse_cron(entry.cron).next_after(utc(2024, 12, 13)) > utc(2024, 12, 13)


def test_a_bad_schedule_is_named_in_the_error(tmp_path):
    cfg = BasewatchConfig(schedules=[ScheduleEntry(name="nightly", cron="99 * * * *", aois=["tartus"])])
    with pytest.raises(ConfigError, match="schedule 'nightly': cron expression '99 \\* \\* \\* \\*'"):
        Scheduler(cfg, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="no schedule named weekly"):
        Scheduler(BasewatchConfig(), data_dir=tmp_path, names=["weekly"])


# ---------------------------------------------------------------- lock


def test_second_scheduler_on_the_same_data_dir_is_refused(tmp_path):
    busy = f"another basewatch scheduler is already running on {tmp_path}" + rf" \(pid {os.getpid()} on "
    with scheduler_lock(tmp_path), pytest.raises(SchedulerBusyError, match=busy), scheduler_lock(tmp_path):
        pass
    with scheduler_lock(tmp_path):  # released on exit: the next one gets it
        pass


def test_cli_refuses_while_another_process_holds_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from pipeline.schedule import "
         "scheduler_lock\nwith scheduler_lock(Path(sys.argv[1])):\n print('locked', flush=True); time.sleep(60)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = subprocess.run([*BASEWATCH, "schedule", "--once", "--data-dir", str(tmp_path)], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 2
        assert "another basewatch scheduler is already running" in out.stderr
        assert f"pid {holder.pid}" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- ticks


TINY = {"source_kind": "simulated", "detector": "classical", "start": date(2024, 12, 8), "end": date(2024, 12, 18)}


def test_a_failing_tick_is_retried_with_backoff_then_runs(tmp_path):
    calls, sleeps = [], []

    def flaky(config, **kw):
        calls.append(kw["aois"])
        if len(calls) <= 2:
            raise SourceError("catalog unreachable (test)")
        return real_run(config, **kw)

    cfg = BasewatchConfig(schedules=[ScheduleEntry(name="t", cron="0 * * * *", aois=["tartus"])])
    sched = Scheduler(cfg, data_dir=tmp_path, runner=flaky, retries=3, retry_backoff_s=5, sleep=sleeps.append, **TINY)
    [result] = sched.once()
    assert result.ok and result.attempts == 3 and sleeps == [5, 10]
    assert result.processed > 0 and (result.report_dir / "index.html").is_file()
    with open_store(tmp_path) as store:
        assert store.run(result.run_id).aois == ["tartus"]


def test_a_tick_that_keeps_failing_is_given_up_and_the_next_schedule_still_runs(tmp_path):
    def broken_for_tartus(config, **kw):
        if kw["aois"] == ["tartus"]:
            raise SourceError("tartus source down (test)")
        return real_run(config, **kw)

    cfg = BasewatchConfig(schedules=[ScheduleEntry(name="a", cron="0 * * * *", aois=["tartus"]),
                                     ScheduleEntry(name="b", cron="0 * * * *", aois=["khmeimim"])])
    sleeps: list[float] = []
    sched = Scheduler(cfg, data_dir=tmp_path, runner=broken_for_tartus, retries=1, retry_backoff_s=1,
                      sleep=sleeps.append, **{**TINY, "start": date(2024, 12, 13), "end": date(2024, 12, 13)})
    first, second = sched.once()
    assert not first.ok and "tartus source down" in first.error and first.attempts == 2
    assert second.ok and second.run_id


def test_loop_runs_each_schedule_at_its_cron_times(tmp_path):
    now = [utc(2024, 12, 13, 12, 0)]
    ran: list[tuple[str, datetime]] = []

    def clock():
        return now[0]

    def sleep(seconds):
        now[0] += timedelta(seconds=max(seconds, 1))

    def runner(config, **kw):
        ran.append((kw["aois"][0], now[0]))
        now[0] += timedelta(seconds=20)  # a run takes time
        return real_run(config, **kw)

    cfg = BasewatchConfig(schedules=[ScheduleEntry(name="a", cron="30 12 * * *", aois=["tartus"]),
                                     ScheduleEntry(name="b", cron="0 13 * * *", aois=["khmeimim"])])
    sched = Scheduler(cfg, data_dir=tmp_path, runner=runner, clock=clock, sleep=sleep,
                      **{**TINY, "start": date(2024, 12, 13), "end": date(2024, 12, 13)})
    results = sched.loop(max_ticks=3)
    assert [r.schedule for r in results] == ["a", "b", "a"]
    assert [(aoi, t.strftime("%d %H:%M")) for aoi, t in ran] == [("tartus", "13 12:30"), ("khmeimim", "13 13:00"),
                                                                  ("tartus", "14 12:30")]
    assert results[2].processed == 0  # incremental: the second tartus tick finds everything stored


# ---------------------------------------------------------------- acceptance


def test_schedule_once_posts_each_seed_alert_once_and_a_second_once_posts_nothing(tmp_path):
    """The issue's acceptance check, through the real CLI on a fresh data dir (classical detector and the seed's
    decisive weeks for speed)."""
    hook = Hook()
    try:
        env = {**os.environ, "BASEWATCH_WEBHOOK_URL": hook.url.split("?")[0], "BASEWATCH_LOG": "WARNING"}
        data = tmp_path / "data"
        # the seed's decisive weeks (baseline from 1 Dec, the drawdown of 12-18 Dec) keep the suite fast
        cmd = [*BASEWATCH, "schedule", "--once", "--data-dir", str(data), "--detector", "classical",
               "--start", "2024-12-01", "--end", "2024-12-20"]
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=400)
        assert first.returncode == 0, first.stderr[-3000:]
        assert len(hook.posts) >= 1
        posted = [a["id"] for p in hook.posts for a in p["alerts"]]
        assert len(posted) == len(set(posted)), "an alert was posted twice"
        with open_store(data) as store:
            raised = {a.id for r in store.runs() for a in store.run_alerts(r.id)}
            seed_aois = {a for r in store.runs() for a in r.aois}
        assert set(posted) == raised and raised
        assert seed_aois == {"khmeimim", "tartus", "al_khadim"}
        for body in hook.posts:
            assert body["simulated"] is True and Path(body["report"]).is_file()
            for a in body["alerts"]:
                assert {"id", "aoi", "kind", "severity", "confidence", "first_seen", "last_seen", "acquisitions",
                        "baseline", "current", "evidence"} <= set(a)
                assert all(Path(p).is_file() for p in a["evidence"])
        n_posts = len(hook.posts)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=400)
        assert second.returncode == 0, second.stderr[-3000:]
        assert len(hook.posts) == n_posts, "the second --once posted again"
        assert "0 new acquisition(s)" in second.stdout
        report = json.loads((data / "reports" / "latest" / "alerts.json").read_text())
        assert report["simulated"] is True
    finally:
        hook.close()


def test_schedule_list_shows_next_runs_without_running(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["schedule", "--list", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "syria-daily" in result.output and "30 12 * * *" in result.output and "libya-daily" in result.output
    assert not (tmp_path / "d").exists()  # nothing ran, no lock taken
    sched = Scheduler(BasewatchConfig(schedules=[ScheduleEntry(name="a", cron="0 */6 * * *", aois=["tartus"])]),
                      data_dir=tmp_path)
    from pipeline.schedule import upcoming

    assert upcoming(sched, utc(2024, 12, 13, 5, 0))["a"] == [utc(2024, 12, 13, 6), utc(2024, 12, 13, 12),
                                                             utc(2024, 12, 13, 18)]
