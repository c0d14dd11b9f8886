"""`basewatch fetch`: pull Sentinel-2 L2A scenes over AOIs into the cache (incremental; re-run fetches only what is
missing). The cached folder then serves `basewatch run --source files` too."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import rasterio
from rich.console import Console
from rich.table import Table

from pipeline.config import load_aoi, load_config
from pipeline.errors import AuthError, ConfigError, SourceError
from pipeline.sources.select import sentinelhub_cache_dir
from pipeline.sources.sentinelhub import FetchReport, SentinelHubSource


def fetch_command(
    *,
    config_path: Path | None,
    data_dir: Path | None,
    aois: list[str] | None,
    start: date | None,
    end: date | None,
    max_cloud: float | None = None,
    profile: str | None = None,
) -> list[FetchReport]:
    """Fetch every AOI's window; one SourceError at the end names what failed (everything else stays cached)."""
    config = load_config(config_path)
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=30)
    if end < start:
        raise ConfigError(f"--end {end} is before --start {start}")
    if max_cloud is not None and not 0 <= max_cloud <= 100:
        raise ConfigError(f"--max-cloud {max_cloud} must be between 0 and 100 (%)")
    source_config = config.source if max_cloud is None else config.source.model_copy(update={"max_cloud": max_cloud})
    data_dir = Path(data_dir or config.data_dir)
    source = SentinelHubSource(source_config, sentinelhub_cache_dir(data_dir), profile=profile)
    console = Console(stderr=True)
    where = source.credentials.base_url
    console.print(f"Sentinel Hub: {where} (profile {source.credentials.profile}, credentials from the "
                  f"{source.credentials.found_in}), window {start}..{end}, cloud <= {source_config.max_cloud:g}%")
    reports, errors = [], []
    for name in aois or config.aois:
        aoi = load_aoi(name, config_path)
        try:
            report = source.fetch(aoi, source.search(aoi, start, end))
        except SourceError as exc:
            if isinstance(exc, AuthError):
                raise
            errors.append(f"{name}: {exc}")
            continue
        reports.append(report)
        if report.failed:
            first = next(iter(report.failed.items()))
            errors.append(f"{name}: {len(report.failed)} of {len(report.acquisitions)} acquisitions failed; "
                          f"first: {first[0]}: {first[1]}")
    table = Table("AOI", "acquisitions", "fetched", "cached", "failed", "pixels")
    for r in reports:
        simulated = _any_simulated(r)
        table.add_row(r.aoi, str(len(r.acquisitions)), str(len(r.fetched)), str(len(r.cached)), str(len(r.failed)),
                      "SIMULATED (emulator)" if simulated else "real")
    out = Console(soft_wrap=True)
    out.print(table)
    out.print(f"scenes: {sentinelhub_cache_dir(data_dir)}/<aoi>/ (`basewatch run --source sentinelhub` reads them "
              "from this cache; `--source files` does too with source.files_dir set to this folder)")
    if errors:
        raise SourceError("fetch incomplete (re-run to fetch only what is missing):\n" + "\n".join(errors))
    return reports


def _any_simulated(report: FetchReport) -> bool:
    for path in report.paths.values():
        with rasterio.open(path) as src:
            if src.tags().get("SIMULATED", "false").lower() == "true":
                return True
    return False
