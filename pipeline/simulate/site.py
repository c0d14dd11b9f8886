"""The static part of a simulated site: terrain, zones, roads, buildings and parking slots, on one pixel grid.

Built once per (grid, site, terrain seed) and cached, so every date of a site shares the same ground (only
activity, clouds, illumination, misregistration and noise change between dates, as in a real time series).
Sites come from an AOI (zones and egress roads reprojected to the grid) or, for ``aoi=None``, are synthesised
(random airfield / depot / roads), which serves both the Sentinel Hub emulator's arbitrary bboxes and the held-out
evaluation scenes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from affine import Affine
from shapely import constrained_delaunay_triangles, contains_xy
from shapely.affinity import affine_transform
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry import box as shapely_box
from shapely.ops import unary_union
from shapely.prepared import prep

from pipeline.simulate import landcover, painters
from pipeline.simulate.canvas import Canvas, coverage
from pipeline.simulate.physics import derive_seed, fractal_noise
from pipeline.types import AOI, GridSpec, reproject_geometry

ZONE_COVER = {"runway": "runway", "apron": "dry_grass", "vehicle_park": "gravel", "pier": "concrete",
              "water": "water", "built": "urban", "vegetation": "vegetation", "other": "soil"}
ZONE_ORDER = {"water": 0, "vegetation": 1, "other": 2, "built": 3, "vehicle_park": 4, "pier": 5, "apron": 6,
              "runway": 7}


@dataclass(frozen=True)
class PixelZone:
    name: str
    kind: str
    polygon: Polygon  # pixel coordinates, x = col, y = row


@dataclass(frozen=True)
class PixelRoad:
    name: str
    points: np.ndarray  # (N, 2) (row, col); first vertex at the base end
    width_m: float
    egress: bool  # an AOI egress road (columns use these)


@dataclass
class Slot:
    row: float
    col: float
    heading: float
    zone: str
    size: str  # "large" (transports, 80 m pitch) or "small" (fighters / helicopters, 35 m pitch)


@dataclass
class SiteLayout:
    grid: GridSpec
    surface: np.ndarray  # (4, H, W) reflectance of the empty site
    labels: np.ndarray  # (H, W) cover ids
    zones: list[PixelZone]
    roads: list[PixelRoad]
    aircraft_slots: list[Slot] = field(default_factory=list)
    runway_ends: list[tuple[float, float, float, str]] = field(default_factory=list)  # row, col, heading, zone
    vehicle_slots: list[Slot] = field(default_factory=list)
    vegetation_mask: np.ndarray | None = None
    lat: float = 35.0
    lon: float = 35.0
    desert: bool = False


# ---------------------------------------------------------------- geometry helpers


def _to_pixels(grid: GridSpec, geom_map):
    """Map geometry (grid CRS) -> pixel geometry (x = col, y = row)."""
    inv = ~grid.transform
    return affine_transform(geom_map, [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])


def _convex_parts(poly: Polygon) -> list[np.ndarray]:
    """Convex pieces of a pixel polygon as (N, 2) (row, col) arrays (triangles when it is not convex)."""
    if poly.is_empty:
        return []
    if poly.convex_hull.area <= poly.area * 1.001:
        xy = np.asarray(poly.exterior.coords)[:-1]
        return [xy[:, ::-1].copy()]
    parts = []
    for tri in constrained_delaunay_triangles(poly).geoms:
        xy = np.asarray(tri.exterior.coords)[:-1]
        parts.append(xy[:, ::-1].copy())
    return parts


def _blend_zone(surface: np.ndarray, labels: np.ndarray, zone: PixelZone, cover: str, fields, pal,
                ss: int = 3) -> None:
    """Blend a zone's textured cover into the surface with sub-pixel edges."""
    h, w = labels.shape
    cid = landcover.cover_id(cover)
    for part in _convex_parts(zone.polygon):
        got = coverage([part], ss, (h, w))
        if got is None:
            continue
        cov, r0, c0 = got
        win = (slice(r0, r0 + cov.shape[0]), slice(c0, c0 + cov.shape[1]))
        lab = np.full(cov.shape, cid)
        zsurf = landcover.render_cover(lab, None, pal=pal, fine=fields[0][win], coarse=fields[1][win],
                                       green=fields[2][win])
        surface[:, win[0], win[1]] = surface[:, win[0], win[1]] * (1 - cov) + zsurf * cov
        labels[win][cov > 0.5] = cid


