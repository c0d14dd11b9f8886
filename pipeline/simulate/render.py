"""Render one simulated Sentinel-2 L2A scene (B02, B03, B04, B08 + valid) and its ground truth.

Static ground comes from site.py (cached per site); this module adds what changes per date: aircraft in apron
slots (An-124s sometimes at a runway end), trucks in vehicle parks and on piers, columns on egress roads moving
outbound (away from the road's first vertex) or inbound, isolated traffic, cars (clutter), then the sensor model
(seasonal/illumination gain, haze, clouds with sun-displaced shadows, misregistration, PSF, noise).

Truth positions are where the object is at the middle of its B02..B04 rainbow (physics.REFERENCE_TIME_S).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
from affine import Affine
from shapely.geometry import LineString, Point

from pipeline.config import PhaseFile
from pipeline.errors import ConfigError, SceneError
from pipeline.georef import map_to_lonlat, object_at_pixel, pixel_to_map
from pipeline.simulate import landcover, painters, physics
from pipeline.simulate import sensor as msi
from pipeline.simulate.aircraft import CATALOGUE, choose_paint, paint_reflectance
from pipeline.simulate.canvas import Canvas, PaintDelta
from pipeline.simulate.clouds import cloud_fraction, cloud_layer
from pipeline.simulate.site import PixelRoad, SiteLayout, long_axis_heading, road_length_px, site_for
from pipeline.simulate.vehicles import pick_paint, pick_truck
from pipeline.types import AOI, BAND_NAMES, Acquisition, Column, GridSpec, MapObject, Scene

log = logging.getLogger(__name__)
TRUCK_RADIUS_PX = 4.0  # a truck, its shadow and its band offset at column speeds all lie within this of its centre
SOURCE_NAME = "simulated"
PIXEL_M = 10.0
MAX_PIXELS = 16_000_000  # 4000 x 4000 at 10 m = 40 x 40 km; keeps one render under ~1.5 GB
MOORED_TYPES = (("frigate", 125.0, 15.0), ("corvette", 75.0, 11.0), ("landing ship", 112.0, 15.0),
                ("submarine", 74.0, 10.0), ("supply ship", 130.0, 18.0))  # (type, length m, beam m)
GENERIC_ACTIVITY = PhaseFile(name="generic-routine", start=date(2000, 1, 1), parked_vehicles=12, local_traffic=4)


@dataclass
class SimulatedScene:
    scene: Scene
    truth: list[MapObject]
    truth_columns: list[Column]


def acquisition_id(sensor_name: str, site: str, when: datetime) -> str:
    short = sensor_name.replace("Sentinel-", "S")
    return f"sim-{short}-{site}-{when.astimezone(UTC):%Y%m%dT%H%M%S}"


class _Painter:
    """Places dynamic objects on a canvas and records their truth."""

    def __init__(self, layout: SiteLayout, canvas: Canvas, rng: np.random.Generator, sun: tuple[float, float]):
        self.layout = layout
        self.canvas = canvas
        self.rng = rng
        self.grid = layout.grid
        self.sun_elev, self.sun_az = sun
        self.shadow_dir = (self.sun_az + 180.0) % 360.0
        self.truth: list[MapObject] = []
        self.columns: list[Column] = []
        self.taken: list[tuple[float, float, float]] = []

    def inside(self, row: float, col: float) -> bool:
        return 0 <= row < self.grid.height and 0 <= col < self.grid.width

    def zone_at(self, row: float, col: float) -> str | None:
        """The innermost zone at a pixel (a pier inside the sea is the pier), as observe.py assigns detections."""
        p = Point(col, row)
        inside = [z for z in self.layout.zones if z.polygon.contains(p)]
        return min(inside, key=lambda z: z.polygon.area).name if inside else None

    def _record(self, cls: str, row: float, col: float, **props) -> str | None:
        if not self.inside(row, col):
            return None
        oid = f"truth-{len(self.truth) + 1:04d}"
        self.truth.append(object_at_pixel(self.grid.transform, self.grid.crs, row, col, cls, id=oid,
                                          zone=self.zone_at(row, col), **props))
        return oid

    def _shadow_len_m(self, height_m: float) -> float:
        return height_m / np.tan(np.deg2rad(max(self.sun_elev, 8.0)))

    # ------------------------------------------------------------ aircraft

    def aircraft(self, parked: dict[str, int]) -> None:
        rng = self.rng
        slots = {"large": [s for s in self.layout.aircraft_slots if s.size == "large"],
                 "small": [s for s in self.layout.aircraft_slots if s.size == "small"]}
        order = {k: list(rng.permutation(len(v))) for k, v in slots.items()}
        ends = list(self.layout.runway_ends)
        unknown = sorted(set(parked) - set(CATALOGUE))
        if unknown:
            raise ConfigError(f"parked_aircraft: unknown aircraft type(s) {', '.join(unknown)}; "
                              f"known types: {', '.join(CATALOGUE)}")
        items = sorted(parked.items(), key=lambda kv: -CATALOGUE[kv[0]].length_m)
        for name, n in items:
            t = CATALOGUE[name]
            size = "large" if t.length_m >= 30 else "small"
            for _ in range(n):
                if name == "An-124" and ends and rng.random() < 0.3:
                    row, col, heading, _zone = ends.pop(int(rng.integers(len(ends))))
                else:
                    slot = self._free_slot(slots[size], order[size], t.length_m / 20.0)
                    if slot is None:  # aprons full: try the other slot size
                        other = "small" if size == "large" else "large"
                        slot = self._free_slot(slots[other], order[other], t.length_m / 20.0)
                    if slot is None:
                        log.warning("no free apron slot left for a %s; rendered %d aircraft", name,
                                    sum(o.cls != "vehicle" for o in self.truth))
                        continue
                    row, col = slot.row + rng.normal(0, 0.15), slot.col + rng.normal(0, 0.15)
                    heading = (slot.heading + rng.normal(0, 3)) % 360
                self.taken.append((row, col, max(t.length_m, t.span_m) / 20.0))
                paint = paint_reflectance(choose_paint(t, rng), rng)
                scale = float(rng.uniform(0.98, 1.02))
                height = 4.0 if t.cls == "large_aircraft" else 2.5
                delta = PaintDelta(self.canvas, row, col, max(t.length_m, t.span_m) / 20.0 + 1.5)
                painters.paint_aircraft(self.canvas, t, row, col, heading, paint, scale=scale,
                                        shadow_dir_deg=self.shadow_dir, shadow_len_m=self._shadow_len_m(height),
                                        shadow_factor=0.5, rotor_phase_deg=float(rng.uniform(0, 360)),
                                        swept_back=rng.random() < 0.3)
                self._record(t.cls, row, col, type=t.name, length_m=round(t.length_m * scale, 2),
                             width_m=round(t.span_m * scale, 2), heading_deg=round(float(heading), 1),
                             moving=False, speed_mps=0.0, contrast=delta.peak())

    def _free_slot(self, slots, order: list[int], radius_px: float):
        while order:
            s = slots[order.pop(0)]
            if all(np.hypot(s.row - r, s.col - c) > radius_px + rad for r, c, rad in self.taken):
                return s
        return None

    # ------------------------------------------------------------ vehicles

    def parked_vehicles(self, n: int) -> None:
        rng = self.rng
        slots = self.layout.vehicle_slots
        if not slots or n <= 0:
            return
        # fill whole rows from a random start so parks look organised (as trucks are parked in lines)
        start = int(rng.integers(len(slots)))
        paint = pick_paint(rng, military=True)
        for k in range(min(n, len(slots))):
            s = slots[(start + k) % len(slots)]
            if rng.random() < 0.2:
                paint = pick_paint(rng, military=True)
            t = pick_truck(rng, military=True)
            heading = (s.heading + rng.normal(0, 2)) % 360
            row, col = s.row + rng.normal(0, 0.05), s.col + rng.normal(0, 0.05)
            delta = PaintDelta(self.canvas, row, col, TRUCK_RADIUS_PX)
            painters.paint_truck(self.canvas, row, col, heading, t.length_m, t.width_m,
                                 paint * rng.uniform(0.92, 1.08), shadow_dir_deg=self.shadow_dir,
                                 shadow_len_m=self._shadow_len_m(3.0))
            self._record("vehicle", row, col, type=t.name, length_m=t.length_m, width_m=t.width_m,
                         heading_deg=round(float(heading), 1), moving=False, speed_mps=0.0,
                         contrast=delta.peak())

    def column(self, road: PixelRoad, direction: str, count: int, index: int, *, military: bool = True,
               speed: float | None = None, gap_m: float | None = None, head_frac: float | None = None) -> None:
        """A column of trucks on ``road``; outbound = away from the road's first vertex."""
        rng = self.rng
        total = road_length_px(road.points)
        line = road.points if direction == "outbound" else road.points[::-1]
        speed = float(rng.uniform(8, 20)) if speed is None else speed
        gap = float(rng.uniform(35, 75)) if gap_m is None else gap_m
        s = (float(rng.uniform(0.35, 0.95)) if head_frac is None else head_frac) * total
        ids, pts, headings = [], [], []
        for _ in range(count):
            got = painters.lane_point(line, s, road.width_m * 0.25 / 10.0)
            if got is None:
                break
            row, col, heading = got
            t = pick_truck(rng, military)
            v = max(1.0, speed + rng.normal(0, 0.7))
            delta = PaintDelta(self.canvas, row, col, TRUCK_RADIUS_PX)
            painters.paint_truck(self.canvas, row, col, heading, t.length_m, t.width_m, pick_paint(rng, military),
                                 speed_mps=v, time_scale=float(rng.uniform(0.98, 1.02)),
                                 shadow_dir_deg=self.shadow_dir, shadow_len_m=self._shadow_len_m(3.0))
            oid = self._record("vehicle", float(row), float(col), type=t.name, length_m=t.length_m,
                               width_m=t.width_m, heading_deg=round(float(heading), 1), moving=True,
                               speed_mps=round(v, 2), contrast=delta.peak())
            if oid is not None:
                ids.append(oid)
                pts.append((row, col))
                headings.append(heading)
            s -= (t.length_m + gap * rng.uniform(0.75, 1.25)) / 10.0
        if len(ids) >= 2:
            self._record_column(ids, pts, headings, direction, road.name, index)

    def _record_column(self, ids, pts, headings, direction, road_name, index) -> None:
        lonlat = [map_to_lonlat(self.grid.crs, *pixel_to_map(self.grid.transform, r, c)) for r, c in pts]
        xy = [pixel_to_map(self.grid.transform, r, c) for r, c in pts]
        vec = np.array([[np.sin(np.deg2rad(h)), np.cos(np.deg2rad(h))] for h in headings]).mean(axis=0)
        heading = float(np.rad2deg(np.arctan2(vec[0], vec[1])) % 360.0)
        self.columns.append(Column(id=f"truth-column-{index}", members=tuple(ids), line=LineString(lonlat),
                                   length_m=float(LineString(xy).length), heading_deg=round(heading, 1),
                                   direction=direction, vehicles=len(ids), road=road_name))

    def traffic(self, n: int) -> None:
        """Isolated moving trucks on any road, either direction (not part of a column)."""
        rng = self.rng
        roads = self.layout.roads
        if not roads:
            return
        for _ in range(n):
            road = roads[int(rng.integers(len(roads)))]
            line = road.points if rng.random() < 0.5 else road.points[::-1]
            got = painters.lane_point(line, rng.uniform(0, road_length_px(line)), road.width_m * 0.25, 10.0)
            if got is None:
                continue
            row, col, heading = got
            t = pick_truck(rng, military=rng.random() < 0.5)
            v = float(rng.uniform(6, 25))
            delta = PaintDelta(self.canvas, row, col, TRUCK_RADIUS_PX)
            painters.paint_truck(self.canvas, row, col, heading, t.length_m, t.width_m,
                                 pick_paint(rng, military=False), speed_mps=v, shadow_dir_deg=self.shadow_dir,
                                 shadow_len_m=self._shadow_len_m(3.0))
            self._record("vehicle", float(row), float(col), type=t.name, length_m=t.length_m, width_m=t.width_m,
                         heading_deg=round(float(heading), 1), moving=True, speed_mps=round(v, 2),
                         contrast=delta.peak())

    def vessels(self, n: int) -> None:
        """Clutter on water: boats and the odd ship (bright hulls, aircraft-sized for a detector to reject)."""
        rng = self.rng
        water = [z for z in self.layout.zones if z.kind == "water"]
        for _ in range(n if water else 0):
            z = water[int(rng.integers(len(water)))]
            minx, miny, maxx, maxy = z.polygon.bounds
            x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if not z.polygon.buffer(-3).contains(Point(x, y)):
                continue
            length = float(rng.uniform(80, 150)) if rng.random() < 0.25 else float(rng.uniform(8, 40))
            refl = np.array([0.22, 0.24, 0.24, 0.26]) * rng.uniform(0.5, 1.6)
            painters.paint_boat(self.canvas, y, x, length, float(rng.uniform(0, 360)), refl, wake=rng.random() < 0.3)

    def moored_vessels(self, n: int, rng: np.random.Generator) -> None:
        """Ships moored alongside the piers (the phase's ``moored_vessels``): navy-grey hulls 74-130 m long with a
        paler superstructure, parallel to a pier's long side and a few metres off it, on water. From 3 ships up one
        more or fewer on some passes (rotations). ``rng`` is their own stream, so the rest of the scene is drawn as
        it would be without them."""
        if n >= 3:
            n = max(0, n + int(rng.integers(-1, 2)))
        berths = self._berths()
        for i in rng.permutation(len(berths))[:n]:
            row, col, heading, side = berths[int(i)]
            kind, length, beam = MOORED_TYPES[int(rng.integers(len(MOORED_TYPES)))]
            off = (side + beam / 2 + 4.0) / PIXEL_M  # centre off the pier edge: half the beam and a fender gap
            h = np.deg2rad(heading + 90.0)
            r, c = row - np.cos(h) * off, col + np.sin(h) * off
            if not self._on_water(r, c, length / PIXEL_M / 2):
                continue
            hull = np.array([0.075, 0.08, 0.08, 0.085]) * rng.uniform(0.85, 1.25)
            painters.paint_boat(self.canvas, r, c, length, heading, hull)
            painters.paint_box(self.canvas, r, c, length * 0.3, beam * 0.6, heading, hull * 1.6, height_m=12.0,
                               shadow_dir_deg=self.shadow_dir, sun_elev_deg=self.sun_elev)
            self._record("vessel", float(r), float(c), type=kind, length_m=length, width_m=beam,
                         heading_deg=round(float(heading), 1), moving=False, speed_mps=0.0)

    def _berths(self) -> list[tuple[float, float, float, float]]:
        """(row, col, heading, half pier width in m) of berth stations along both long sides of every pier zone,
        one pair of opposite headings per station (a ship on either side), stations 200 m apart."""
        out = []
        for z in (z for z in self.layout.zones if z.kind == "pier"):
            heading, long_px, short_px = long_axis_heading(z.polygon)
            centre = z.polygon.centroid
            h = np.deg2rad(heading)
            along = np.array([-np.cos(h), np.sin(h)])  # (drow, dcol)
            stations = max(1, int(long_px * PIXEL_M // 200))
            for k in range(stations):
                t = (k + 0.5) / stations - 0.5
                row, col = centre.y + along[0] * t * long_px, centre.x + along[1] * t * long_px
                half = short_px * PIXEL_M / 2
                out += [(row, col, heading, half), (row, col, (heading + 180.0) % 360.0, half)]
        return out

    def _on_water(self, row: float, col: float, half_length_px: float) -> bool:
        water = landcover.cover_id("water")
        h, w = self.layout.labels.shape
        i, j = int(row), int(col)
        return half_length_px < min(i, j, h - 1 - i, w - 1 - j) and self.layout.labels[i, j] == water

    def cars(self, n: int) -> None:
        """Clutter: cars are below what 10 m pixels resolve; never truth."""
        rng = self.rng
        roads = self.layout.roads
        for _ in range(n if roads else 0):
            road = roads[int(rng.integers(len(roads)))]
            got = painters.point_along(road.points, rng.uniform(0, road_length_px(road.points)))
            if got is None:
                continue
            p, heading = got
            heading = heading if rng.random() < 0.5 else (heading + 180) % 360
            painters.paint_car(self.canvas, p[0], p[1], heading, np.array([0.3, 0.3, 0.3, 0.32]) *
                               rng.uniform(0.2, 1.5), speed_mps=float(rng.uniform(0, 25)))


def _seasonal_gain(layout: SiteLayout, when: datetime) -> np.ndarray | None:
    """Vegetation NIR follows the Mediterranean season (green in winter/spring, dry in late summer)."""
    if layout.vegetation_mask is None or not layout.vegetation_mask.any():
        return None
    doy = when.timetuple().tm_yday
    return np.float32(1.0 + 0.12 * np.cos(2 * np.pi * (doy - 75) / 365.0))


def render_grid(grid: GridSpec, when: datetime, *, seed: int, aoi: AOI | None = None,
                activity: PhaseFile | None = None, cloud_free: bool = False, sensor: str = "Sentinel-2A",
                cloud_probability: float = 0.2, cloud_fraction_override: float | None = None,
                terrain_seed: int | None = None, acquisition: Acquisition | None = None) -> SimulatedScene:
    """Render ``grid`` at ``when``. Same arguments => same pixels (every random draw derives from ``seed``).

    The renderer works at Sentinel-2's native 10 m; a grid of another pixel size is rendered at 10 m over the same
    bounds and resampled (truth positions are map coordinates and need no change).
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if grid.width < 1 or grid.height < 1 or grid.width * grid.height > MAX_PIXELS:
        raise SceneError(f"cannot simulate a {grid.width} x {grid.height} px grid: give 1 to {MAX_PIXELS:,} pixels "
                         "(split a large area into tiles of at most 4000 x 4000)")
    if abs(grid.pixel_size - PIXEL_M) > 1e-6 or grid.transform.b or grid.transform.d:
        return _render_resampled(grid, when, seed=seed, aoi=aoi, activity=activity, cloud_free=cloud_free,
                                 sensor=sensor, cloud_probability=cloud_probability,
                                 cloud_fraction_override=cloud_fraction_override, terrain_seed=terrain_seed,
                                 acquisition=acquisition)
    site_name = aoi.name if aoi is not None else "grid"
    if terrain_seed is None:
        terrain_seed = physics.derive_seed("terrain", site_name, grid.crs, *np.round(grid.bounds, 1))
    layout = site_for(grid, aoi, terrain_seed)
    rng = np.random.default_rng(physics.derive_seed("scene", seed))
    sun = physics.solar_position(when, layout.lat, layout.lon)
    surface = layout.surface.copy()
    gain = _seasonal_gain(layout, when)
    if gain is not None:
        surface[3][layout.vegetation_mask] *= gain
    canvas = Canvas(surface)
    painter = _Painter(layout, canvas, rng, sun)

    act = activity or GENERIC_ACTIVITY
    painter.aircraft(dict(act.parked_aircraft))
    painter.parked_vehicles(act.parked_vehicles)
    egress = [r for r in layout.roads if r.egress] or layout.roads
    idx = 0
    lo, hi = act.vehicles_per_column
    for direction, n in (("outbound", act.outbound_columns), ("inbound", act.inbound_columns)):
        for k in range(n):
            if not egress:
                break
            road = egress[(k + (1 if direction == "inbound" else 0)) % len(egress)]
            idx += 1
            painter.column(road, direction, int(rng.integers(lo, hi + 1)), idx)
    painter.traffic(act.local_traffic)
    painter.cars(int(rng.integers(5, 30)))
    painter.vessels(int(rng.integers(0, 7)))
    painter.moored_vessels(act.moored_vessels, np.random.default_rng(physics.derive_seed("moored", seed)))

    params = msi.draw_sensor(rng)
    frac = cloud_fraction_override if cloud_fraction_override is not None else cloud_fraction(
        seed, cloud_probability, cloud_free)
    clouds = None
    if frac > 0:
        height_m = float(rng.uniform(800, 2500))
        shift_len = height_m / np.tan(np.deg2rad(max(sun[0], 10.0))) / grid.pixel_size
        shift = painters.shadow_shift((sun[1] + 180.0) % 360.0, shift_len)
        clouds = cloud_layer((grid.height, grid.width), frac, np.random.default_rng(physics.derive_seed("clouds",
                             seed)), shadow_shift_px=shift)
    bands, valid = msi.observe(canvas.bands, params, rng, clouds)
    if acquisition is None:
        acquisition = Acquisition(source=SOURCE_NAME, id=acquisition_id(sensor, site_name, when), sensor=sensor,
                                  datetime=when, cloud_cover=round(100.0 * frac, 2), simulated=True)
    scene = Scene(bands=bands, band_names=BAND_NAMES, transform=grid.transform, crs=grid.crs, valid=valid,
                  acquisition=acquisition, simulated=True)
    return SimulatedScene(scene=scene, truth=painter.truth, truth_columns=painter.columns)


def _render_resampled(grid: GridSpec, when: datetime, **kwargs) -> SimulatedScene:
    """Render on a 10 m north-up grid covering ``grid`` and resample to it (area mean when coarser, else bilinear)."""
    from scipy import ndimage

    if grid.transform.b or grid.transform.d:
        raise SceneError(f"the simulator renders north-up grids only (got a rotated transform {grid.transform})")
    minx, miny, maxx, maxy = grid.bounds
    x0, y1 = np.floor(minx / PIXEL_M) * PIXEL_M, np.ceil(maxy / PIXEL_M) * PIXEL_M
    width, height = int(np.ceil((maxx - x0) / PIXEL_M)), int(np.ceil((y1 - miny) / PIXEL_M))
    fine = GridSpec(crs=grid.crs, transform=Affine(PIXEL_M, 0.0, float(x0), 0.0, -PIXEL_M, float(y1)), width=width,
                    height=height)
    sim = render_grid(fine, when, **kwargs)
    ratio = grid.pixel_size / PIXEL_M
    bands = sim.scene.bands
    shift = 0.0
    if ratio > 1.0:  # coarser: average over the target footprint first
        k = max(1, int(round(ratio)))
        bands = np.stack([ndimage.uniform_filter(b, size=k, mode="nearest") for b in bands])
        shift = k // 2 - (k - 1) / 2  # an even box filter is centred half a pixel early
    cols = (grid.transform.c + (np.arange(grid.width) + 0.5) * grid.transform.a - x0) / PIXEL_M - 0.5 + shift
    rows = (y1 - (grid.transform.f + (np.arange(grid.height) + 0.5) * grid.transform.e)) / PIXEL_M - 0.5 + shift
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    out = np.stack([ndimage.map_coordinates(b, [rr, cc], order=1, mode="nearest") for b in bands]).astype(np.float32)
    invalid = ndimage.maximum_filter(~sim.scene.valid, size=max(1, int(np.ceil(ratio))), mode="nearest")
    valid = ~ndimage.map_coordinates(invalid.astype(np.uint8), [rr, cc], order=0, mode="nearest").astype(bool)
    scene = Scene(bands=out, band_names=sim.scene.band_names, transform=grid.transform, crs=grid.crs, valid=valid,
                  acquisition=sim.scene.acquisition, simulated=True)
    inside = [o for o in sim.truth if minx <= o.x < maxx and miny < o.y <= maxy]
    return SimulatedScene(scene=scene, truth=inside, truth_columns=sim.truth_columns)


def render_scene(aoi: AOI, when: datetime, *, seed: int, activity: PhaseFile | None = None,
                 **kwargs) -> SimulatedScene:
    """``render_grid`` on the AOI's own UTM grid."""
    return render_grid(aoi.grid(), when, seed=seed, aoi=aoi, activity=activity, **kwargs)
