"""Group moving-vehicle detections into columns and judge their direction relative to the base.

A column is a chain of moving vehicles with consistent heading, each within ``max_gap_m`` of the next and
lined up along their direction of travel. On an egress road the road is the line of travel: trucks on it heading
roughly along it the same way link even when their own headings scatter (``road_axis_deg``). Direction is judged
along the AOI's egress roads (whose first vertex is at the base): travelling away from that vertex is outbound.
Off-road, a column clearly moving radially away from (towards) the base's centre is outbound (inbound); anything
else is unknown. With ``contested_ratio`` set (off by default), a road column whose stretch of road also carries
confident trucks heading the other way, weighing that fraction of the column's own, has its direction left unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from shapely.geometry import LineString, Point
from shapely.ops import unary_union

from pipeline.config import ColumnsConfig
from pipeline.georef import map_to_lonlat
from pipeline.types import AOI, Column, Detection

_ALIGN_COS = math.cos(math.radians(50))  # how far off the heading axis the next vehicle may sit
_DIRECTION_COS = 0.5  # |cos| between column heading and road tangent needed to call a direction
_OFFROAD_MIN_DISTANCE_M = 300.0


def heading_vector(heading_deg: float) -> np.ndarray:
    """Unit (east, north) vector of a compass heading (0 = north, clockwise)."""
    h = math.radians(heading_deg)
    return np.array([math.sin(h), math.cos(h)])


def heading_of(vec: np.ndarray) -> float:
    return math.degrees(math.atan2(vec[0], vec[1])) % 360.0


def angle_diff(a: float, b: float) -> float:
    """Smallest absolute difference between two compass headings (0-180)."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


@dataclass(frozen=True)
class _Vehicle:
    key: str
    xy: np.ndarray
    heading: float
    speed: float | None = None  # estimated (m/s); None = unknown
    score: float = 1.0
    spot: _RoadSpot | None = None  # where on an egress road it is, if on one
    inherited: bool = False  # heading taken from the truck that vouched for it (a faint candidate): no vote


@dataclass(frozen=True)
class _RoadSpot:
    """A vehicle's place on an egress road: which road, and the road's direction away from the base there."""

    road: int
    tangent: np.ndarray  # unit (east, north)


def _nearest_road(xy: np.ndarray, lines: list[LineString]) -> tuple[int, float]:
    """(index, distance in m) of the egress road nearest to a point."""
    dists = [line.distance(Point(xy)) for line in lines]
    k = int(np.argmin(dists))
    return k, dists[k]


def _spot(xy: np.ndarray, road: int, lines: list[LineString]) -> _RoadSpot:
    line = lines[road]
    return _RoadSpot(road, _tangent(line, line.project(Point(xy))))


def _road_spots(vehicles: list[_Vehicle], lines: list[LineString], cfg: ColumnsConfig) -> list[_Vehicle]:
    """The vehicles with the egress road (``lines``, in the AOI's UTM CRS) each lies on (the nearest within
    ``road_buffer_m``), if any."""
    if cfg.road_axis_deg <= 0 or not lines:
        return vehicles
    out = []
    for v in vehicles:
        k, dist = _nearest_road(v.xy, lines)
        out.append(replace(v, spot=_spot(v.xy, k, lines)) if dist <= cfg.road_buffer_m else v)
    return out


def _tangent(line: LineString, s: float) -> np.ndarray:
    a = line.interpolate(max(s - 25.0, 0.0))
    b = line.interpolate(min(s + 25.0, line.length))
    t = np.array([b.x - a.x, b.y - a.y])
    return t / max(float(np.linalg.norm(t)), 1e-9)


def _moving_vehicles(detections: list[Detection], inherited: frozenset[str] = frozenset(),
                     ignored: frozenset[str] = frozenset()) -> list[_Vehicle]:
    out = []
    for i, d in enumerate(detections):
        if d.cls != "vehicle" or d.moving is False or d.heading_deg is None or d.id in ignored:
            continue
        out.append(_Vehicle(key=d.id or str(i), xy=np.array([d.x, d.y]), heading=float(d.heading_deg),
                            speed=d.speed_mps, score=float(d.score) if d.score is not None else 1.0,
                            inherited=d.id in inherited))
    return out


def _linked(a: _Vehicle, b: _Vehicle, cfg: ColumnsConfig) -> bool:
    return _linked_by_heading(a, b, cfg) or _linked_on_road(a, b, cfg)