def long_axis_heading(poly: Polygon) -> tuple[float, float, float]:
    """Heading (compass) of a polygon's long axis and its length/width in pixels."""
    rect = poly.minimum_rotated_rectangle
    xy = np.asarray(rect.exterior.coords)[:4]
    e1, e2 = xy[1] - xy[0], xy[2] - xy[1]
    long_, short = (e1, e2) if np.hypot(*e1) >= np.hypot(*e2) else (e2, e1)
    heading = float(np.rad2deg(np.arctan2(long_[0], -long_[1])) % 180.0)  # x = col, y = row
    return heading, float(np.hypot(*long_)), float(np.hypot(*short))


def _truck_slots(zone: PixelZone, rng, margin_px: float = 0.6) -> list[Slot]:
    """Parking places in blocks: rows of 8-16 trucks side by side (~5 m apart), rows ~20 m apart, lanes between
    blocks. Ordered block by block, row by row, so filling the first N gives compact, realistic groups."""
    heading, _, _ = long_axis_heading(zone.polygon)
    h = np.deg2rad(heading)
    along = np.array([-np.cos(h), np.sin(h)])  # (drow, dcol)
    across = np.array([np.sin(h), np.cos(h)])
    c = zone.polygon.centroid
    centre = np.array([c.y, c.x])
    inner = zone.polygon.buffer(-margin_px)
    if inner.is_empty:
        return []
    pitch_al, pitch_ac = rng.uniform(0.45, 0.55), rng.uniform(1.8, 2.2)
    block = int(rng.integers(8, 17))
    span = max(inner.bounds[2] - inner.bounds[0], inner.bounds[3] - inner.bounds[1])
    n_al = int(span / pitch_al) + 2
    n_ac = int(span / pitch_ac) + 2
    ii, jj = np.meshgrid(np.arange(-n_al, n_al + 1), np.arange(-n_ac, n_ac + 1), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    keep = (ii % (block + 2)) < block  # two empty places between blocks
    ii, jj = ii[keep], jj[keep]
    order = np.lexsort((ii, jj, ii // (block + 2)))  # block, then row, then place
    ii, jj = ii[order], jj[order]
    pts = centre[None] + along[None] * ii[:, None] * pitch_al + across[None] * jj[:, None] * pitch_ac
    inside = contains_xy(inner, pts[:, 1], pts[:, 0])
    slots = []
    for (r, c), j in zip(pts[inside], jj[inside], strict=True):
        face = (heading + 90.0 + (180.0 if j % 2 else 0.0)) % 360.0  # side by side, facing the aisle
        slots.append(Slot(float(r), float(c), face, zone.name, "truck"))
    return slots


# ---------------------------------------------------------------- terrain


def _terrain_labels(shape, rng, desert: bool) -> np.ndarray:
    h, w = shape
    cid = landcover.cover_id
    noise = fractal_noise(shape, rng, beta=3.0)
    if desert:
        lab = np.full(shape, cid("desert"))
        lab[noise > 0.7] = cid("gravel")
        lab[noise < -1.2] = cid("shrub")
        return lab
    # Mediterranean farmland: parcels of soil / winter crops / orchards / scrub
    lab = landcover.parcels(shape, rng, (15.0, 45.0), (4.0, 25.0),
                            ["soil", "red_soil", "vegetation", "vegetation", "shrub", "dry_grass"])
    lab[noise > 1.3] = cid("shrub")
    return lab


# ---------------------------------------------------------------- building a layout


def _aoi_geometry(grid: GridSpec, aoi: AOI) -> tuple[list[PixelZone], list[PixelRoad]]:
    zones = [PixelZone(z.name, z.kind, _to_pixels(grid, reproject_geometry(z.polygon, "EPSG:4326", grid.crs)))
             for z in aoi.zones]
    roads = []
    for r in aoi.roads:
        line = _to_pixels(grid, reproject_geometry(r.line, "EPSG:4326", grid.crs))
        xy = np.asarray(line.coords)
        roads.append(PixelRoad(r.name, xy[:, ::-1].copy(), 12.0, True))
    return zones, roads


def _synthetic_geometry(grid: GridSpec, rng) -> tuple[list[PixelZone], list[PixelRoad]]:
    """A random base for an arbitrary bbox: maybe a runway + aprons, a depot, a built area, roads."""
    h, w = grid.height, grid.width
    zones: list[PixelZone] = []
    roads: list[PixelRoad] = []
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    if min(h, w) > 120 and (min(h, w) > 250 or rng.random() < 0.8):  # big enough: always an airfield
        ang = rng.uniform(0, np.pi)
        length = min(rng.uniform(2400, 3600) / 10, 0.9 * max(h, w))
        d = np.array([np.cos(ang), np.sin(ang)])
        n = np.array([-d[1], d[0]])
        half = 2.5
        p0 = np.array([cx, cy]) - d * length / 2
        p1 = np.array([cx, cy]) + d * length / 2
        zones.append(PixelZone("runway", "runway", Polygon([p0 + n * half, p1 + n * half, p1 - n * half,
                                                            p0 - n * half])))
        for k in range(int(rng.integers(1, 4))):
            side = 1 if k % 2 == 0 else -1
            off = side * rng.uniform(12, 25)
            along = rng.uniform(-0.3, 0.3) * length
            al, ac = rng.uniform(40, 110), rng.uniform(12, 35)
            c = np.array([cx, cy]) + d * along + n * (off + side * ac / 2)
            zones.append(PixelZone(f"apron_{k}", "apron", Polygon([c + d * al / 2 + n * ac / 2,
                                                                   c - d * al / 2 + n * ac / 2,
                                                                   c - d * al / 2 - n * ac / 2,
                                                                   c + d * al / 2 - n * ac / 2])))
    if rng.random() < 0.8:
        vx, vy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        zones.append(PixelZone("depot", "vehicle_park", shapely_box(vx, vy, vx + rng.uniform(15, 40),
                                                                    vy + rng.uniform(10, 30))))
    if rng.random() < 0.5:
        bx, by = rng.uniform(0, 0.7) * w, rng.uniform(0, 0.7) * h
        zones.append(PixelZone("town", "built", shapely_box(bx, by, bx + rng.uniform(40, 0.4 * w),
                                                            by + rng.uniform(40, 0.4 * h))))
    for k in range(int(rng.integers(1, 4))):
        start = np.array([rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w])
        ang = rng.uniform(0, 2 * np.pi)
        pts = [start]
        for _ in range(6):
            ang += rng.normal(0, 0.25)
            pts.append(pts[-1] + np.array([-np.cos(ang), np.sin(ang)]) * rng.uniform(40, 120))
        roads.append(PixelRoad(f"road_{k}", np.array(pts), float(rng.choice([8.0, 10.0, 12.0, 16.0])), True))
    return zones, roads


def build_site(grid: GridSpec, aoi: AOI | None, terrain_seed: int) -> SiteLayout:
    """Render the empty site (terrain, zones, roads, buildings) and its parking slots."""
    rng = np.random.default_rng(derive_seed("site", terrain_seed))
    h, w = grid.height, grid.width
    from pipeline.georef import map_to_lonlat, pixel_to_map

    lon, lat = map_to_lonlat(grid.crs, *pixel_to_map(grid.transform, h / 2, w / 2))
    desert = (aoi is not None and aoi.country.lower() in ("libya", "egypt", "algeria", "chad", "niger", "mali")) or (
        aoi is None and rng.random() < 0.35)
    if aoi is not None:
        zones, roads = _aoi_geometry(grid, aoi)
    else:
        zones, roads = _synthetic_geometry(grid, rng)
    fields = (fractal_noise((h, w), rng, beta=1.3), fractal_noise((h, w), rng, beta=3.2),
              fractal_noise((h, w), rng, beta=2.6))
    labels = _terrain_labels((h, w), rng, desert)
    pal = landcover.palette(rng, jitter=0.06)
    surface = landcover.render_cover(labels, rng, pal=pal, fine=fields[0], coarse=fields[1], green=fields[2])
    for z in sorted(zones, key=lambda z: ZONE_ORDER.get(z.kind, 2)):
        cover = ZONE_COVER[z.kind]
        if z.kind == "vehicle_park" and rng.random() < 0.5:
            cover = "concrete"
        _blend_zone(surface, labels, z, cover, fields, pal)
    canvas = Canvas(surface)
    layout = SiteLayout(grid=grid, surface=surface, labels=labels, zones=zones, roads=[], lat=lat, lon=lon,
                        desert=desert)
    _paint_static(canvas, layout, zones, roads, rng, pal)
    layout.vegetation_mask = labels == landcover.cover_id("vegetation")
    return layout


def _paint_static(canvas: Canvas, layout: SiteLayout, zones, roads, rng, pal) -> None:
    """Taxiways, roads (egress + local), buildings in built zones, hangars by aprons, parking slots."""
    h, w = layout.labels.shape
    grid_m = canvas.pixel_size
    runways = [z for z in zones if z.kind == "runway"]
    shadow_dir, sun_elev = 330.0, 35.0  # static buildings: shadows baked for a winter late morning
    concrete = pal[landcover.cover_id("concrete")]
    asphalt = pal[landcover.cover_id("asphalt")]
    for z in zones:
        if z.kind == "apron" and runways:
            c = z.polygon.centroid
            rw = min(runways, key=lambda r: r.polygon.distance(c))
            p = rw.polygon.exterior.interpolate(rw.polygon.exterior.project(c))
            painters.paint_polyline(canvas, np.array([[c.y, c.x], [p.y, p.x]]), 23.0, concrete * 0.95)
    # local roads (not egress): straight-ish lines across the grid, cut where they would cross water or the base
    keep_out = unary_union([z.polygon.buffer(2.0) for z in zones
                            if z.kind in ("water", "runway", "apron", "vehicle_park", "pier")])
    keep_out_prep = prep(keep_out) if not keep_out.is_empty else None
    local: list[PixelRoad] = []
    for k in range(int(rng.integers(2, 5))):
        ang = rng.uniform(0, np.pi)
        centre = rng.uniform(0.1, 0.9, 2) * np.array([h, w])
        d = np.array([-np.cos(ang), np.sin(ang)])
        ext = np.hypot(h, w)
        pts = np.array([centre + d * t for t in np.linspace(-ext, ext, 24)])
        pts += rng.normal(0, 1.0, pts.shape)
        width = float(rng.choice([6.0, 7.0, 9.0]))
        line = LineString(pts[:, ::-1])
        pieces = line.difference(keep_out) if keep_out_prep is not None else line
        for n, piece in enumerate(getattr(pieces, "geoms", [pieces])):
            if piece.is_empty or piece.length < 20:
                continue
            local.append(PixelRoad(f"local_{k}_{n}", np.asarray(piece.coords)[:, ::-1].copy(), width, False))
    for r in local:
        painters.paint_polyline(canvas, r.points, r.width_m, asphalt * rng.uniform(0.9, 1.3))
    for r in roads:
        painters.paint_polyline(canvas, r.points, r.width_m, asphalt)
    layout.roads = list(roads) + local
    # towns: a street grid and flat concrete roofs; scattered farm buildings elsewhere (never in water / on the base)
    for z in zones:
        if z.kind != "built":
            continue
        paint_town(canvas, z, rng, asphalt, shadow_dir, sun_elev)
    for _ in range(int(h * w / 4000)):
        r, c = rng.uniform(0, h), rng.uniform(0, w)
        if keep_out_prep is not None and keep_out_prep.contains(Point(c, r)):
            continue
        painters.paint_box(canvas, r, c, rng.uniform(8, 30), rng.uniform(8, 20), rng.uniform(0, 180), _roof(rng),
                           height_m=rng.uniform(3, 8), shadow_dir_deg=shadow_dir, sun_elev_deg=sun_elev)
    # aprons: concrete parking strips with taxi lanes between (aircraft slots on them), hangars alongside
    for z in zones:
        if z.kind == "apron":
            heading, length, width = long_axis_heading(z.polygon)
            layout.aircraft_slots += _apron_strips(canvas, z, heading, width, rng, concrete)
            c = z.polygon.centroid
            hd = np.deg2rad(heading)
            across = np.array([np.sin(hd), np.cos(hd)])
            for k in range(int(rng.integers(1, 4))):
                off = across * (width / 2 + 5) * (1 if k % 2 else -1)
                along = np.array([-np.cos(hd), np.sin(hd)]) * rng.uniform(-0.4, 0.4) * length
                painters.paint_box(canvas, c.y + off[0] + along[0], c.x + off[1] + along[1], rng.uniform(30, 70),
                                   rng.uniform(25, 50), heading, _roof(rng, metal=True), height_m=12,
                                   shadow_dir_deg=shadow_dir, sun_elev_deg=sun_elev)
        elif z.kind == "runway":
            heading, length, width = long_axis_heading(z.polygon)
            c = z.polygon.centroid
            painters.paint_runway_markings(canvas, c.y, c.x, heading, length * grid_m, width * grid_m, rng)
            hd = np.deg2rad(heading)
            d = np.array([-np.cos(hd), np.sin(hd)])
            for sign in (1, -1):
                p = np.array([c.y, c.x]) + d * sign * (length / 2 - 12)  # past the threshold keys
                layout.runway_ends.append((float(p[0]), float(p[1]), float((heading + (180 if sign > 0 else 0)) % 360),
                                           z.name))
        elif z.kind in ("vehicle_park", "pier"):
            layout.vehicle_slots += _truck_slots(z, rng)


def _apron_strips(canvas: Canvas, z: PixelZone, heading: float, width_px: float, rng, concrete) -> list[Slot]:
    """Parking strips along the apron's long axis (large-aircraft and fighter rows) with taxi lanes between."""
    hd = np.deg2rad(heading)
    along = np.array([-np.cos(hd), np.sin(hd)])
    across = np.array([np.sin(hd), np.cos(hd)])
    c = z.polygon.centroid
    centre = np.array([c.y, c.x])
    slots: list[Slot] = []
    pos = -width_px / 2
    k = 0
    while pos < width_px / 2:
        size = "large" if k % 3 != 2 else "small"
        strip_w = (9.0 if size == "large" else 4.5) * rng.uniform(0.95, 1.1)
        lane_w = rng.uniform(2.5, 4.0)
        mid = pos + strip_w / 2
        if pos + strip_w > width_px / 2:
            break
        sc = centre + across * mid
        strip = Polygon([tuple((sc + along * 1e4 * s1 + across * strip_w / 2 * s2)[::-1])
                         for s1, s2 in ((1, 1), (-1, 1), (-1, -1), (1, -1))]).intersection(z.polygon)
        lane_c = centre + across * (pos + strip_w + lane_w / 2)
        lane = Polygon([tuple((lane_c + along * 1e4 * s1 + across * lane_w / 2 * s2)[::-1])
                        for s1, s2 in ((1, 1), (-1, 1), (-1, -1), (1, -1))]).intersection(z.polygon)
        refl = concrete * rng.uniform(0.75, 0.95)
        for part_poly in (strip, lane):
            if part_poly.is_empty or part_poly.geom_type != "Polygon":
                continue
            for part in _convex_parts(part_poly):
                got = coverage([part], 3, canvas.shape)
                if got is not None:
                    cov, r0, c0 = got
                    win = canvas.bands[:, r0:r0 + cov.shape[0], c0:c0 + cov.shape[1]]
                    win *= 1 - cov
                    win += cov * (refl * rng.uniform(0.97, 1.03, 4)).astype(np.float32)[:, None, None]
        sub = PixelZone(z.name, "apron", strip) if strip.geom_type == "Polygon" and not strip.is_empty else None
        if sub is not None:
            pitch = 8.5 if size == "large" else 3.6
            for s in _line_slots(sub, centre + across * mid, along, pitch, size):
                s.heading = (heading + (90.0 if k % 2 == 0 else 270.0)) % 360.0  # noses to the taxi lane
                slots.append(s)
        pos += strip_w + lane_w
        k += 1
    return slots


def _line_slots(zone: PixelZone, point: np.ndarray, along: np.ndarray, pitch: float, size: str) -> list[Slot]:
    inner = prep(zone.polygon.buffer(-pitch * 0.35))
    out = []
    for i in range(-400, 401):
        p = point + along * i * pitch
        if inner.contains(Point(p[1], p[0])):
            out.append(Slot(float(p[0]), float(p[1]), 0.0, zone.name, size))
    return out


def paint_town(canvas: Canvas, z: PixelZone, rng, asphalt, shadow_dir: float, sun_elev: float,
               max_buildings: int = 1200) -> None:
    """Blocks between streets, densely built with flat roofs (mostly concrete-grey, some bright or tiled)."""
    minx, miny, maxx, maxy = z.polygon.bounds
    inside = prep(z.polygon)
    ang = rng.uniform(0, 90)
    block = rng.uniform(8, 14)  # pixels between streets
    h = np.deg2rad(ang)
    u, v = np.array([-np.cos(h), np.sin(h)]), np.array([np.sin(h), np.cos(h)])
    centre = np.array([(miny + maxy) / 2, (minx + maxx) / 2])
    half = np.hypot(maxx - minx, maxy - miny) / 2
    for axis, other in ((u, v), (v, u)):
        for k in np.arange(-half, half, block):
            pts = np.array([centre + other * k + axis * t for t in np.linspace(-half, half, 16)])
            line = LineString(pts[:, ::-1]).intersection(z.polygon)
            for piece in getattr(line, "geoms", [line]):
                if not piece.is_empty and piece.length > 2:
                    painters.paint_polyline(canvas, np.asarray(piece.coords)[:, ::-1], float(rng.uniform(8, 14)),
                                            asphalt * rng.uniform(1.0, 1.4), ss=2)
    n = int(min(z.polygon.area / 9.0, max_buildings))
    for _ in range(n):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if not inside.contains(Point(x, y)):
            continue
        k = rng.random()
        if k < 0.75:
            roof = np.array([0.15, 0.165, 0.18, 0.21]) * rng.uniform(0.75, 1.25)
        elif k < 0.88:
            roof = _roof(rng, metal=True)
        else:
            roof = np.array([0.09, 0.10, 0.17, 0.24]) * rng.uniform(0.8, 1.2)
        painters.paint_box(canvas, y, x, rng.uniform(10, 35), rng.uniform(10, 25), ang + rng.normal(0, 3), roof,
                           height_m=rng.uniform(6, 30), shadow_dir_deg=shadow_dir, sun_elev_deg=sun_elev, ss=3)


def _roof(rng, metal: bool = False) -> np.ndarray:
    k = rng.random()
    if metal or k < 0.3:
        return np.array([0.28, 0.30, 0.32, 0.35]) * rng.uniform(0.7, 1.5)
    if k < 0.55:
        return np.array([0.09, 0.10, 0.17, 0.24]) * rng.uniform(0.8, 1.2)
    return np.array([0.13, 0.14, 0.15, 0.18]) * rng.uniform(0.7, 1.4)


@lru_cache(maxsize=8)
def _cached_site(crs: str, transform: tuple, width: int, height: int, aoi: AOI | None, terrain_seed: int):
    grid = GridSpec(crs=crs, transform=Affine(*transform[:6]), width=width, height=height)
    return build_site(grid, aoi, terrain_seed)


def site_for(grid: GridSpec, aoi: AOI | None, terrain_seed: int) -> SiteLayout:
    """The cached static layout (callers must copy ``surface`` before painting on it)."""
    return _cached_site(grid.crs, tuple(grid.transform), grid.width, grid.height, aoi, terrain_seed)


def road_length_px(points: np.ndarray) -> float:
    return float(np.sum(np.hypot(*np.diff(points, axis=0).T)))


def line_to_pixels(grid: GridSpec, line_map: LineString) -> np.ndarray:
    xy = np.asarray(_to_pixels(grid, line_map).coords)
    return xy[:, ::-1].copy()
