"""Pixel <-> map <-> lon/lat conversions shared by every detector (one place for the half-pixel convention).

Convention: (row, col) are continuous pixel coordinates where the centre of pixel (0, 0) is (0.5, 0.5),
i.e. rasterio's affine maps (col, row) to the map position directly.
"""

from __future__ import annotations

from functools import lru_cache

from affine import Affine
from pyproj import Transformer

from pipeline.types import MapObject


@lru_cache(maxsize=32)
def _to_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


@lru_cache(maxsize=32)
def _from_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def pixel_to_map(transform: Affine, row: float, col: float) -> tuple[float, float]:
    x, y = transform @ (col, row)
    return float(x), float(y)


def map_to_pixel(transform: Affine, x: float, y: float) -> tuple[float, float]:
    col, row = ~transform @ (x, y)
    return float(row), float(col)


def map_to_lonlat(crs: str, x: float, y: float) -> tuple[float, float]:
    lon, lat = _to_lonlat(crs).transform(x, y)
    return float(lon), float(lat)


def lonlat_to_map(crs: str, lon: float, lat: float) -> tuple[float, float]:
    x, y = _from_lonlat(crs).transform(lon, lat)
    return float(x), float(y)


def object_at_pixel(transform: Affine, crs: str, row: float, col: float, cls: str, **props) -> MapObject:
    """A MapObject at continuous pixel position (row, col) of a raster with ``transform`` in ``crs``."""
    x, y = pixel_to_map(transform, row, col)
    lon, lat = map_to_lonlat(crs, x, y)
    return MapObject(cls=cls, x=x, y=y, lon=lon, lat=lat, **props)
