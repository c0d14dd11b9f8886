"""A folder of interchange GeoTIFFs as a source: the user's own imagery, or what `basewatch fetch` cached.

search reads only headers and tags (footprint and ACQUISITION_DATETIME); load reads the pixels with
``pipeline.geotiff.read_scene`` and brings them onto the AOI's 10 m UTM grid: a crop when the file is on the same grid
(any pixel-aligned extent), otherwise a reprojection (bilinear for reflectance, nearest for the valid mask). Pixels
outside the file are not valid. Files coarser than 20 m are refused: the detector needs 10 m pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.warp import Resampling, reproject, transform_geom
from shapely.geometry import box, mapping, shape

from pipeline.errors import SceneError, SourceError
from pipeline.geotiff import parse_when, read_scene
from pipeline.types import AOI, Acquisition, GridSpec, Scene, reproject_geometry

LOGGER = logging.getLogger(__name__)
PATTERNS = ("*.tif", "*.tiff", "*.TIF", "*.TIFF")
MAX_PIXEL_M = 20.0


@dataclass(frozen=True)
class _Entry:
    path: Path
    acquisition: Acquisition
    grid: GridSpec


def _grid_of(src) -> GridSpec:
    return GridSpec(crs=src.crs.to_string(), transform=src.transform, width=src.width, height=src.height)


class FilesSource:
    """Source protocol over a folder (searched recursively) of interchange GeoTIFFs."""

    name = "files"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.simulated = False
        self._entries: dict[str, _Entry] = {}

    def _scan(self) -> list[_Entry]:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: no such folder of GeoTIFFs; set source.files_dir or --data-dir")
        entries = []
        for product in sorted(self.folder.rglob("MTD_MSIL2A.xml")):  # an unzipped L2A product is not read as is
            LOGGER.warning("%s: a Sentinel-2 L2A product, skipped; `basewatch convert %s --out SCENE.tif` turns it "
                           "into a GeoTIFF this folder can hold", product.parent, product.parent)
        paths = sorted({p for pattern in PATTERNS for p in self.folder.rglob(pattern) if not p.name.startswith(".")})
        for path in paths:
            try:
                with rasterio.open(path) as src:
                    if src.crs is None:
                        LOGGER.warning("%s: no CRS, skipped", path)
                        continue
                    tags = src.tags()
                    grid = _grid_of(src)
                    footprint = shape(transform_geom(src.crs, "EPSG:4326", mapping(box(*src.bounds))))
            except RasterioIOError as exc:
                LOGGER.warning("%s: unreadable GeoTIFF, skipped (%s)", path, exc)
                continue
            when = parse_when(tags.get("ACQUISITION_DATETIME"))
            if when is None:
                LOGGER.warning("%s: tag ACQUISITION_DATETIME missing or not ISO 8601, skipped (not an interchange "
                               "GeoTIFF: `basewatch convert` writes one from it)", path)
                continue
            acq = Acquisition(
                source=self.name,
                id=tags.get("ACQUISITION_ID") or path.stem,
                sensor=tags.get("SPACECRAFT", "Sentinel-2"),
                datetime=when.astimezone(UTC),
                cloud_cover=float(tags["CLOUD_COVER"]) if tags.get("CLOUD_COVER") else None,
                footprint=footprint,
                simulated=tags.get("SIMULATED", "false").lower() == "true",
            )
            entries.append(_Entry(path, acq, grid))
        return entries

    def search(self, aoi: AOI, start: date, end: date) -> list[Acquisition]:
        """Files whose footprint meets the AOI and whose date (UTC) lies in [start, end]; one per acquisition id,
        preferring a file already on the AOI grid, then the newest file."""
        target = aoi.grid()
        chosen: dict[str, _Entry] = {}
        for entry in self._scan():
            acq = entry.acquisition
            if not (start <= acq.datetime.date() <= end) or not acq.footprint.intersects(aoi.outline):
                continue
            rank = (entry.grid == target, entry.path.stat().st_mtime)
            old = chosen.get(acq.id)
            if old is None or rank > (old.grid == target, old.path.stat().st_mtime):
                chosen[acq.id] = entry
        self._entries.update(chosen)
        self.simulated = self.simulated or any(e.acquisition.simulated for e in chosen.values())
        return sorted((e.acquisition for e in chosen.values()), key=lambda a: (a.datetime, a.id))

    def load(self, acquisition: Acquisition, aoi: AOI) -> Scene:
        """The file's pixels on the AOI grid."""
        entry = self._entries.get(acquisition.id)
        if entry is None:
            self.search(aoi, acquisition.datetime.date(), acquisition.datetime.date())
            entry = self._entries.get(acquisition.id)
        if entry is None:
            raise SourceError(f"{acquisition.id}: no file for this acquisition in {self.folder}")
        scene = read_scene(entry.path)
        scene = to_grid(scene, aoi.grid(), entry.path)
        scene.acquisition = replace(entry.acquisition, simulated=scene.simulated)
        return scene


def to_grid(scene: Scene, grid: GridSpec, path: Path | str = "scene") -> Scene:
    """``scene`` on ``grid``: unchanged, cropped/padded when pixel-aligned, else reprojected."""
    if scene.grid == grid:
        return scene
    pixel = max(abs(scene.transform.a), abs(scene.transform.e))
    if not scene.crs or pixel > MAX_PIXEL_M:
        raise SceneError(
            f"{path}: {pixel:g} m pixels are too coarse for detection (need 10 m); resample it to the AOI's UTM "
            f"grid first (e.g. gdalwarp -t_srs {grid.crs} -tr 10 10)"
        )
    scene_box = box(*scene.grid.bounds)
    if not reproject_geometry(scene_box, scene.crs, grid.crs).intersects(box(*grid.bounds)):
        raise SceneError(f"{path}: the image does not overlap the AOI grid ({grid.crs}, bounds {grid.bounds})")
    crop = grid.offset_in(scene.grid)
    if crop is not None:
        row, col = crop
        bands = np.zeros((scene.bands.shape[0], grid.height, grid.width), np.float32)
        valid = np.zeros((grid.height, grid.width), bool)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + grid.height, scene.height), min(col + grid.width, scene.width)
        bands[:, r0 - row : r1 - row, c0 - col : c1 - col] = scene.bands[:, r0:r1, c0:c1]
        valid[r0 - row : r1 - row, c0 - col : c1 - col] = scene.valid[r0:r1, c0:c1]
    else:
        bands = np.zeros((scene.bands.shape[0], grid.height, grid.width), np.float32)
        src = np.where(scene.valid[None], scene.bands, np.nan).astype(np.float32)
        for i in range(src.shape[0]):
            reproject(src[i], bands[i], src_transform=scene.transform, src_crs=scene.crs, src_nodata=np.nan,
                      dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
                      resampling=Resampling.bilinear)
        covered = np.zeros((grid.height, grid.width), np.uint8)
        reproject(scene.valid.astype(np.uint8), covered, src_transform=scene.transform, src_crs=scene.crs,
                  dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=0, resampling=Resampling.nearest)
        valid = (covered > 0) & np.all(np.isfinite(bands), axis=0)
        bands = np.nan_to_num(bands, nan=0.0)
    return Scene(bands=bands, band_names=scene.band_names, transform=grid.transform, crs=grid.crs, valid=valid,
                 acquisition=scene.acquisition, simulated=scene.simulated)
