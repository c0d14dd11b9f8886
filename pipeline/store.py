"""The durable store: one SQLite file (WAL) holding runs, acquisitions, observations, detections, columns,
change events and alerts, so that runs are incremental and reports can be regenerated from it alone.

Writes for one acquisition happen in ONE transaction keyed by (aoi, acquisition id, model): re-processing
replaces rows instead of duplicating them, and a run killed at any point leaves either all or nothing of an
acquisition behind. The schema version is recorded; a store written by a newer basewatch is refused.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from shapely import wkt
from shapely.geometry import Polygon

from pipeline.config import BasewatchConfig
from pipeline.errors import StoreError
from pipeline.types import Acquisition, Alert, ChangeEvent, Column, Detection, Observation

SCHEMA_VERSION = 1
STORE_FILENAME = "basewatch.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
    source TEXT NOT NULL, simulated INTEGER NOT NULL, model TEXT NOT NULL,
    config TEXT NOT NULL, config_hash TEXT NOT NULL, aois TEXT NOT NULL,
    start TEXT NOT NULL, "end" TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS acquisitions (
    aoi TEXT NOT NULL, acquisition_id TEXT NOT NULL, source TEXT NOT NULL, sensor TEXT NOT NULL,
    datetime TEXT NOT NULL, cloud_cover REAL, footprint TEXT, simulated INTEGER NOT NULL,
    scene_path TEXT NOT NULL, valid_fraction REAL NOT NULL,
    PRIMARY KEY (aoi, acquisition_id)
);
CREATE TABLE IF NOT EXISTS observations (
    aoi TEXT NOT NULL, acquisition_id TEXT NOT NULL, model TEXT NOT NULL, run_id TEXT NOT NULL,
    datetime TEXT NOT NULL, counts TEXT NOT NULL, zone_counts TEXT NOT NULL, zone_valid TEXT NOT NULL,
    valid_fraction REAL NOT NULL, detection_ids TEXT NOT NULL, column_ids TEXT NOT NULL,
    PRIMARY KEY (aoi, acquisition_id, model)
);
CREATE INDEX IF NOT EXISTS observations_time ON observations (aoi, model, datetime);
CREATE TABLE IF NOT EXISTS detections (
    id TEXT PRIMARY KEY, aoi TEXT NOT NULL, acquisition_id TEXT NOT NULL, model TEXT NOT NULL, n INTEGER NOT NULL,
    cls TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, lon REAL NOT NULL, lat REAL NOT NULL,
    type TEXT, length_m REAL, width_m REAL, heading_deg REAL, moving INTEGER, speed_mps REAL, score REAL,
    zone TEXT
);
CREATE INDEX IF NOT EXISTS detections_acq ON detections (aoi, acquisition_id, model);
CREATE TABLE IF NOT EXISTS columns (
    id TEXT PRIMARY KEY, aoi TEXT NOT NULL, acquisition_id TEXT NOT NULL, model TEXT NOT NULL, n INTEGER NOT NULL,
    members TEXT NOT NULL, line TEXT NOT NULL, length_m REAL NOT NULL, heading_deg REAL NOT NULL,
    direction TEXT NOT NULL, vehicles INTEGER NOT NULL, road TEXT
);
CREATE INDEX IF NOT EXISTS columns_acq ON columns (aoi, acquisition_id, model);
CREATE TABLE IF NOT EXISTS events (
    aoi TEXT NOT NULL, acquisition_id TEXT NOT NULL, model TEXT NOT NULL, n INTEGER NOT NULL,
    kind TEXT NOT NULL, zone TEXT, "when" TEXT NOT NULL, score REAL NOT NULL, confidence REAL NOT NULL,
    baseline TEXT NOT NULL, current TEXT NOT NULL, evidence TEXT NOT NULL,
    PRIMARY KEY (aoi, acquisition_id, model, n)
);
CREATE INDEX IF NOT EXISTS events_time ON events (aoi, "when");
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, aoi TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, confidence REAL NOT NULL,
    status TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, acquisitions TEXT NOT NULL,
    baseline TEXT NOT NULL, current TEXT NOT NULL, evidence TEXT NOT NULL, model TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_aoi ON alerts (aoi, kind, status);
CREATE TABLE IF NOT EXISTS run_alerts (
    run_id TEXT NOT NULL, alert_id TEXT NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (run_id, alert_id)
);
"""