def _linked_on_road(a: _Vehicle, b: _Vehicle, cfg: ColumnsConfig) -> bool:
    """Two trucks on the same egress road within ``max_gap_m``, each heading within ``road_axis_deg`` of the road's
    axis and the same way along it (or one slow enough to be read backwards). Why: at 6-15 m/s the band offset is
    one or two pixels and single headings scatter by 40-50 degrees, which breaks a chain built on heading agreement
    alone; the road says where the next truck of a column is."""
    if a.spot is None or b.spot is None or a.spot.road != b.spot.road:
        return False
    if float(np.hypot(*(b.xy - a.xy))) > cfg.max_gap_m:
        return False
    limit = math.cos(math.radians(cfg.road_axis_deg))
    ca = float(heading_vector(a.heading) @ a.spot.tangent)
    cb = float(heading_vector(b.heading) @ b.spot.tangent)
    if abs(ca) < limit or abs(cb) < limit:
        return False
    return (ca > 0) == (cb > 0) or _slow(a, b, cfg)


def _linked_by_heading(a: _Vehicle, b: _Vehicle, cfg: ColumnsConfig) -> bool:
    delta = b.xy - a.xy
    dist = float(np.hypot(*delta))
    if dist == 0 or dist > cfg.max_gap_m:
        return False
    diff = angle_diff(a.heading, b.heading)
    reversed_ = diff >= 180.0 - cfg.heading_tolerance_deg and _slow(a, b, cfg)
    if diff > cfg.heading_tolerance_deg and not reversed_:
        return False
    axis = heading_vector(a.heading) + (-1.0 if reversed_ else 1.0) * heading_vector(b.heading)
    axis /= max(np.linalg.norm(axis), 1e-9)
    return abs(float(delta @ axis)) / dist >= _ALIGN_COS


def _components(vehicles: list[_Vehicle], cfg: ColumnsConfig) -> list[list[int]]:
    parent = list(range(len(vehicles)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(vehicles)):
        for j in range(i + 1, len(vehicles)):
            if _linked(vehicles[i], vehicles[j], cfg):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(vehicles)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: min(g))


def _slow(a: _Vehicle, b: _Vehicle, cfg: ColumnsConfig) -> bool:
    """Whether one of two trucks is slow enough that its direction of travel may be read backwards: under
    ``flip_speed_mps`` the B02->B04 offset is about a pixel and the detector sometimes reverses the heading."""
    speeds = [v.speed for v in (a, b) if v.speed is not None]
    return bool(speeds) and min(speeds) < cfg.flip_speed_mps


def _mean_heading(members: list[_Vehicle], cfg: ColumnsConfig) -> float:
    """The column's heading: its axis from the members' headings taken modulo 180 (doubled angles), its direction
    from their vote weighted by score x speed, so one truck read backwards cannot turn the column round. Faint
    candidates do not vote: each repeats the heading of the truck that vouched for it, and a truck read backwards
    would otherwise outvote the column through the candidates it admitted."""
    if not cfg.candidate_votes:
        members = [v for v in members if not v.inherited] or members
    doubled = np.deg2rad([2.0 * v.heading for v in members])
    weights = np.array([v.score for v in members])
    axis = 0.5 * np.arctan2(np.sum(weights * np.sin(doubled)), np.sum(weights * np.cos(doubled)))
    axis_heading = float(np.rad2deg(axis)) % 360.0
    vote = sum(v.score * (v.speed if v.speed is not None else 1.0) * np.cos(np.deg2rad(v.heading - axis_heading))
               for v in members)
    return axis_heading if vote >= 0 else (axis_heading + 180.0) % 360.0


def _road_direction(aoi: AOI, lines: list[LineString], points: np.ndarray, heading: float, cfg: ColumnsConfig):
    """(road name, direction) for the egress road most members lie on, or (None, None); ``lines`` are the AOI's
    roads in its UTM CRS, in order."""
    best = None
    for road, line in zip(aoi.roads, lines, strict=True):
        dists = np.array([line.distance(Point(p)) for p in points])
        on_road = dists <= cfg.road_buffer_m
        if on_road.mean() >= 0.5:
            score = float(np.median(dists))
            if best is None or score < best[0]:
                best = (score, road.name, line)
    if best is None:
        return None, None
    _, name, line = best
    tangent = _tangent(line, line.project(Point(points.mean(axis=0))))
    cos = float(heading_vector(heading) @ tangent)
    if cos >= _DIRECTION_COS:
        return name, "outbound"
    if cos <= -_DIRECTION_COS:
        return name, "inbound"
    return name, "unknown"


