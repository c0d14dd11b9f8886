"""Scheduled runs: cron expressions from the config, one incremental run per due schedule, notifications after.

``basewatch schedule`` loops forever; ``basewatch schedule --once`` runs every schedule (or the named ones) once and
exits, for cron or a systemd timer. One scheduler per data directory: an exclusive ``flock`` on
``<data-dir>/schedule.lock`` (released by the kernel when the process dies, so a crash never leaves a stale lock).
A failing tick is logged and retried with backoff; after the last retry it is given up until the schedule's next
firing, and the other schedules go on. Notifications never stop a run (pipeline.notify records and retries them).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipeline.config import BasewatchConfig, ScheduleEntry
from pipeline.cron import CronSchedule, parse_cron
from pipeline.errors import BasewatchError, ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = "schedule.lock"
LOOKBACK_MARGIN_DAYS = 10  # a real source's window: the diff baseline plus this, ending today


class SchedulerBusyError(BasewatchError):
    """Another scheduler holds this data directory."""


@contextmanager
def scheduler_lock(data_dir: Path) -> Iterator[Path]:
    """Hold ``<data-dir>/schedule.lock`` exclusively, or refuse saying who holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise SchedulerBusyError(
                f"another basewatch scheduler is already running on {data_dir} ({holder}); "
                "stop it first, or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": datetime.now(UTC).isoformat(timespec="seconds")}).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"


@dataclass
class TickResult:
    """What one schedule's tick did."""

    schedule: str
    run_id: str | None = None
    report_dir: Path | None = None
    processed: int = 0
    new_alerts: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)
    attempts: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_entries(config: BasewatchConfig) -> list[ScheduleEntry]:
    """The config's schedules, or one daily schedule over its AOIs when it has none."""
    if config.schedules:
        return list(config.schedules)
    return [ScheduleEntry(name="default", cron="0 12 * * *", aois=list(config.aois))]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Runs schedules: ``once()`` for cron/systemd, ``loop()`` to stay up. Time and sleep are injectable."""

    def __init__(self, config: BasewatchConfig, *, data_dir: Path, config_path: Path | None = None,
                 names: list[str] | None = None, source_kind: str | None = None, detector: str | None = None,
                 start: date | None = None, end: date | None = None, retries: int = 3, retry_backoff_s: float = 60.0,
                 clock: Callable[[], datetime] = _utcnow, sleep: Callable[[float], None] = time.sleep,
                 runner: Callable | None = None, progress: bool = False, env: dict | None = None):
        self.config = config
        self.data_dir = Path(data_dir)
        self.config_path = config_path
        entries = default_entries(config)
        if names:
            unknown = sorted(set(names) - {e.name for e in entries})
            if unknown:
                raise ConfigError(f"no schedule named {', '.join(unknown)} in the config "
                                  f"(known: {', '.join(e.name for e in entries)})")
            entries = [e for e in entries if e.name in names]
        self.entries = entries
        self.crons: dict[str, CronSchedule] = {}
        for e in entries:
            try:
                self.crons[e.name] = parse_cron(e.cron)
            except ConfigError as exc:
                raise ConfigError(f"schedule {e.name!r}: {exc}") from None
        self.source_kind = source_kind
        self.detector = detector
        self.start, self.end = start, end
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.clock, self.sleep = clock, sleep
        self.progress = progress
        self.env = env
        if runner is None:
            from pipeline.run import run as runner
        self.runner = runner
        self._simulated: bool | None = None

    # ------------------------------------------------------------ one tick

    def window(self, today: date) -> tuple[date | None, date | None]:
        """The run's date window: as given; for a simulated source the scenario's (run decides); else a lookback."""
        if self.start or self.end:
            return self.start, self.end or today
        if self._source_is_simulated():
            return None, None
        return today - timedelta(days=self.config.diff.baseline_window_days + LOOKBACK_MARGIN_DAYS), today

    def _source_is_simulated(self) -> bool:
        if self._simulated is None:
            kind = self.source_kind or self.config.source.kind
            if kind == "simulated":
                self._simulated = True
            elif kind in ("sentinelhub", "files"):
                self._simulated = False
            else:  # auto: ask the same selector the run uses
                from pipeline.config import load_scenario
                from pipeline.run import make_source

                source = make_source(self.config, kind=kind, data_dir=self.data_dir,
                                     scenario=load_scenario(self.config.scenario))
                self._simulated = bool(getattr(source, "simulated", False))
        return self._simulated

    def tick(self, entry: ScheduleEntry) -> TickResult:
        """One incremental run of ``entry``'s AOIs with retries, then notifications of its new alerts."""
        result = TickResult(schedule=entry.name)
        for attempt in range(1, self.retries + 2):
            result.attempts = attempt
            try:
                start, end = self.window(self.clock().date())
                outcome = self.runner(self.config, data_dir=self.data_dir, config_path=self.config_path,
                                      source_kind=self.source_kind, aois=list(entry.aois), start=start, end=end,
                                      detector=self.detector, progress=self.progress, report=True)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of a tick is logged and retried, never fatal
                result.error = f"{type(exc).__name__}: {exc}"
                if attempt > self.retries:
                    log.error("schedule %s: tick failed after %d attempts, next try at its next firing: %s",
                              entry.name, attempt, result.error)
                    return result
                delay = self.retry_backoff_s * 2 ** (attempt - 1)
                log.warning("schedule %s: tick failed (%s); retrying in %.0f s", entry.name, result.error, delay)
                self.sleep(delay)
                continue
            result.error = None
            result.run_id = outcome.run_id
            result.report_dir = outcome.report_dir
            result.processed = outcome.processed
            result.new_alerts = [a.id for a in outcome.new_alerts]
            for failure in outcome.failures:
                log.warning("schedule %s: %s", entry.name, failure)
            break
        self._notify(result)
        log.info("schedule %s: run %s processed %d new acquisition(s), %d new alert(s), %d notified%s", entry.name,
                 result.run_id, result.processed, len(result.new_alerts), len(result.delivered),
                 f", {len(result.undelivered)} pending" if result.undelivered else "")
        return result

    def _notify(self, result: TickResult) -> None:
        """Send this run's alerts that no channel has seen, plus anything still pending from earlier ticks."""
        from pipeline.notify import notify_new_alerts
        from pipeline.report import alert_record, run_envelope
        from pipeline.store import open_store

        try:
            with open_store(self.data_dir) as store:
                run = store.run(result.run_id)
                changes = store.run_alert_changes(result.run_id)
                # new in this run, or still open: an alert an earlier (manual) run raised and this one merely
                # closed is history, not news
                alerts = [a for a in store.run_alerts(result.run_id)
                          if changes.get(a.id) == "new" or a.status != "closed"]
                db_path = store.path
            chips = _report_evidence(result.report_dir)
            envelope = {**run_envelope(run),
                        "report": str((result.report_dir / "index.html").resolve()) if result.report_dir else None}
            records = [alert_record(a, [str(result.report_dir / p) for p in chips.get(a.id, [])]) for a in alerts]
            for delivery in notify_new_alerts(db_path, envelope, records, self.config.notify, env=self.env,
                                              sleep=self.sleep):
                result.delivered += delivery.delivered
                result.undelivered += delivery.failed
        except Exception as exc:  # noqa: BLE001 - notification trouble never stops the scheduler
            log.error("schedule %s: notifications failed: %s", result.schedule, exc)

    # ------------------------------------------------------------ drivers

    def once(self) -> list[TickResult]:
        """Every selected schedule once, now (the lock is held for the duration)."""
        with scheduler_lock(self.data_dir):
            return [self.tick(e) for e in self.entries]

    def loop(self, max_ticks: int | None = None) -> list[TickResult]:
        """Sleep until the next firing, run the due schedules, repeat; ``max_ticks`` bounds it (tests)."""
        results: list[TickResult] = []
        with scheduler_lock(self.data_dir):
            now = self.clock()
            due = {e.name: self.crons[e.name].next_after(now) for e in self.entries}
            for e in self.entries:
                log.info("schedule %s (%s, UTC): next run %s for %s", e.name, e.cron, due[e.name].isoformat(),
                         ", ".join(e.aois))
            while max_ticks is None or len(results) < max_ticks:
                now = self.clock()
                ready = [e for e in self.entries if due[e.name] <= now]
                if not ready:
                    wait = (min(due.values()) - now).total_seconds()
                    self.sleep(min(max(wait, 0.0), 60.0))  # wake at least every minute (clock jumps, suspend)
                    continue
                for e in ready:
                    results.append(self.tick(e))
                    due[e.name] = self.crons[e.name].next_after(self.clock())
                    log.info("schedule %s: next run %s", e.name, due[e.name].isoformat())
                    if max_ticks is not None and len(results) >= max_ticks:
                        break
        return results