@dataclass(frozen=True)
class RunRecord:
    """One `basewatch run` as the store remembers it (with the resolved config it ran with)."""

    id: str
    started: datetime
    finished: datetime | None
    status: str
    source: str
    simulated: bool
    model: str
    config: dict
    config_hash: str
    aois: list[str]
    start: date
    end: date
    summary: dict


@dataclass(frozen=True)
class AcquisitionRecord:
    """An acquisition the store holds, with the scene GeoTIFF it was processed from."""

    aoi: str
    acquisition: Acquisition
    scene_path: str
    valid_fraction: float


def new_run_id(now: datetime | None = None) -> str:
    """`20261126T010203Z-ab12cd`: sortable by time, unique across processes."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat()


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Store:
    """SQLite state of basewatch under ``<data-dir>/basewatch.sqlite``.

    One connection per Store (usable from one thread at a time; a lock serialises writers in-process);
    other processes wait up to ``timeout`` seconds for the write lock.
    """

    def __init__(self, path: str | Path, timeout: float = 30.0):
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / STORE_FILENAME
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._wal(timeout)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(f"{path}: locked by another basewatch process for over {timeout:.0f} s; "
                                 "wait for it to finish or use another --data-dir") from None
            raise StoreError(f"{path}: not a usable basewatch store ({exc}); move it aside and re-run") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable basewatch store ({exc}); move it aside and re-run") from None
        self._lock = threading.RLock()
        self._migrate()

    def _wal(self, timeout: float) -> None:
        """Switch to WAL once. Switching needs a moment alone with the file and SQLite does not wait for it
        (no busy handler), so two processes creating the store at once retry here instead of failing."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                if self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The raw sqlite3 connection, for a module keeping its own table in the same file.

        Autocommit mode: wrap several writes in ``with store.transaction():`` to make them atomic.
        """
        with self._lock:
            yield self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception); re-entrant within one Store."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        try:
            with self.transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
                version = row[0]
                if version is None:
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                elif version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: store schema version {version} is newer than this basewatch understands "
                        f"({SCHEMA_VERSION}); upgrade basewatch (pip install -U basewatch) or use another --data-dir"
                    )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable basewatch store ({exc}); move it aside and re-run") from None

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------ runs

    def begin_run(self, config: BasewatchConfig, *, source: str, simulated: bool, model: str, aois: list[str],
                  start: date, end: date) -> str:
        """Record a run as 'running' with its resolved config; returns the new run id."""
        run_id = new_run_id()
        with self.transaction() as db:
            db.execute(
                'INSERT INTO runs (id, started, status, source, simulated, model, config, config_hash, aois, start, '
                '"end", summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (run_id, _now(), "running", source, int(simulated), model, _json(config.model_dump(mode="json")),
                 config.hash(), _json(list(aois)), start.isoformat(), end.isoformat(), "{}"),
            )
        return run_id

    def finish_run(self, run_id: str, status: str, summary: dict) -> None:
        with self.transaction() as db:
            cur = db.execute("UPDATE runs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                             (_now(), status, _json(summary), run_id))
            if cur.rowcount == 0:
                raise StoreError(f"no run {run_id!r} in {self.path}")

    def latest_run_id(self) -> str | None:
        row = self._conn.execute("SELECT id FROM runs ORDER BY started DESC, id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def run(self, run_id: str) -> RunRecord:
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            known = self.latest_run_id()
            hint = f"; the latest is {known}" if known else "; no run has been recorded yet (basewatch run)"
            raise StoreError(f"no run {run_id!r} in {self.path}{hint}")
        return _run_record(row)

    def runs(self) -> list[RunRecord]:
        return [_run_record(r) for r in self._conn.execute("SELECT * FROM runs ORDER BY started, id")]

    # ------------------------------------------------------------ acquisitions

    def has_acquisition(self, aoi: str, acquisition_id: str, model: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM observations WHERE aoi = ? AND acquisition_id = ? AND model = ?",
            (aoi, acquisition_id, model),
        ).fetchone()
        return row is not None

    def save_acquisition(self, run_id: str, aoi: str, scene_path: str | Path, observation: Observation,
                         detections: list[Detection], columns: list[Column], events: list[ChangeEvent],
                         alerts: list[Alert] | None = None) -> None:
        """Everything one acquisition produced, in one transaction; replaces an earlier processing.

        Detections without an id get ``f"{acquisition_id}:{model}:{n}"``. ``alerts`` (optional) are the
        alert states this acquisition opened, updated or closed, written in the same transaction so the
        alert table never disagrees with the events behind it.
        """
        acq = observation.acquisition
        model = observation.model
        key = (aoi, acq.id, model)
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO acquisitions (aoi, acquisition_id, source, sensor, datetime, cloud_cover, "
                "footprint, simulated, scene_path, valid_fraction) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (aoi, acq.id, acq.source, acq.sensor, _iso(acq.datetime), acq.cloud_cover,
                 acq.footprint.wkt if acq.footprint is not None else None, int(acq.simulated), str(scene_path),
                 observation.valid_fraction),
            )
            for table in ("detections", "columns", "events"):
                db.execute(f"DELETE FROM {table} WHERE aoi = ? AND acquisition_id = ? AND model = ?", key)
            db.executemany(
                "INSERT INTO detections (id, aoi, acquisition_id, model, n, cls, x, y, lon, lat, type, length_m, "
                "width_m, heading_deg, moving, speed_mps, score, zone) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.id or detection_id(acq.id, model, n), aoi, acq.id, model, n, d.cls, d.x, d.y, d.lon, d.lat,
                  d.type, d.length_m, d.width_m, d.heading_deg, None if d.moving is None else int(d.moving),
                  d.speed_mps, d.score, d.zone) for n, d in enumerate(detections)],
            )
            for n, c in enumerate(columns):
                db.execute(
                    "INSERT INTO columns (id, aoi, acquisition_id, model, n, members, line, length_m, heading_deg, "
                    "direction, vehicles, road) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (c.id, aoi, acq.id, model, n, _json(list(c.members)), c.line.wkt, c.length_m, c.heading_deg,
                     c.direction, c.vehicles, c.road),
                )
            self._insert_events(db, aoi, acq.id, model, events)
            db.execute(
                "INSERT OR REPLACE INTO observations (aoi, acquisition_id, model, run_id, datetime, counts, "
                "zone_counts, zone_valid, valid_fraction, detection_ids, column_ids) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (aoi, acq.id, model, run_id, _iso(acq.datetime), _json(observation.counts),
                 _json(observation.zone_counts), _json(observation.zone_valid), observation.valid_fraction,
                 _json(list(observation.detection_ids)), _json([c.id for c in observation.columns])),
            )
            for alert in alerts or ():
                self.upsert_alert(run_id, alert, model=model)

    def replace_counts(self, observation: Observation) -> None:
        """Store an observation's counts again (re-derived from its stored detections; inside the caller's
        transaction, or its own). Its cloud cover, detections and columns stay as they were."""
        with self.transaction() as db:
            db.execute(
                "UPDATE observations SET counts = ?, zone_counts = ? "
                "WHERE aoi = ? AND acquisition_id = ? AND model = ?",
                (_json(observation.counts), _json(observation.zone_counts), observation.aoi,
                 observation.acquisition.id, observation.model),
            )

    @staticmethod
    def _insert_events(db: sqlite3.Connection, aoi: str, acquisition_id: str, model: str,
                       events: list[ChangeEvent]) -> None:
        for n, e in enumerate(events):
            db.execute(
                'INSERT INTO events (aoi, acquisition_id, model, n, kind, zone, "when", score, confidence, '
                "baseline, current, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (aoi, acquisition_id, model, n, e.kind, e.zone, _iso(e.when), e.score, e.confidence,
                 _json(e.baseline), _json(e.current), _json(list(e.evidence))),
            )

    def acquisitions(self, aoi: str) -> list[AcquisitionRecord]:
        rows = self._conn.execute(
            "SELECT * FROM acquisitions WHERE aoi = ? ORDER BY datetime, acquisition_id", (aoi,)
        ).fetchall()
        return [AcquisitionRecord(aoi=r["aoi"], acquisition=_acquisition(r), scene_path=r["scene_path"],
                                  valid_fraction=r["valid_fraction"]) for r in rows]

    def acquisition(self, aoi: str, acquisition_id: str) -> AcquisitionRecord | None:
        r = self._conn.execute("SELECT * FROM acquisitions WHERE aoi = ? AND acquisition_id = ?",
                               (aoi, acquisition_id)).fetchone()
        if r is None:
            return None
        return AcquisitionRecord(aoi=r["aoi"], acquisition=_acquisition(r), scene_path=r["scene_path"],
                                 valid_fraction=r["valid_fraction"])

    def aois(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT aoi FROM acquisitions ORDER BY aoi")]

    def models(self, aoi: str | None = None) -> list[str]:
        sql, args = "SELECT DISTINCT model FROM observations", ()
        if aoi is not None:
            sql, args = sql + " WHERE aoi = ?", (aoi,)
        return [r[0] for r in self._conn.execute(sql + " ORDER BY model", args)]

    def observations(self, aoi: str, model: str | None = None, since: datetime | None = None) -> list[Observation]:
        """Time-ordered observations of one AOI (all models, or one; all dates or from ``since``), with columns."""
        sql = ("SELECT o.*, a.source, a.sensor, a.cloud_cover, a.footprint, a.simulated FROM observations o "
               "JOIN acquisitions a ON a.aoi = o.aoi AND a.acquisition_id = o.acquisition_id WHERE o.aoi = ?")
        args: tuple = (aoi,)
        if model is not None:
            sql += " AND o.model = ?"
            args += (model,)
        if since is not None:
            sql += " AND o.datetime >= ?"
            args += (_iso(since),)
        rows = self._conn.execute(sql + " ORDER BY o.datetime, o.acquisition_id, o.model", args).fetchall()
        out = []
        for r in rows:
            cols = self.columns(aoi, r["acquisition_id"], r["model"])
            out.append(Observation(
                aoi=aoi, acquisition=_acquisition(r), counts=json.loads(r["counts"]),
                zone_counts=json.loads(r["zone_counts"]), zone_valid=json.loads(r["zone_valid"]),
                columns=tuple(cols), valid_fraction=r["valid_fraction"], model=r["model"],
                detection_ids=tuple(json.loads(r["detection_ids"])),
            ))
        return out

    def observation_times(self, aoi: str, model: str) -> list[tuple[datetime, float]]:
        """(time, valid fraction) of every observation of an AOI by a model, time-ordered (cheap)."""
        rows = self._conn.execute("SELECT datetime, valid_fraction FROM observations WHERE aoi = ? AND model = ? "
                                  "ORDER BY datetime", (aoi, model))
        return [(_dt(r[0]), r[1]) for r in rows]

    def detections(self, aoi: str, acquisition_id: str, model: str | None = None) -> list[Detection]:
        sql = "SELECT * FROM detections WHERE aoi = ? AND acquisition_id = ?"
        args: tuple = (aoi, acquisition_id)
        if model is not None:
            sql += " AND model = ?"
            args += (model,)
        return [_detection(r) for r in self._conn.execute(sql + " ORDER BY model, n", args)]

    def detections_by_id(self, ids: list[str]) -> list[Detection]:
        """Detections behind an event or alert (evidence ids), in the order given; unknown ids are skipped."""
        found = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._conn.execute(f"SELECT * FROM detections WHERE id IN ({marks})", chunk):
                found[r["id"]] = _detection(r)
        return [found[i] for i in ids if i in found]

    def columns(self, aoi: str, acquisition_id: str, model: str | None = None) -> list[Column]:
        sql = "SELECT * FROM columns WHERE aoi = ? AND acquisition_id = ?"
        args: tuple = (aoi, acquisition_id)
        if model is not None:
            sql += " AND model = ?"
            args += (model,)
        return [_column(r) for r in self._conn.execute(sql + " ORDER BY model, n", args)]

    def events(self, aoi: str | None = None, model: str | None = None) -> list[ChangeEvent]:
        """Time-ordered change events (all AOIs or one; all models or one)."""
        sql, args = "SELECT * FROM events WHERE 1=1", ()
        if aoi is not None:
            sql, args = sql + " AND aoi = ?", args + (aoi,)
        if model is not None:
            sql, args = sql + " AND model = ?", args + (model,)
        rows = self._conn.execute(sql + ' ORDER BY "when", aoi, acquisition_id, n', args).fetchall()
        return [ChangeEvent(aoi=r["aoi"], kind=r["kind"], acquisition_id=r["acquisition_id"], when=_dt(r["when"]),
                            score=r["score"], confidence=r["confidence"], baseline=json.loads(r["baseline"]),
                            current=json.loads(r["current"]), evidence=tuple(json.loads(r["evidence"])),
                            zone=r["zone"]) for r in rows]

    # ------------------------------------------------------------ alerts

    def upsert_alert(self, run_id: str, alert: Alert, model: str = "") -> None:
        """Write an alert's current state and note that ``run_id`` opened/updated/closed it."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO alerts (id, aoi, kind, severity, confidence, status, first_seen, last_seen, "
                "acquisitions, baseline, current, evidence, model, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (alert.id, alert.aoi, alert.kind, alert.severity, alert.confidence, alert.status,
                 _iso(alert.first_seen), _iso(alert.last_seen), _json(alert.acquisitions), _json(alert.baseline),
                 _json(alert.current), _json(alert.evidence), model, run_id),
            )
            db.execute("INSERT OR REPLACE INTO run_alerts (run_id, alert_id, status) VALUES (?, ?, ?)",
                       (run_id, alert.id, alert.status))

    def replace_events(self, aoi: str, acquisition_id: str, model: str, events: list[ChangeEvent]) -> None:
        """Re-diffed events of one stored acquisition (after its history changed)."""
        with self.transaction() as db:
            db.execute("DELETE FROM events WHERE aoi = ? AND acquisition_id = ? AND model = ?",
                       (aoi, acquisition_id, model))
            self._insert_events(db, aoi, acquisition_id, model, events)

    def replace_alerts(self, run_id: str, aoi: str, model: str, alerts: list[Alert]) -> dict[str, str]:
        """Set the alert state of (aoi, model) to ``alerts``; returns and records what changed for ``run_id``.

        An alert first recorded as 'new' by this run stays 'new' for it however often the run updates it.
        """
        from pipeline.alerts import changes

        with self.transaction() as db:
            before = self.alerts(aoi, model=model)
            changed = changes(before, alerts)
            keep = {a.id for a in alerts}
            for a in before:
                if a.id not in keep:
                    db.execute("DELETE FROM alerts WHERE id = ?", (a.id,))
                    db.execute("DELETE FROM run_alerts WHERE alert_id = ?", (a.id,))
            earlier = self.run_alert_changes(run_id)
            for a in alerts:
                if a.id in changed:
                    self.upsert_alert(run_id, a, model=model)
                    if earlier.get(a.id) == "new":
                        db.execute("UPDATE run_alerts SET status = 'new' WHERE run_id = ? AND alert_id = ?",
                                   (run_id, a.id))
                        changed[a.id] = "new"
        return changed

    def alerts(self, aoi: str | None = None, status: str | None = None, model: str | None = None) -> list[Alert]:
        """Current alert states, ordered by first sighting."""
        sql, args = "SELECT * FROM alerts WHERE 1=1", ()
        if aoi is not None:
            sql, args = sql + " AND aoi = ?", args + (aoi,)
        if status is not None:
            sql, args = sql + " AND status = ?", args + (status,)
        if model is not None:
            sql, args = sql + " AND model = ?", args + (model,)
        return [_alert(r) for r in self._conn.execute(sql + " ORDER BY first_seen, aoi, kind, id", args)]

    def alert(self, alert_id: str) -> Alert | None:
        r = self._conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return _alert(r) if r else None

    def run_alerts(self, run_id: str) -> list[Alert]:
        """Alerts that run ``run_id`` opened or updated (or closed), in their current state."""
        rows = self._conn.execute(
            "SELECT a.* FROM alerts a JOIN run_alerts r ON r.alert_id = a.id WHERE r.run_id = ? "
            "ORDER BY a.first_seen, a.aoi, a.kind, a.id", (run_id,)
        ).fetchall()
        return [_alert(r) for r in rows]

    def run_alert_changes(self, run_id: str) -> dict[str, str]:
        """alert id -> what ``run_id`` last did to it ('new', 'updated', 'closed')."""
        rows = self._conn.execute("SELECT alert_id, status FROM run_alerts WHERE run_id = ?", (run_id,))
        return {r[0]: r[1] for r in rows}

    # ------------------------------------------------------------ comparison (tests, kill-and-resume)

    def content(self) -> dict[str, list[tuple]]:
        """Everything the store holds except run ids, wall-clock times and the data directory's location:
        equal for equal processing."""
        out: dict[str, list[tuple]] = {}
        skip = {"run_id", "started", "finished"}
        for table in ("acquisitions", "observations", "detections", "columns", "events", "alerts"):
            cur = self._conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            keep = [i for i, n in enumerate(names) if n not in skip]
            rows = [tuple(row[i] for i in keep) for row in cur.fetchall()]
            if "scene_path" in names:  # the data directory may differ: compare <aoi>/<file> only
                at = [names[i] for i in keep].index("scene_path")
                rows = [r[:at] + ("/".join(Path(r[at]).parts[-2:]),) + r[at + 1:] for r in rows]
            out[table] = sorted(rows)
        return out