def _contested(members: list[_Vehicle], vehicles: list[_Vehicle], road: int, heading: float,
               cfg: ColumnsConfig) -> bool:
    """Whether confident trucks heading the other way along the column's road, within ``max_gap_m`` of a member,
    weigh at least ``contested_ratio`` of the members that agree with the column (by score; faint candidates have
    no vote). Not by speed as in the direction vote: a fast local truck passing a slow column is as real as any
    of its trucks. ``vehicles``: the members (those read backwards count against) and the trucks in no column;
    two columns passing each other are netted by the diff stage instead. Needs road spots (``road_axis_deg`` > 0).

    Why: a column is rarely read backwards whole. At Al Khadim two dark trucks of an arriving column, read
    backwards by the heading network, chained with four faint peaks into an "outbound" column beside a third truck
    of it read the right way; at Khmeimim three slow trucks of an arriving column read backwards joined one leaving
    truck, with two of the arriving column read right beside them. Each made a false withdrawal."""
    if cfg.contested_ratio <= 0:
        return False
    axis = heading_vector(heading)
    limit = math.cos(math.radians(cfg.road_axis_deg))
    voters = [v for v in members if not v.inherited]
    support = sum(v.score for v in voters if float(heading_vector(v.heading) @ axis) > 0)
    points = np.array([v.xy for v in members])
    against = 0.0
    for v in vehicles:
        if v.inherited or v.spot is None or v.spot.road != road:
            continue
        if float(np.min(np.hypot(*(points - v.xy).T))) > cfg.max_gap_m:
            continue
        sign = float(axis @ v.spot.tangent)  # the column's way along the road here
        along = float(heading_vector(v.heading) @ v.spot.tangent)
        if abs(along) >= limit and along * sign < 0:
            against += v.score
    return support > 0 and against >= cfg.contested_ratio * support


def _base_centre(aoi: AOI) -> np.ndarray:
    parts = [z.polygon for z in aoi.zones if z.kind not in ("water", "vegetation", "other")]
    geom = aoi.to_utm(unary_union(parts) if parts else aoi.outline)
    c = geom.centroid
    return np.array([c.x, c.y])


def _offroad_direction(aoi: AOI, points: np.ndarray, heading: float) -> str:
    radial = points.mean(axis=0) - _base_centre(aoi)
    dist = float(np.linalg.norm(radial))
    if dist < _OFFROAD_MIN_DISTANCE_M:
        return "unknown"
    cos = float(heading_vector(heading) @ (radial / dist))
    if cos >= 0.7:
        return "outbound"
    if cos <= -0.7:
        return "inbound"
    return "unknown"


def group_columns(detections: list[Detection], aoi: AOI, cfg: ColumnsConfig,
                  inherited: frozenset[str] = frozenset(), unsure: frozenset[str] = frozenset()) -> list[Column]:
    """Columns from detections whose x/y are in the AOI's UTM CRS; members refer to detection ids. ``inherited``:
    ids of admitted candidates (``admit_candidates``), whose heading is their column's and so gets no vote.
    ``unsure``: ids of detections whose heading is not trusted and that no column admitted: left out."""
    lines = [aoi.to_utm(r.line) for r in aoi.roads]  # projected once for every column
    vehicles = _road_spots(_moving_vehicles(detections, inherited, unsure), lines, cfg)
    road_index = {r.name: k for k, r in enumerate(aoi.roads)}
    crs = aoi.crs.to_string()
    columns: list[Column] = []
    groups = [g for g in _components(vehicles, cfg) if len(g) >= cfg.min_vehicles]
    free = set(range(len(vehicles))).difference(*groups)  # trucks in no column
    for group in groups:
        members = [vehicles[i] for i in group]
        heading = _mean_heading(members, cfg)
        axis = heading_vector(heading)
        members.sort(key=lambda v: float(v.xy @ axis))
        points = np.array([v.xy for v in members])
        road, direction = _road_direction(aoi, lines, points, heading, cfg)
        if direction in ("outbound", "inbound") and _contested(
                members, [vehicles[k] for k in sorted(set(group) | free)], road_index[road], heading, cfg):
            direction = "unknown"
        if direction is None:
            direction = _offroad_direction(aoi, points, heading)
        line_map = LineString(points)
        line_ll = LineString([map_to_lonlat(crs, float(x), float(y)) for x, y in points])
        keys = tuple(v.key for v in members)
        columns.append(
            Column(
                id=f"col-{keys[0]}",
                members=keys,
                line=line_ll,
                length_m=float(line_map.length),
                heading_deg=round(heading, 1),
                direction=direction,
                vehicles=len(members),
                road=road,
            )
        )
    return columns


