"""Store: round trips, idempotent re-processing, atomic acquisitions, schema version, alerts per run."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest
from shapely.geometry import LineString, box

from pipeline.config import BasewatchConfig
from pipeline.errors import StoreError
from pipeline.store import SCHEMA_VERSION, Store, detection_id
from pipeline.types import Acquisition, Alert, ChangeEvent, Column, MapObject, Observation

MODEL = "classical-1"


def _acq(day: int, cloud: float = 5.0) -> Acquisition:
    return Acquisition(source="simulated", id=f"S2A_2024120{day}_tartus", sensor="Sentinel-2A",
                       datetime=datetime(2024, 12, day, 8, 25, tzinfo=UTC), cloud_cover=cloud,
                       footprint=box(35.8, 34.8, 35.9, 34.9), simulated=True)


def _bundle(acq: Acquisition, n_vehicles: int = 3):
    dets = [MapObject(cls="vehicle", x=100.0 + 20 * i, y=200.0, lon=35.88, lat=34.91, heading_deg=90.0, moving=True,
                      score=0.9, zone=None, id=detection_id(acq.id, MODEL, i)) for i in range(n_vehicles)]
    dets.append(MapObject(cls="large_aircraft", x=5.0, y=6.0, lon=35.87, lat=34.92, type="An-124", score=0.8,
                          zone="north_pier"))
    col = Column(id=f"{acq.id}:{MODEL}:c0", members=tuple(d.id for d in dets[:n_vehicles]),
                 line=LineString([(100, 200), (140, 200)]), length_m=40.0, heading_deg=90.0, direction="outbound",
                 vehicles=n_vehicles, road="east_to_m1_highway")
    obs = Observation(aoi="tartus", acquisition=acq, counts={"vehicle": n_vehicles, "large_aircraft": 1},
                      zone_counts={"north_pier": {"large_aircraft": 1}}, zone_valid={"north_pier": 0.95},
                      columns=(col,), valid_fraction=0.9, model=MODEL,
                      detection_ids=tuple(d.id for d in dets[:n_vehicles]))
    ev = ChangeEvent(aoi="tartus", kind="outbound_columns", acquisition_id=acq.id, when=acq.datetime, score=2.0,
                     confidence=0.8, baseline={"outbound_vehicles": 0}, current={"outbound_vehicles": n_vehicles},
                     evidence=tuple(d.id for d in dets[:n_vehicles]))
    return obs, dets, [col], [ev]


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "basewatch.sqlite") as s:
        yield s


def _begin(store: Store) -> str:
    return store.begin_run(BasewatchConfig(), source="simulated", simulated=True, model=MODEL, aois=["tartus"],
                           start=date(2024, 12, 1), end=date(2024, 12, 20))


def test_run_record_round_trip(store):
    run_id = _begin(store)
    assert store.latest_run_id() == run_id
    rec = store.run(run_id)
    assert rec.status == "running" and rec.simulated and rec.finished is None
    assert rec.config["diff"]["surge_factor"] == 2.0 and rec.config_hash == BasewatchConfig().hash()
    store.finish_run(run_id, "ok", {"processed": 3})
    rec = store.run(run_id)
    assert rec.status == "ok" and rec.summary == {"processed": 3} and rec.finished >= rec.started
    assert [r.id for r in store.runs()] == [run_id]
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.run("nope")


def test_save_and_read_back(store):
    run_id = _begin(store)
    acq = _acq(3)
    obs, dets, cols, evs = _bundle(acq)
    store.save_acquisition(run_id, "tartus", "/data/scenes/tartus/x.tif", obs, dets, cols, evs)
    assert store.has_acquisition("tartus", acq.id, MODEL)
    assert not store.has_acquisition("tartus", acq.id, "learned-2")
    [rec] = store.acquisitions("tartus")
    assert rec.acquisition == acq and rec.scene_path == "/data/scenes/tartus/x.tif" and rec.valid_fraction == 0.9
    [back] = store.observations("tartus", MODEL)
    assert back == obs
    got = store.detections("tartus", acq.id)
    assert [d.id for d in got] == [d.id or detection_id(acq.id, MODEL, n) for n, d in enumerate(dets)]
    assert got[-1].id == f"{acq.id}:{MODEL}:3" and got[-1].type == "An-124" and got[0].moving is True
    assert store.columns("tartus", acq.id) == cols
    [ev] = store.events("tartus")
    assert ev == evs[0]
    assert store.detections_by_id(list(ev.evidence)) == got[:3]


def test_reprocessing_replaces_never_duplicates(store):
    run_id = _begin(store)
    acq = _acq(3)
    store.save_acquisition(run_id, "tartus", "a.tif", *_bundle(acq, n_vehicles=5))
    first = store.content()
    store.save_acquisition(run_id, "tartus", "a.tif", *_bundle(acq, n_vehicles=5))
    assert store.content() == first
    store.save_acquisition(run_id, "tartus", "a.tif", *_bundle(acq, n_vehicles=3))
    assert len(store.detections("tartus", acq.id)) == 4
    assert len(store.observations("tartus")) == 1 and len(store.events()) == 1


def test_observations_time_ordered_and_per_model(store):
    run_id = _begin(store)
    for day in (7, 3, 5):
        store.save_acquisition(run_id, "tartus", f"{day}.tif", *_bundle(_acq(day)))
    assert [o.acquisition.datetime.day for o in store.observations("tartus")] == [3, 5, 7]
    assert [r.acquisition.datetime.day for r in store.acquisitions("tartus")] == [3, 5, 7]
    assert store.observations("tartus", "other-model") == []
    assert store.observations("khmeimim") == []


def test_failed_save_leaves_nothing_behind(store):
    run_id = _begin(store)
    acq = _acq(3)
    obs, dets, cols, evs = _bundle(acq)
    bad = [*dets, dets[0]]  # duplicate detection id -> IntegrityError half way through the transaction
    with pytest.raises(sqlite3.IntegrityError):
        store.save_acquisition(run_id, "tartus", "a.tif", obs, bad, cols, evs)
    assert not store.has_acquisition("tartus", acq.id, MODEL)
    assert store.acquisitions("tartus") == [] and store.detections("tartus", acq.id) == []


def test_alerts_upsert_and_run_alerts(store):
    run1 = _begin(store)
    t0 = datetime(2024, 12, 13, 8, 25, tzinfo=UTC)
    alert = Alert(id="tartus:withdrawal_activity:1", aoi="tartus", kind="withdrawal_activity", severity="high",
                  confidence=0.7, status="new", first_seen=t0, last_seen=t0, acquisitions=["a"],
                  baseline={"parked_vehicles": 50}, current={"parked_vehicles": 25}, evidence=["a:m:0"])
    store.upsert_alert(run1, alert)
    run2 = _begin(store)
    alert.status, alert.last_seen, alert.acquisitions = "updated", t0 + timedelta(days=5), ["a", "b"]
    store.upsert_alert(run2, alert)
    [cur] = store.alerts("tartus")
    assert cur.status == "updated" and cur.acquisitions == ["a", "b"] and cur.last_seen == t0 + timedelta(days=5)
    assert [a.id for a in store.run_alerts(run1)] == [alert.id]
    assert store.run_alert_changes(run1) == {alert.id: "new"}
    assert store.run_alert_changes(run2) == {alert.id: "updated"}
    assert store.alerts(status="new") == [] and store.alerts("khmeimim") == []


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "basewatch.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this basewatch understands.*upgrade basewatch"):
        Store(path)


def test_corrupt_file_is_a_store_error(tmp_path):
    path = tmp_path / "basewatch.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable basewatch store"):
        Store(path)


def test_wal_and_own_tables(tmp_path):
    with Store(tmp_path) as store:  # a directory means <dir>/basewatch.sqlite
        assert store.path.name == "basewatch.sqlite"
        with store.connection() as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            db.execute("CREATE TABLE IF NOT EXISTS notifications (id TEXT PRIMARY KEY)")
            db.execute("INSERT INTO notifications VALUES ('x')")
    with Store(tmp_path) as store, store.connection() as db:
        assert db.execute("SELECT id FROM notifications").fetchall()[0][0] == "x"


def test_processes_creating_the_store_at_once_all_get_it(tmp_path):
    import threading

    errors: list[Exception] = []

    def open_close(path):
        try:
            Store(path).close()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    for i in range(100):  # before the fix, about 1 in 13 of these races failed with "database is locked"
        threads = [threading.Thread(target=open_close, args=(tmp_path / str(i) / "basewatch.sqlite",))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
