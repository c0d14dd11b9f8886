"""`basewatch simulate`: write simulated scenes (interchange GeoTIFF) and their truth (Objects GeoJSON).

Two modes:
- site mode (``--aoi`` with ``--date`` or ``--start/--end``): the scenario's site on those dates. A date with no
  overpass is still rendered (at the site's overpass time of day) because the user asked for it.
- held-out mode (``--held-out N``): N random evaluation scenes, larger synthetic layouts that are none of our AOIs,
  each ``DIR/<scene>.tif`` + ``DIR/<scene>.truth.geojson`` plus ``DIR/index.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from affine import Affine
from rich.progress import track

from pipeline.atomic import write_text_atomic
from pipeline.config import PhaseFile, ScenarioFile, load_aoi, load_scenario
from pipeline.errors import ConfigError
from pipeline.geotiff import write_scene
from pipeline.objects import column_feature, feature_collection, object_feature, write_geojson
from pipeline.simulate import timeline
from pipeline.simulate.aircraft import CATALOGUE
from pipeline.simulate.physics import derive_seed
from pipeline.simulate.render import SimulatedScene, acquisition_id, render_grid
from pipeline.types import Acquisition, GridSpec, utm_crs_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    scene: Path
    truth: Path
    objects: int
    columns: int


def write_simulated(sim: SimulatedScene, out_dir: Path, name: str | None = None) -> Written:
    """``<out>/<name>.tif`` and ``<out>/<name>.truth.geojson`` (name defaults to the acquisition id)."""
    name = name or sim.scene.acquisition.id
    out_dir.mkdir(parents=True, exist_ok=True)
    tif = write_scene(sim.scene, out_dir / f"{name}.tif")
    acq = sim.scene.acquisition
    fc = feature_collection(
        [object_feature(o) for o in sim.truth] + [column_feature(c) for c in sim.truth_columns],
        simulated=True, acquisition_id=acq.id, acquisition_datetime=acq.datetime.astimezone(UTC).isoformat(),
        scene_crs=sim.scene.crs, cloud_cover=acq.cloud_cover,  # not "crs": GDAL would read that as the CRS
    )
    truth = write_geojson(fc, out_dir / f"{name}.truth.geojson")
    return Written(tif, truth, len(sim.truth), len(sim.truth_columns))


def _days(day: date | None, start: date | None, end: date | None) -> tuple[list[date], bool]:
    """(days, overpasses_only): a single --date is rendered as is; a window keeps only overpass days."""
    if day is not None:
        if start or end:
            raise ConfigError("give either --date or --start/--end, not both")
        return [day], False
    if start is None or end is None:
        raise ConfigError("give --date YYYY-MM-DD, or both --start and --end (or --held-out N)")
    if end < start:
        raise ConfigError(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)], True


def simulate_site(aoi_name: str, out_dir: Path, *, day: date | None = None, start: date | None = None,
                  end: date | None = None, seed: int | None = None, scenario: ScenarioFile | None = None,
                  config_path: Path | None = None) -> list[Written]:
    scenario = scenario or load_scenario()
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": int(seed)})
    aoi = load_aoi(aoi_name, config_path)
    from pipeline.sources.simulated import SimulatedSource

    source = SimulatedSource(scenario)
    site = source.site(aoi)
    days, overpasses_only = _days(day, start, end)
    written = []
    if overpasses_only:
        acquisitions = source.search(aoi, days[0], days[-1])
        if not acquisitions:
            raise ConfigError(f"no simulated overpass of {aoi.name} between {days[0]} and {days[-1]} "
                              f"(revisit every {site.revisit_days:g} days from {site.first_pass:%Y-%m-%d})")
        for acq in track(acquisitions, description=f"simulating {aoi.name}", transient=True):
            written.append(write_simulated(source.truth(acq, aoi), out_dir))
        return written
    d = days[0]
    on_pass, k = timeline.is_overpass(site, d)
    when = timeline.overpass_time(site, d)
    if not on_pass:
        log.warning("%s is not a simulated overpass date of %s; rendering it anyway at %s UTC", d, aoi.name,
                    when.strftime("%H:%M:%S"))
    sensor = timeline.sensor_for(k)
    frac = timeline.cloud_plan(site, d, scenario.seed)
    acq = Acquisition(source="simulated", id=acquisition_id(sensor, aoi.name, when), sensor=sensor, datetime=when,
                      cloud_cover=round(100 * frac, 2), simulated=True)
    written.append(write_simulated(source.truth(acq, aoi), out_dir))
    return written


# ---------------------------------------------------------------- held-out evaluation scenes


def random_activity(rng: np.random.Generator, day: date) -> PhaseFile:
    """A random mix of parked aircraft, trucks and columns (for held-out evaluation scenes)."""
    names = list(CATALOGUE)
    parked = {}
    for name in rng.choice(names, size=int(rng.integers(1, 6)), replace=False):
        parked[str(name)] = int(rng.integers(1, 5))
    return PhaseFile(name="held-out", start=day, parked_aircraft=parked, parked_vehicles=int(rng.integers(0, 60)),
                     outbound_columns=int(rng.integers(0, 3)), inbound_columns=int(rng.integers(0, 2)),
                     vehicles_per_column=(4, 16), local_traffic=int(rng.integers(0, 12)))


def held_out_scene(seed: int, index: int, size: int = 512) -> SimulatedScene:
    """One random evaluation scene: random place (lat 15-55 N), date, synthetic base layout and activity."""
    rng = np.random.default_rng(derive_seed("held-out", seed, index))
    lat, lon = float(rng.uniform(15, 55)), float(rng.uniform(-10, 60))
    crs = utm_crs_for(lon, lat)
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    x0, y0 = np.floor(x / 10) * 10, np.ceil(y / 10) * 10
    h, w = int(size * rng.uniform(0.8, 1.25)), int(size * rng.uniform(0.8, 1.25))
    grid = GridSpec(crs=crs.to_string(), transform=Affine(10.0, 0.0, float(x0), 0.0, -10.0, float(y0)), width=w,
                    height=h)
    day = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
    when = datetime(day.year, day.month, day.day, 10, 0, tzinfo=UTC) + timedelta(minutes=float(rng.uniform(-90, 60)))
    sensor = str(rng.choice(["Sentinel-2A", "Sentinel-2B"]))
    return render_grid(grid, when, seed=int(derive_seed("held-out-scene", seed, index)), aoi=None,
                       activity=random_activity(rng, day), sensor=sensor, cloud_probability=0.3,
                       terrain_seed=int(derive_seed("held-out-terrain", seed, index)))


def simulate_held_out(n: int, out_dir: Path, seed: int = 0, size: int = 512) -> list[Written]:
    if n < 1:
        raise ConfigError(f"--held-out must be at least 1 (got {n})")
    written, index = [], []
    for i in track(range(n), description="held-out scenes", transient=True):
        sim = held_out_scene(seed, i, size)
        name = f"heldout-{seed}-{i:04d}"
        w = write_simulated(sim, out_dir, name)
        written.append(w)
        index.append({"scene": w.scene.name, "truth": w.truth.name, "acquisition_id": sim.scene.acquisition.id,
                      "objects": w.objects, "columns": w.columns,
                      "valid_fraction": round(sim.scene.valid_fraction, 4)})
    path = out_dir / "index.json"
    write_text_atomic(path, json.dumps({"simulated": True, "seed": seed, "scenes": index}, indent=1))
    return written


def simulate_command(aoi: str | None, out: Path, day: date | None, start: date | None, end: date | None,
                     seed: int | None, scenario_path: Path | None, held_out: int | None,
                     config_path: Path | None = None, size: int = 512) -> list[Written]:
    """Entry point of `basewatch simulate` (argument checks here so messages say what to change)."""
    if held_out is not None:
        if aoi or day or start or end:
            raise ConfigError("--held-out renders random scenes; drop --aoi/--date/--start/--end")
        return simulate_held_out(held_out, out, seed=seed or 0, size=size)
    if not aoi:
        raise ConfigError("give --aoi NAME (see `basewatch aoi list`) or --held-out N")
    scenario = load_scenario(scenario_path) if scenario_path else None
    return simulate_site(aoi, out, day=day, start=start, end=end, seed=seed, scenario=scenario,
                         config_path=config_path)


__all__ = ["simulate_command", "write_simulated", "held_out_scene", "simulate_site", "simulate_held_out"]
