"""The scenario's calendar: simulated overpasses per site, their seeds and cloud draws, and the activity phase.

Overpasses fall every ``revisit_days`` from the site's ``first_pass`` in both directions, alternating
Sentinel-2A / 2B (the pass at ``first_pass`` is 2A). Each acquisition's seed is derived from the scenario seed,
the AOI and the date with SHA-256 (stable across runs and Python versions, unlike ``hash()``).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from pipeline.config import PhaseFile, ScenarioFile, SiteFile
from pipeline.simulate.clouds import cloud_fraction
from pipeline.simulate.physics import derive_seed
from pipeline.simulate.render import SOURCE_NAME, acquisition_id
from pipeline.types import Acquisition

SENSORS = ("Sentinel-2A", "Sentinel-2B")


def acquisition_seed(scenario_seed: int, aoi: str, day: date) -> int:
    return derive_seed("acquisition", scenario_seed, aoi, day.isoformat())


def terrain_seed(scenario_seed: int, aoi: str) -> int:
    """Seed of a site's static ground: same for every date of the scenario."""
    return derive_seed("terrain", scenario_seed, aoi)


def activity_on(site: SiteFile, day: date) -> PhaseFile:
    """The phase in force on ``day``: the last phase that started on or before it (the first before any)."""
    current = site.phases[0]
    for phase in site.phases:
        if phase.start <= day:
            current = phase
    return current


def cloud_plan(site: SiteFile, day: date, scenario_seed: int) -> float:
    """Cloud fraction (0-1) of the site's scene on ``day``: clear_dates 0, cloudy_dates as given, else drawn."""
    if day in site.clear_dates:
        return 0.0
    cloudy = getattr(site, "cloudy_dates", None) or {}
    if day in cloudy:
        return float(cloudy[day])
    return cloud_fraction(acquisition_seed(scenario_seed, site.aoi, day), site.cloud_probability)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def pass_times(site: SiteFile, start: date, end: date) -> list[tuple[int, datetime]]:
    """(revisit index, UTC time) of every overpass with start <= date <= end."""
    first = _utc(site.first_pass)
    step = timedelta(days=site.revisit_days)
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
    k = math.floor((lo - first) / step) - 1
    out = []
    while True:
        t = first + k * step
        if t.date() > end:
            break
        if t.date() >= start:
            out.append((k, t))
        k += 1
    return out


def sensor_for(k: int) -> str:
    return SENSORS[k % 2]


def site_acquisitions(scenario: ScenarioFile, site: SiteFile, start: date, end: date) -> list[Acquisition]:
    """The simulated acquisitions over ``site`` between ``start`` and ``end`` (inclusive), time-ordered."""
    out = []
    for k, when in pass_times(site, start, end):
        sensor = sensor_for(k)
        out.append(Acquisition(
            source=SOURCE_NAME,
            id=acquisition_id(sensor, site.aoi, when),
            sensor=sensor,
            datetime=when,
            cloud_cover=round(100.0 * cloud_plan(site, when.date(), scenario.seed), 2),
            simulated=True,
        ))
    return out


def overpass_time(site: SiteFile, day: date) -> datetime:
    """The site's overpass time of day (from first_pass) on ``day``, even when no pass falls on it."""
    first = _utc(site.first_pass)
    return datetime(day.year, day.month, day.day, first.hour, first.minute, first.second, tzinfo=UTC)


def is_overpass(site: SiteFile, day: date) -> tuple[bool, int]:
    """Whether ``day`` has an overpass, and the revisit index of the nearest one (for the sensor name)."""
    first = _utc(site.first_pass)
    step = timedelta(days=site.revisit_days)
    k = round((overpass_time(site, day) - first) / step)
    return (first + k * step).date() == day, int(k)
