"""Pick the Source a run uses: `auto` means real Sentinel-2 through Sentinel Hub when credentials exist, else the
built-in simulator (clearly marked as simulated)."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import BasewatchConfig, ScenarioFile, load_scenario, resolve_path
from pipeline.errors import ConfigError
from pipeline.sources import Source
from pipeline.sources.credentials import credentials_available as _credentials_available

LOGGER = logging.getLogger(__name__)
KINDS = ("auto", "simulated", "sentinelhub", "files")


def credentials_available(config: BasewatchConfig) -> bool:
    """True when Sentinel Hub credentials are configured (environment or sentinelhub's config.toml)."""
    return _credentials_available(config)


def sentinelhub_cache_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "cache" / "sentinelhub"


def make_source(
    config: BasewatchConfig,
    *,
    kind: str | None = None,
    data_dir: Path,
    scenario: ScenarioFile | None = None,
    profile: str | None = None,
) -> Source:
    """The configured (or requested) source.

    Missing credentials for `sentinelhub` raise AuthError naming what to set; `auto` falls back to the simulator.
    """
    kind = kind or config.source.kind
    if kind not in KINDS:
        raise ConfigError(f"unknown source {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "sentinelhub" if credentials_available(config) else "simulated"
        LOGGER.info("source auto -> %s%s", kind, "" if kind == "sentinelhub" else
                    " (no Sentinel Hub credentials: scenes are SIMULATED)")
    if kind == "sentinelhub":
        from pipeline.sources.sentinelhub import SentinelHubSource

        return SentinelHubSource(config.source, sentinelhub_cache_dir(data_dir), profile=profile)
    if kind == "files":
        from pipeline.sources.files import FilesSource

        folder = Path(config.source.files_dir) if config.source.files_dir else Path(data_dir) / "scenes"
        return FilesSource(folder)
    from pipeline.sources.simulated import SimulatedSource

    return SimulatedSource(scenario if scenario is not None else load_scenario(resolve_path(config.scenario)))
