"""Detections + columns + valid mask of one scene -> an Observation: counts per class and per zone, and how
much of each zone was cloud-free. The diff stage reads only Observations, so clouds are judged here once:
a zone's valid fraction travels with its counts, and a mostly clouded zone is "not observed", never "empty".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from rasterio.features import geometry_mask
from shapely.geometry import Point

from pipeline.store import detection_id
from pipeline.types import AOI, Column, Detection, Observation, Scene, reproject_geometry
from pipeline.vessels import VESSEL

PARKED_VEHICLE = "parked_vehicle"
ROAD_PREFIX = "road:"  # zone_counts keys of egress roads (columns and their vehicles by direction)
MOVING_VEHICLE = "moving_vehicle"
CONFIDENT_LARGE_AIRCRAFT = "large_aircraft_confident"  # large aircraft scoring >= the surge's min_score


def prepare_detections(detections: list[Detection], aoi: AOI, crs: str, acquisition_id: str,
                       model: str, berth_m: float = 0.0) -> list[Detection]:
    """Give each detection its stable id and the AOI zone it lies in (x/y in ``crs``). A vessel within ``berth_m``
    of a pier zone is moored there and counted in that pier's zone (it floats beside the pier, not on it)."""
    zones = sorted(((z.name, reproject_geometry(z.polygon, "EPSG:4326", crs)) for z in aoi.zones),
                   key=lambda item: item[1].area)  # nested zones (a pier in the harbour): the innermost wins
    pier_names = {z.name for z in aoi.zones if z.kind == "pier"}
    piers = [(name, poly) for name, poly in zones if name in pier_names]
    out = []
    for n, d in enumerate(detections):
        p = Point(d.x, d.y)
        zone = next((name for name, poly in zones if poly.covers(p)), None)
        if d.cls == VESSEL and piers and berth_m > 0:
            name, distance = min(((name, poly.distance(p)) for name, poly in piers), key=lambda item: item[1])
            zone = name if distance <= berth_m else zone
        out.append(replace(d, id=detection_id(acquisition_id, model, n), zone=zone))
    return out


BERTH_M = 40.0
"""A pier zone is seen when its berths are: the water this far round it, where moored vessels lie."""


def zone_valid_fractions(aoi: AOI, scene: Scene) -> dict[str, float]:
    """Cloud-free fraction of each zone's pixels (0 for a zone outside the scene); a pier's counts its berths."""
    out: dict[str, float] = {}
    for z in aoi.zones:
        poly = reproject_geometry(z.polygon, "EPSG:4326", scene.crs)
        if z.kind == "pier":
            poly = poly.buffer(BERTH_M * _metres_to_crs(scene))
        inside = ~geometry_mask([poly], out_shape=(scene.height, scene.width), transform=scene.transform,
                                all_touched=False)
        if not inside.any():  # a zone thinner than a pixel: use the pixels it touches
            inside = ~geometry_mask([poly], out_shape=(scene.height, scene.width), transform=scene.transform,
                                    all_touched=True)
        out[z.name] = round(float(scene.valid[inside].mean()), 4) if inside.any() else 0.0
    return out


def _metres_to_crs(scene: Scene) -> float:
    """CRS units per metre of the scene's grid (1 in UTM; Web Mercator's metres are taken as ground metres)."""
    from pyproj import CRS

    crs = CRS.from_user_input(scene.crs)
    if not crs.is_projected:
        return 1.0 / 111_000.0
    return 1.0 / crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0


def _vehicle_key(d: Detection) -> str:
    return MOVING_VEHICLE if d.moving else PARKED_VEHICLE


