"""Typed values passed between stages (see DESIGN.md "Core types").

Every stage takes and returns these; none of them knows where pixels came from.
Geometry at the edges is lon/lat (EPSG:4326); computation happens in the AOI's UTM CRS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import LineString, Point, Polygon

ObjectClass = Literal["large_aircraft", "small_aircraft", "helicopter", "vehicle", "vessel"]
OBJECT_CLASSES: tuple[str, ...] = ("large_aircraft", "small_aircraft", "helicopter", "vehicle", "vessel")
ZoneKind = Literal["runway", "apron", "vehicle_park", "pier", "water", "built", "vegetation", "other"]
Direction = Literal["outbound", "inbound", "unknown"]
BAND_NAMES: tuple[str, ...] = ("B02", "B03", "B04", "B08")
PIXEL_SIZE_M = 10.0


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS84 UTM zone containing (lon, lat): the AOI's working projection."""
    zone = int((lon + 180.0) // 6.0) + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    return CRS.from_epsg(epsg)


def reproject_geometry(geom, src: CRS | str, dst: CRS | str):
    """Reproject a shapely geometry between CRSs (always_xy: lon/lat order)."""
    transformer = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, project)


@dataclass(frozen=True)
class Zone:
    """A named part of an AOI (runway, apron, vehicle park, pier...), outline in lon/lat."""

    name: str
    kind: ZoneKind
    polygon: Polygon


@dataclass(frozen=True)
class EgressRoad:
    """A road leaving the base; its first vertex is at the base end (so travel along it = outbound)."""

    name: str
    line: LineString


@dataclass(frozen=True)
class AOI:
    """An area of interest: outline, zones and egress roads in lon/lat, worked on in local UTM."""

    name: str
    title: str
    outline: Polygon
    zones: tuple[Zone, ...] = ()
    roads: tuple[EgressRoad, ...] = ()
    country: str = ""

    @cached_property
    def crs(self) -> CRS:
        c = self.outline.centroid
        return utm_crs_for(c.x, c.y)

    def to_utm(self, geom):
        return reproject_geometry(geom, "EPSG:4326", self.crs)

    def grid(self, pixel_size: float = PIXEL_SIZE_M) -> GridSpec:
        """The AOI's pixel grid: outline bounds in UTM snapped outwards to whole pixels."""
        minx, miny, maxx, maxy = self.to_utm(self.outline).bounds
        minx = np.floor(minx / pixel_size) * pixel_size
        maxy = np.ceil(maxy / pixel_size) * pixel_size
        maxx = np.ceil(maxx / pixel_size) * pixel_size
        miny = np.floor(miny / pixel_size) * pixel_size
        width = int(round((maxx - minx) / pixel_size))
        height = int(round((maxy - miny) / pixel_size))
        transform = Affine(pixel_size, 0.0, float(minx), 0.0, -pixel_size, float(maxy))
        return GridSpec(crs=self.crs.to_string(), transform=transform, width=width, height=height)

    def zone(self, name: str) -> Zone:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(name)


@dataclass(frozen=True)
class GridSpec:
    """A raster grid: integer pixel size plus its projection (never a bare tuple)."""

    crs: str
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    @property
    def pixel_size(self) -> float:
        return abs(self.transform.a)

    def offset_in(self, outer: GridSpec) -> tuple[int, int] | None:
        """(row, col) of this grid's origin in ``outer`` pixels when it is a pixel-aligned window of it
        (same CRS, pixel size, no rotation), else None: then a crop is exact and no resampling is needed."""
        if CRS.from_user_input(outer.crs) != CRS.from_user_input(self.crs):
            return None
        a, b = outer.transform, self.transform
        if not (np.isclose(a.a, b.a) and np.isclose(a.e, b.e) and a.b == b.b == 0 and a.d == b.d == 0):
            return None
        col, row = (b.c - a.c) / a.a, (b.f - a.f) / a.e
        if not (abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6):
            return None
        return int(round(row)), int(round(col))


@dataclass(frozen=True)
class Acquisition:
    """One satellite pass over an AOI (tiles of one pass merged)."""

    source: str
    id: str
    sensor: str
    datetime: datetime
    cloud_cover: float | None = None
    footprint: Polygon | None = None
    simulated: bool = False


@dataclass
class Scene:
    """Pixels of one acquisition over one AOI: reflectance bands, grid and valid mask."""

    bands: np.ndarray
    band_names: tuple[str, ...]
    transform: Affine
    crs: str
    valid: np.ndarray
    acquisition: Acquisition
    simulated: bool

    @property
    def height(self) -> int:
        return int(self.bands.shape[1])

    @property
    def width(self) -> int:
        return int(self.bands.shape[2])

    @property
    def grid(self) -> GridSpec:
        return GridSpec(crs=self.crs, transform=self.transform, width=self.width, height=self.height)

    def band(self, name: str) -> np.ndarray:
        return self.bands[self.band_names.index(name)]

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0


@dataclass(frozen=True)
class MapObject:
    """One object (truth, user label or detection) in the Objects interchange format.

    x/y are map coordinates in the scene CRS; lon/lat are WGS84. ``score`` is None for truth/labels.
    """

    cls: str
    x: float
    y: float
    lon: float
    lat: float
    type: str | None = None
    length_m: float | None = None
    width_m: float | None = None
    heading_deg: float | None = None
    moving: bool | None = None
    speed_mps: float | None = None
    score: float | None = None
    zone: str | None = None
    id: str | None = None
    contrast: float | None = None  # simulated truth only: peak reflectance change the object made (before the sensor)

    @property
    def point(self) -> Point:
        return Point(self.x, self.y)


Detection = MapObject
"""A detection is a MapObject with a score (and an id once stored)."""


@dataclass(frozen=True)
class Column:
    """A chain of moving vehicles travelling together along a road."""

    id: str
    members: tuple[str, ...]
    line: LineString
    length_m: float
    heading_deg: float
    direction: Direction
    vehicles: int
    road: str | None = None


@dataclass(frozen=True)
class Observation:
    """What one acquisition showed at one AOI: the unit the diff stage reads.

    ``zone_valid`` is the cloud-free fraction per zone; a zone under ``min_valid`` is *not observed*.
    """

    aoi: str
    acquisition: Acquisition
    counts: dict[str, int]
    zone_counts: dict[str, dict[str, int]]
    zone_valid: dict[str, float]
    columns: tuple[Column, ...]
    valid_fraction: float
    model: str
    detection_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeEvent:
    """A scored departure from the AOI's baseline seen in one acquisition."""

    aoi: str
    kind: str
    acquisition_id: str
    when: datetime
    score: float
    confidence: float
    baseline: dict
    current: dict
    evidence: tuple[str, ...] = ()
    zone: str | None = None


@dataclass
class Alert:
    """A user-facing judgement built from one or more ChangeEvents; dedup key is (aoi, kind)."""

    id: str
    aoi: str
    kind: str
    severity: Literal["low", "medium", "high"]
    confidence: float
    status: Literal["new", "updated", "closed"]
    first_seen: datetime
    last_seen: datetime
    acquisitions: list[str] = field(default_factory=list)
    baseline: dict = field(default_factory=dict)
    current: dict = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