def _report_evidence(report_dir: Path | None) -> dict[str, list[str]]:
    """alert id -> chip paths from the report's alerts.json (relative to the report folder)."""
    if not report_dir:
        return {}
    try:
        doc = json.loads((report_dir / "alerts.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {a["id"]: list(a.get("evidence", [])) for a in doc.get("alerts", [])}


def upcoming(scheduler: Scheduler, now: datetime | None = None, count: int = 3) -> dict[str, list[datetime]]:
    """The next ``count`` firing times (UTC) of each schedule."""
    now = now or _utcnow()
    out = {}
    for e in scheduler.entries:
        times, t = [], now
        for _ in range(count):
            t = scheduler.crons[e.name].next_after(t)
            times.append(t)
        out[e.name] = times
    return out


def schedule_command(*, config_path: Path | None, data_dir: Path | None, once: bool, names: list[str] | None,
                     source: str | None, detector: str | None, start: date | None,
                     end: date | None, list_only: bool = False) -> list[TickResult]:
    """`basewatch schedule [--once | --list]`: print what each tick did; exit status is the CLI's business."""
    from rich.console import Console
    from rich.table import Table

    from pipeline.config import load_config

    cfg = load_config(config_path)
    scheduler = Scheduler(cfg, data_dir=Path(data_dir or cfg.data_dir), config_path=config_path, names=names,
                          source_kind=source, detector=detector, start=start, end=end, progress=once)
    out = Console()
    if list_only:
        table = Table("schedule", "cron (UTC)", "AOIs", "next runs (UTC)")
        for e in scheduler.entries:
            times = upcoming(scheduler)[e.name]
            table.add_row(e.name, e.cron, ", ".join(e.aois), ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in times))
        out.print(table)
        return []
    if not once:
        out.print(f"scheduler on {scheduler.data_dir}: {len(scheduler.entries)} schedule(s), times in UTC; "
                  "Ctrl-C stops")
    results = scheduler.once() if once else scheduler.loop()
    for r in results:
        if r.ok:
            out.print(f"schedule {r.schedule}: run {r.run_id}, {r.processed} new acquisition(s), "
                      f"{len(r.new_alerts)} new alert(s), {len(r.delivered)} notified"
                      + (f", {len(r.undelivered)} delivery(ies) pending" if r.undelivered else "")
                      + (f"; report {r.report_dir / 'index.html'}" if r.report_dir else ""))
        else:
            out.print(f"[red]schedule {r.schedule}: failed after {r.attempts} attempt(s):[/] {r.error}")
    return results
