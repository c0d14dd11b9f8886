"""A small, fully known world for report/review/notify tests: real scene GeoTIFFs with planted aircraft and a
truck column, written to a real Store with observations, detections, columns and alerts, as a run would.

Independent of the simulator and detectors so these tests pin the report's own behaviour (the end-to-end tests
use the real `run`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from shapely.geometry import LineString

from pipeline.config import BasewatchConfig, DiffConfig, load_aoi
from pipeline.georef import map_to_lonlat, object_at_pixel, pixel_to_map
from pipeline.geotiff import write_scene
from pipeline.store import open_store
from pipeline.types import BAND_NAMES, Acquisition, Alert, ChangeEvent, Column, Detection, Observation, Scene

AIRCRAFT_REFLECTANCE = 0.6


@dataclass
class World:
    data_dir: Path
    run_id: str
    aoi: str
    acquisitions: list[str]
    # acquisition id -> planted aircraft (row, col) pixel centres
    planted: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    alert_ids: list[str] = field(default_factory=list)


def _scene(aoi_name: str, when: datetime, seed: int, aircraft: list[tuple[int, int]], cloudy: bool,
           acq_id: str, size: tuple[int, int] | None) -> Scene:
    grid = load_aoi("khmeimim").grid()
    height, width = size or (grid.height, grid.width)
    rng = np.random.default_rng(seed)
    base = np.array([0.09, 0.12, 0.15, 0.25], np.float32)[:, None, None]
    bands = (base + 0.01 * rng.standard_normal((4, height, width))).astype(np.float32)
    for row, col in aircraft:  # a 5 x 5 px bright plan form (~50 m: a large transport)
        bands[:, row - 2:row + 3, col - 2:col + 3] = AIRCRAFT_REFLECTANCE
    valid = np.ones((height, width), bool)
    if cloudy:
        valid[:, : int(width * 0.8)] = False
        bands[:, ~valid] = 0.5
    acq = Acquisition(source="simulated", id=acq_id, sensor="Sentinel-2A", datetime=when, cloud_cover=80.0 if cloudy
                      else 0.0, simulated=True)
    return Scene(bands=bands, band_names=BAND_NAMES, transform=grid.transform, crs=grid.crs, valid=valid,
                 acquisition=acq, simulated=True)


def build_world(tmp_path: Path, *, aoi_name: str = "khmeimim", model: str = "classical-1.0", n_dates: int = 5,
                size: tuple[int, int] | None = (240, 240), simulated: bool = True) -> World:
    """Dates every 5 days from 2024-12-01; date 3 is cloudy; date 4 shows two extra aircraft (an airlift surge
    alert with them as evidence) and date 5 an outbound truck column (an outbound_columns alert)."""
    data_dir = tmp_path / "data"
    scenes_dir = data_dir / "scenes"
    store = open_store(data_dir)
    cfg = BasewatchConfig(aois=[aoi_name])
    start = datetime(2024, 12, 1, 8, 25, tzinfo=UTC)
    run_id = store.begin_run(cfg, source="simulated", simulated=simulated, model=model, aois=[aoi_name],
                             start=date(2024, 12, 1), end=date(2024, 12, 31))
    world = World(data_dir=data_dir, run_id=run_id, aoi=aoi_name, acquisitions=[])
    base_aircraft = [(60, 60), (60, 90)]
    surge_aircraft = [(150, 170), (165, 185)]
    for i in range(n_dates):
        when = start + timedelta(days=5 * i)
        acq_id = f"S2A_{when:%Y%m%d}_{aoi_name[:8]}"
        cloudy = i == 2
        aircraft = list(base_aircraft) + (surge_aircraft if i >= 3 else [])
        scene = _scene(aoi_name, when, seed=i, aircraft=aircraft, cloudy=cloudy, acq_id=acq_id, size=size)
        path = write_scene(scene, scenes_dir / f"{acq_id}.tif")
        dets: list[Detection] = []
        for n, (row, col) in enumerate(aircraft):
            if cloudy and not scene.valid[row, col]:
                continue
            marginal = i == 4 and n == 0  # below diff.surge_min_score: counted, but not in the surge count
            d = object_at_pixel(scene.transform, scene.crs, row + 0.5, col + 0.5, "large_aircraft",
                                score=0.5 if marginal else 0.9,
                                length_m=50.0, width_m=50.0, heading_deg=0.0, id=f"{acq_id}:{model}:{n}",
                                zone="west_apron")
            dets.append(d)
        columns: list[Column] = []
        if i == 4:
            pts = []
            for k in range(6):
                row, col = 200 - 3 * k, 40 + 4 * k
                n = len(dets)
                d = object_at_pixel(scene.transform, scene.crs, row + 0.5, col + 0.5, "vehicle", score=0.7,
                                    length_m=10.0, width_m=2.5, heading_deg=53.0, moving=True, speed_mps=15.0,
                                    id=f"{acq_id}:{model}:{n}")
                dets.append(d)
                pts.append(d)
            line = LineString([(d.lon, d.lat) for d in pts])
            columns.append(Column(id=f"{acq_id}:{model}:c0", members=tuple(d.id for d in pts), line=line,
                                  length_m=150.0, heading_deg=53.0, direction="outbound", vehicles=len(pts),
                                  road="north_gate_to_latakia"))
        counts = {"large_aircraft": sum(d.cls == "large_aircraft" for d in dets),
                  "large_aircraft_confident": sum(d.cls == "large_aircraft" and d.score >= DiffConfig().surge_min_score
                                                  for d in dets),
                  "vehicle": sum(d.cls == "vehicle" for d in dets)}
        obs = Observation(aoi=aoi_name, acquisition=scene.acquisition, counts=counts, zone_counts={},
                          zone_valid={}, columns=tuple(columns), valid_fraction=scene.valid_fraction, model=model,
                          detection_ids=tuple(d.id for d in dets))
        alerts = []
        if i == 3:
            alerts.append(Alert(id=f"{aoi_name}:airlift_surge:1", aoi=aoi_name, kind="airlift_surge", severity="high",
                                confidence=0.85, status="new", first_seen=when, last_seen=when, acquisitions=[acq_id],
                                baseline={"large_aircraft": 2.0}, current={"large_aircraft": 4},
                                evidence=[d.id for d in dets[2:4]]))
            world.planted[acq_id] = list(surge_aircraft)
        if i == 4:
            alerts.append(Alert(id=f"{aoi_name}:outbound_columns:1", aoi=aoi_name, kind="outbound_columns",
                                severity="medium", confidence=0.6, status="new", first_seen=when, last_seen=when,
                                acquisitions=[acq_id], baseline={"outbound_vehicles": 0.0},
                                current={"outbound_vehicles": 6}, evidence=[d.id for d in dets if d.cls == "vehicle"]))
        events = [ChangeEvent(aoi=aoi_name, kind=a.kind, acquisition_id=acq_id, when=when, score=1.0,
                              confidence=a.confidence, baseline=a.baseline, current=a.current) for a in alerts]
        if i == 1:  # seen, but too unsure to alert
            events.append(ChangeEvent(aoi=aoi_name, kind="outbound_columns", acquisition_id=acq_id, when=when,
                                      score=1.0, confidence=0.15, baseline={}, current={}))
        store.save_acquisition(run_id, aoi_name, path, obs, dets, columns, events, alerts)
        world.alert_ids += [a.id for a in alerts]
        world.acquisitions.append(acq_id)
    store.finish_run(run_id, "ok", {"processed": n_dates})
    store.close()
    return world


def lonlat_of_pixel(scene: Scene, row: float, col: float) -> tuple[float, float]:
    x, y = pixel_to_map(scene.transform, row, col)
    return map_to_lonlat(scene.crs, x, y)