def detection_id(acquisition_id: str, model: str, n: int) -> str:
    """Stable id of the n-th detection of an acquisition by a model."""
    return f"{acquisition_id}:{model}:{n}"


def open_store(data_dir: str | Path) -> Store:
    """The store of a data directory (created on first use)."""
    return Store(Path(data_dir) / STORE_FILENAME)


# ---------------------------------------------------------------- row -> value


def _run_record(r: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=r["id"], started=_dt(r["started"]), finished=_dt(r["finished"]), status=r["status"], source=r["source"],
        simulated=bool(r["simulated"]), model=r["model"], config=json.loads(r["config"]),
        config_hash=r["config_hash"], aois=json.loads(r["aois"]), start=date.fromisoformat(r["start"]),
        end=date.fromisoformat(r["end"]), summary=json.loads(r["summary"]),
    )


def _acquisition(r: sqlite3.Row) -> Acquisition:
    footprint = r["footprint"]
    geom = wkt.loads(footprint) if footprint else None
    return Acquisition(
        source=r["source"], id=r["acquisition_id"], sensor=r["sensor"], datetime=_dt(r["datetime"]),
        cloud_cover=r["cloud_cover"], footprint=geom if isinstance(geom, Polygon) else None,
        simulated=bool(r["simulated"]),
    )