def observe(aoi: AOI, scene: Scene, detections: list[Detection], columns: list[Column], model: str,
            confident_score: float = 0.0) -> Observation:
    """Summarise one scene at one AOI. ``detections`` come from :func:`prepare_detections` (ids and zones set).

    counts: every class, plus parked/moving vehicles, large aircraft scoring >= ``confident_score``
    (``large_aircraft_confident``; always written, and in each zone beside its large-aircraft count, so that an
    observation made before this count existed can be told from one without confident aircraft), and per-direction
    column and vehicle totals.
    zone_counts: zone -> class -> count, with vehicles split into ``parked_vehicle`` / ``moving_vehicle``; and
    ``road:<name>`` -> columns/vehicles per direction on each egress road.
    """
    counts, zone_counts = _counts(aoi, detections, columns, confident_score)
    return Observation(
        aoi=aoi.name,
        acquisition=scene.acquisition,
        counts=counts,
        zone_counts=zone_counts,
        zone_valid=zone_valid_fractions(aoi, scene),
        columns=tuple(columns),
        valid_fraction=round(float(np.mean(scene.valid)) if scene.valid.size else 0.0, 4),
        model=model,
        detection_ids=tuple(d.id for d in detections if d.id),
    )


def recount(aoi: AOI, obs: Observation, detections: list[Detection], confident_score: float) -> Observation:
    """``obs`` counted again from its stored detections and columns with another ``confident_score`` (the cloud
    cover it recorded is kept: no scene is read). An all-cloud observation stays as it is: nothing was seen."""
    if obs.valid_fraction <= 0 and not obs.counts:
        return obs
    counts, zone_counts = _counts(aoi, detections, list(obs.columns), confident_score)
    return replace(obs, counts=counts, zone_counts=zone_counts)


def _counts(aoi: AOI, detections: list[Detection], columns: list[Column],
            confident_score: float) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """(counts, zone_counts) of :func:`observe`."""
    counts: dict[str, int] = {CONFIDENT_LARGE_AIRCRAFT: 0}
    zone_counts: dict[str, dict[str, int]] = {z.name: {} for z in aoi.zones}
    for d in detections:
        counts[d.cls] = counts.get(d.cls, 0) + 1
        key = _vehicle_key(d) if d.cls == "vehicle" else d.cls
        if d.cls == "vehicle":
            counts[key] = counts.get(key, 0) + 1
        in_zone = d.zone is not None and d.zone in zone_counts
        if in_zone:
            zone_counts[d.zone][key] = zone_counts[d.zone].get(key, 0) + 1
        if d.cls == "large_aircraft":
            confident = int(d.score is None or d.score >= confident_score)
            counts[CONFIDENT_LARGE_AIRCRAFT] += confident
            if in_zone:
                zone = zone_counts[d.zone]
                zone[CONFIDENT_LARGE_AIRCRAFT] = zone.get(CONFIDENT_LARGE_AIRCRAFT, 0) + confident
    roads = {r.name: {} for r in aoi.roads}
    for direction in ("outbound", "inbound", "unknown"):
        chosen = [c for c in columns if c.direction == direction]
        counts[f"columns_{direction}"] = len(chosen)
        counts[f"vehicles_{direction}"] = int(sum(c.vehicles for c in chosen))
        for c in chosen:
            if c.road in roads:
                per_road = roads[c.road]
                per_road[f"columns_{direction}"] = per_road.get(f"columns_{direction}", 0) + 1
                per_road[f"vehicles_{direction}"] = per_road.get(f"vehicles_{direction}", 0) + c.vehicles
    return counts, {**zone_counts, **{f"{ROAD_PREFIX}{name}": c for name, c in roads.items()}}


def confident_large_aircraft(obs: Observation) -> int | None:
    """The observation's count of confident large aircraft (what surges are judged on), or None for an observation
    stored before that count existed."""
    value = obs.counts.get(CONFIDENT_LARGE_AIRCRAFT)
    return None if value is None else int(value)


def not_observed(aoi: AOI, scene: Scene, model: str) -> Observation:
    """The observation of a scene nothing could be seen in (all cloud): every zone unobserved."""
    return Observation(aoi=aoi.name, acquisition=scene.acquisition, counts={},
                       zone_counts={z.name: {} for z in aoi.zones}, zone_valid={z.name: 0.0 for z in aoi.zones},
                       columns=(), valid_fraction=0.0, model=model)