def admit_candidates(detections: list[Detection], candidates: list[Detection], aoi: AOI,
                     cfg: ColumnsConfig) -> dict[int, float]:
    """Faint vehicle peaks that extend a column: index into ``candidates`` -> the heading they inherit.

    Why: a military truck in olive paint changes a 10 m pixel by about the noise level, so a faint peak alone is
    clutter, but a faint peak one truck-gap ahead of or behind a confident moving truck, on the line of its travel
    and on an egress road, is almost always the next truck of the column (hysteresis along the column; Canny's
    rule). On the road, the line of travel is the road's own (on that road only): a slow truck's heading can be
    40 degrees off. The heading of a faint peak is unreliable, so an admitted one takes the heading of the truck
    that vouches for it, and can in turn vouch for the next. Everything is in the AOI's UTM CRS.
    """
    if not candidates or cfg.candidate_gap_m <= 0:
        return {}
    roads = [aoi.to_utm(r.line) for r in aoi.roads]
    if not roads:
        return {}
    axis_cos = math.cos(math.radians(cfg.candidate_axis_deg))
    pts = np.array([[c.x, c.y] for c in candidates])
    nearest = [_nearest_road(p, roads) for p in pts]
    road_of = np.array([k for k, _ in nearest])
    on_road = np.array([dist <= cfg.road_buffer_m for _, dist in nearest])
    follow_road = cfg.road_axis_deg > 0
    vehicles = _road_spots(_moving_vehicles(detections), roads, cfg)
    frontier = [(v.xy, v.heading, v.spot) for v in vehicles]
    admitted: dict[int, float] = {}
    while frontier:
        xy, heading, spot = frontier.pop()
        # the line of travel: the road's where the truck is on one (its own heading scatters), else its heading
        axis = spot.tangent if spot is not None else heading_vector(heading)
        delta = pts - xy
        dist = np.hypot(delta[:, 0], delta[:, 1])
        ok = on_road & (dist > 0) & (dist <= cfg.candidate_gap_m)
        if spot is not None:
            ok &= road_of == spot.road
        ok &= np.abs(delta @ axis) >= axis_cos * np.maximum(dist, 1e-9)
        for i in np.flatnonzero(ok):
            if int(i) not in admitted and candidates[i].cls == "vehicle":
                admitted[int(i)] = heading
                frontier.append((pts[i], heading, _spot(pts[i], int(road_of[i]), roads) if follow_road else None))
    return _with_two_confident(vehicles, admitted, pts, cfg, [c.heading_deg for c in candidates])


def _with_two_confident(vehicles: list[_Vehicle], admitted: dict[int, float], pts: np.ndarray,
                        cfg: ColumnsConfig, own_headings: list[float | None]) -> dict[int, float]:
    """Keep admitted candidates only in chains holding at least two confident trucks: one truck plus clutter
    along a road is not a column. With ``single_truck_candidates`` N > 0, one confident truck also suffices when N
    of the chain's candidates read its direction on their own (``own_headings``, by candidate index)."""
    if not admitted:
        return admitted
    keys = sorted(admitted)
    chain = vehicles + [_Vehicle(key=f"cand-{i}", xy=pts[i], heading=admitted[i]) for i in keys]
    kept: dict[int, float] = {}
    for group in _components(chain, cfg):
        sure = [g for g in group if g < len(vehicles)]
        agreeing = 0
        if len(sure) == 1 and cfg.single_truck_candidates > 0:
            truck = vehicles[sure[0]].heading
            agreeing = sum(1 for g in group if g >= len(vehicles)
                           and (own := own_headings[keys[g - len(vehicles)]]) is not None
                           and angle_diff(own, truck) <= cfg.heading_tolerance_deg)
        if len(sure) >= 2 or (sure and cfg.single_truck_candidates > 0 and agreeing >= cfg.single_truck_candidates):
            for g in group:
                if g >= len(vehicles):
                    kept[keys[g - len(vehicles)]] = admitted[keys[g - len(vehicles)]]
    return kept