def _detection(r: sqlite3.Row) -> Detection:
    return Detection(
        cls=r["cls"], x=r["x"], y=r["y"], lon=r["lon"], lat=r["lat"], type=r["type"], length_m=r["length_m"],
        width_m=r["width_m"], heading_deg=r["heading_deg"], moving=None if r["moving"] is None else bool(r["moving"]),
        speed_mps=r["speed_mps"], score=r["score"], zone=r["zone"], id=r["id"],
    )


def _column(r: sqlite3.Row) -> Column:
    return Column(
        id=r["id"], members=tuple(json.loads(r["members"])), line=wkt.loads(r["line"]), length_m=r["length_m"],
        heading_deg=r["heading_deg"], direction=r["direction"], vehicles=r["vehicles"], road=r["road"],
    )


def _alert(r: sqlite3.Row) -> Alert:
    return Alert(
        id=r["id"], aoi=r["aoi"], kind=r["kind"], severity=r["severity"], confidence=r["confidence"],
        status=r["status"], first_seen=_dt(r["first_seen"]), last_seen=_dt(r["last_seen"]),
        acquisitions=json.loads(r["acquisitions"]), baseline=json.loads(r["baseline"]),
        current=json.loads(r["current"]), evidence=json.loads(r["evidence"]),
    )


__all__ = ["AcquisitionRecord", "RunRecord", "Store", "StoreError", "detection_id", "new_run_id", "open_store"]
