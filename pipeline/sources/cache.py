"""On-disk cache of fetched scenes: ``<root>/<aoi>/<acquisition-id>-<request-hash>.tif``.

The request hash covers everything that changes the pixels (service URL, evalscript, bounds, CRS, size, time range),
so a changed request never reads a stale file. Files are interchange GeoTIFFs written atomically by ``write_scene``;
a file that cannot be read is treated as absent and removed, and temp files left by a killed process are swept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from pipeline.geotiff import VALID_BAND
from pipeline.types import BAND_NAMES

LOGGER = logging.getLogger(__name__)
STALE_PART_AGE_S = 3600.0
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def request_hash(payloads: list[dict], base_url: str) -> str:
    """Short stable hash of the Process requests for one acquisition (secrets are never part of a payload)."""
    text = json.dumps({"base_url": base_url.rstrip("/"), "requests": payloads}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def safe_name(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "unnamed"


class SceneCache:
    """Where fetched scenes live; knows nothing about how they are fetched."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, aoi_name: str, acquisition_id: str, req_hash: str) -> Path:
        return self.root / safe_name(aoi_name) / f"{safe_name(acquisition_id)}-{req_hash}.tif"

    def lookup(self, aoi_name: str, acquisition_id: str, req_hash: str) -> Path | None:
        """The cached file if it is a complete interchange GeoTIFF; a damaged one is deleted (it will be refetched)."""
        path = self.path(aoi_name, acquisition_id, req_hash)
        if not path.exists():
            return None
        if is_complete_scene(path):
            return path
        LOGGER.warning("cached scene %s is damaged; removing it so it is fetched again", path.name)
        path.unlink(missing_ok=True)
        return None

    def sweep_partials(self, aoi_name: str, max_age_s: float = STALE_PART_AGE_S) -> int:
        """Remove temp files a killed process left behind (old enough not to belong to a running writer)."""
        folder = self.root / safe_name(aoi_name)
        removed = 0
        if not folder.exists():
            return 0
        now = time.time()
        for part in folder.glob(".*.part"):
            try:
                if now - part.stat().st_mtime >= max_age_s:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def files(self, aoi_name: str | None = None) -> list[Path]:
        base = self.root / safe_name(aoi_name) if aoi_name else self.root
        return sorted(p for p in base.rglob("*.tif") if not p.name.startswith("."))


def is_complete_scene(path: Path) -> bool:
    """Cheap but real check: opens, carries the four bands and the valid band, and the last block decodes."""
    try:
        with rasterio.open(path) as src:
            names = [d or "" for d in src.descriptions]
            if not all(b in names for b in BAND_NAMES) or VALID_BAND not in names:
                return False
            window = rasterio.windows.Window(max(src.width - 1, 0), max(src.height - 1, 0), 1, 1)
            src.read(src.count, window=window)
        return True
    except (RasterioIOError, ValueError, OSError):
        return False
