"""The embedded default source: simulated Sentinel-2 L2A scenes of a scenario's sites (pipeline/simulate).

Every scene and acquisition it returns is marked simulated. An AOI that is not one of the scenario's sites gets a
generic routine activity (aircraft none, a few parked and moving trucks) on its own grid and revisit cadence.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import UTC, date, datetime

from pipeline.config import PhaseFile, ScenarioFile, SiteFile
from pipeline.errors import SourceError
from pipeline.simulate import timeline
from pipeline.simulate.render import GENERIC_ACTIVITY, SimulatedScene, render_scene
from pipeline.types import AOI, Acquisition, Scene

log = logging.getLogger(__name__)


class SimulatedSource:
    """Renders scenes on demand; the last few renders are cached so ``load`` + ``truth`` render once."""

    name = "simulated"
    simulated = True

    def __init__(self, scenario: ScenarioFile, cache_size: int = 4):
        self.scenario = scenario
        self._cache: OrderedDict[tuple[str, str], SimulatedScene] = OrderedDict()
        self._cache_size = cache_size

    def site(self, aoi: AOI) -> SiteFile:
        """The scenario site of ``aoi``, or a generic one (routine activity, 5-day revisit, 20% cloudy)."""
        for s in self.scenario.sites:
            if s.aoi == aoi.name:
                return s
        first = datetime(self.scenario.start.year, self.scenario.start.month, self.scenario.start.day, 9, 0,
                         tzinfo=UTC)
        return SiteFile(aoi=aoi.name, first_pass=first, revisit_days=5, cloud_probability=0.2,
                        phases=[PhaseFile(**{**GENERIC_ACTIVITY.model_dump(), "start": self.scenario.start})])

    def search(self, aoi: AOI, start: date, end: date) -> list[Acquisition]:
        if end < start:
            raise SourceError(f"search window ends ({end}) before it starts ({start}); swap --start and --end")
        return timeline.site_acquisitions(self.scenario, self.site(aoi), start, end)

    def truth(self, acquisition: Acquisition, aoi: AOI) -> SimulatedScene:
        key = (aoi.name, acquisition.id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        rendered = self._render(acquisition, aoi)
        self._cache[key] = rendered
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rendered

    def load(self, acquisition: Acquisition, aoi: AOI) -> Scene:
        return self.truth(acquisition, aoi).scene

    def _render(self, acquisition: Acquisition, aoi: AOI) -> SimulatedScene:
        site = self.site(aoi)
        day = acquisition.datetime.astimezone(UTC).date()
        seed = timeline.acquisition_seed(self.scenario.seed, aoi.name, day)
        log.debug("rendering simulated scene %s (seed %d)", acquisition.id, seed)
        return render_scene(
            aoi, acquisition.datetime, seed=seed, activity=timeline.activity_on(site, day),
            sensor=acquisition.sensor, cloud_fraction_override=timeline.cloud_plan(site, day, self.scenario.seed),
            terrain_seed=timeline.terrain_seed(self.scenario.seed, aoi.name), acquisition=acquisition,
        )
