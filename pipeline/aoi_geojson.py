"""AOI files to and from GeoJSON, so that analysts draw and edit AOIs in QGIS instead of typing coordinates.

One FeatureCollection in lon/lat (RFC 7946) holds one AOI. Each feature says what it is in its ``role`` property:

- ``outline`` (one Polygon): the AOI; properties ``name``, ``title``, ``country``;
- ``zone`` (Polygons): properties ``name`` and ``kind`` (runway, apron, vehicle_park, pier, water, built,
  vegetation, other), which decide what the diff counts where;
- ``road`` (LineStrings): egress roads, properties ``name``; the FIRST vertex is at the base, so "outbound" means
  away from it.

``aoi_to_geojson`` writes that layout from an AOI YAML file; ``aoi_from_geojson`` reads it back (QGIS's
single-part MultiPolygons, Z coordinates and closed rings included), checks it with the same rules as the YAML
(``AOIFile``) plus the road direction, and ``aoi_yaml`` renders the YAML that ``configs/aois/<name>.yaml`` holds.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from shapely.geometry import LineString, Point, Polygon, mapping

from pipeline.atomic import write_text_atomic
from pipeline.config import AOIFile, aoi_dir, aoi_path, load_aoi_file, read_aoi_file
from pipeline.errors import ConfigError
from pipeline.types import AOI

ROLES = ("outline", "zone", "road")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
"""AOI names become file names and store keys: letters, digits, '_' and '-'."""
LONLAT_CRS = {"urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:EPSG::4326", "EPSG:4326", "CRS84"}
DECIMALS = 6
"""Coordinates are kept to 1e-6 degree (about 0.1 m): QGIS digitises with many more digits than that means."""


def aoi_to_geojson(aoi: AOIFile) -> dict:
    """The AOI as a FeatureCollection with one feature per outline, zone and road (``role`` says which)."""
    return {"type": "FeatureCollection", "name": aoi.name, "features": aoi_features(aoi.to_aoi(), name_each=False)}


def aoi_features(aoi: AOI, name_each: bool = True) -> list[dict]:
    """The AOI's outline, zones and roads as GeoJSON features of that layout. ``name_each``: each names its AOI as
    well (a report's ``aois.geojson`` holds several, and analysts see in QGIS which zone a detection was counted in);
    an AOI's own file names it once, on the collection."""
    named = {"aoi": aoi.name} if name_each else {}

    def feature(role: str, geom, **props: Any) -> dict:
        return {"type": "Feature", "properties": {"role": role, **named, **props}, "geometry": _lists(mapping(geom))}

    return ([feature("outline", aoi.outline, name=aoi.name, title=aoi.title, country=aoi.country)]
            + [feature("zone", z.polygon, name=z.name, kind=z.kind) for z in aoi.zones]
            + [feature("road", r.line, name=r.name) for r in aoi.roads])


def _lists(geometry: dict) -> dict:
    """Shapely's coordinate tuples as the lists ``json`` round-trips them to (a feature compares equal after)."""
    def lists(c):
        return [lists(x) for x in c] if isinstance(c, (list, tuple)) and isinstance(c[0], (list, tuple)) else list(c)

    return {"type": geometry["type"], "coordinates": lists(geometry["coordinates"])}


def geojson_text(fc: dict) -> str:
    """One feature per line: small enough to read, and a diff shows which zone or road changed."""
    head = json.dumps({k: v for k, v in fc.items() if k != "features"}, ensure_ascii=False)[:-1]
    body = ",\n".join(json.dumps(f, ensure_ascii=False) for f in fc["features"])
    return f'{head}, "features": [\n{body}\n]}}\n'


def read_geojson(path: str | Path) -> dict:
    """Parse a GeoJSON file; a syntax error names the line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected GeoJSON)") from None
    return data


def aoi_from_geojson(data: dict, source: str = "GeoJSON", name: str | None = None, title: str | None = None,
                     country: str | None = None) -> AOIFile:
    """Build and check an AOI from a FeatureCollection in the ``role`` layout.

    ``name``/``title``/``country`` override the outline's properties (a layer drawn without them needs ``name``).
    Every error names the feature (its number in the file and its name) and what to change.
    """
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ConfigError(f"{source}: expected a GeoJSON FeatureCollection, got "
                          f"{data.get('type') if isinstance(data, dict) else type(data).__name__}")
    _check_crs(data, source)
    outlines, zones, roads = [], [], []
    for i, feat in enumerate(data.get("features") or [], start=1):
        props = (feat or {}).get("properties") or {}
        role = str(props.get("role", "")).strip().lower()
        label = f"{source}: feature {i}" + (f" ({props['name']})" if props.get("name") else "")
        if role not in ROLES:
            raise ConfigError(f"{label}: property 'role' is {props.get('role')!r}; set it to one of "
                              f"{', '.join(ROLES)} (outline: the AOI, zone: an apron/park/..., road: an egress road)")
        geom = (feat or {}).get("geometry") or {}
        if role == "road":
            roads.append((label, props, _line(geom, label)))
        else:
            (outlines if role == "outline" else zones).append((label, props, _polygon(geom, label)))
    if len(outlines) != 1:
        raise ConfigError(f"{source}: needs exactly one feature with role 'outline' (the AOI), found {len(outlines)}")
    _, oprops, outline = outlines[0]
    raw = {
        "name": name or oprops.get("name"),
        "title": title or oprops.get("title") or name or oprops.get("name"),
        "country": country if country is not None else (oprops.get("country") or ""),
        "outline": outline,
        "zones": [{"name": p.get("name"), "kind": p.get("kind"), "polygon": poly} for _, p, poly in zones],
        "roads": [{"name": p.get("name"), "line": line} for _, p, line in roads],
    }
    if not raw["name"]:
        raise ConfigError(f"{source}: the outline has no 'name' property; give one, or pass --name")
    if not NAME_PATTERN.match(str(raw["name"])):
        raise ConfigError(f"{source}: AOI name {raw['name']!r} must be letters, digits, '_' or '-' (it becomes "
                          "configs/aois/<name>.yaml)")
    try:
        aoi = AOIFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source, outlines[0][0], zones, roads)) from None
    _check_roads(aoi, [label for label, _, _ in roads])
    return aoi


def _check_crs(data: dict, source: str) -> None:
    crs = data.get("crs")
    if not crs:
        return
    crs_name = str(((crs.get("properties") or {}).get("name")) if isinstance(crs, dict) else crs)
    if crs_name not in LONLAT_CRS:
        raise ConfigError(f"{source}: coordinates are in {crs_name}; save the layer as GeoJSON in EPSG:4326 "
                          "(lon/lat; in QGIS: Export > Save Features As, CRS EPSG:4326)")


def _coords(points: Any, label: str) -> list[list[float]]:
    try:
        out = [[round(float(p[0]), DECIMALS), round(float(p[1]), DECIMALS)] for p in points]  # drops any Z
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"{label}: coordinates are not [lon, lat] pairs") from None
    return out


def _polygon(geom: dict, label: str) -> list[list[float]]:
    kind, coords = geom.get("type"), geom.get("coordinates")
    if kind == "MultiPolygon":
        if not coords or len(coords) != 1:
            raise ConfigError(f"{label}: a MultiPolygon with {len(coords or [])} parts; draw one polygon per "
                              "feature (split the parts into features of their own)")
        kind, coords = "Polygon", coords[0]
    if kind != "Polygon" or not coords:
        raise ConfigError(f"{label}: expected a Polygon geometry, got {kind or 'none'}")
    if len(coords) > 1:
        raise ConfigError(f"{label}: the polygon has {len(coords) - 1} hole(s); AOI outlines and zones have none "
                          "(draw the zone around the hole instead)")
    ring = _coords(coords[0], label)
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring = ring[:-1]
    return ring


def _line(geom: dict, label: str) -> list[list[float]]:
    kind, coords = geom.get("type"), geom.get("coordinates")
    if kind == "MultiLineString":
        if not coords or len(coords) != 1:
            raise ConfigError(f"{label}: a MultiLineString with {len(coords or [])} parts; draw one line per road")
        kind, coords = "LineString", coords[0]
    if kind != "LineString" or not coords:
        raise ConfigError(f"{label}: expected a LineString geometry, got {kind or 'none'}")
    return _coords(coords, label)


def _explain(exc: ValidationError, source: str, outline_label: str, zones: list, roads: list) -> str:
    """Pydantic's locations (``zones.2.kind``) turned into the feature they came from."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if loc and loc[0] in ("zones", "roads") and len(loc) > 1 and isinstance(loc[1], int):
            label = (zones if loc[0] == "zones" else roads)[loc[1]][0]
            field = ".".join(str(p) for p in loc[2:])
            if field in ("polygon", "line"):
                field = "geometry"
            elif err.get("input") is None:
                msg = f"missing: give the feature a '{field}' attribute"
        elif loc and loc[0] == "outline":
            label, field = outline_label, "geometry"
        else:
            label, field = source, ".".join(str(p) for p in loc)
        lines.append(f"{label}: {field + ': ' if field else ''}{msg}")
    return "\n".join(lines)


def _check_roads(aoi: AOIFile, labels: list[str]) -> None:
    """An egress road starts at the base and leads out: its first vertex must lie deeper inside the AOI than its
    last (``_depth``), else its "outbound" would mean arriving."""
    outline = Polygon(aoi.outline)
    for road, label in zip(aoi.roads, labels, strict=True):
        if LineString(road.line).length == 0:
            raise ConfigError(f"{label}: the road has no length (its vertices coincide)")
        if _depth(outline, Point(road.line[0])) < _depth(outline, Point(road.line[-1])):
            raise ConfigError(f"{label}: the road runs into the base: its last vertex is deeper inside the AOI than "
                              "its first. A road must start at the base (outbound = away from its first vertex); "
                              "reverse the line (QGIS: Processing > 'Reverse line direction') and import again")


def _depth(outline: Polygon, p: Point) -> float:
    """How far inside the outline a point lies (degrees; negative outside it)."""
    return outline.exterior.distance(p) if outline.covers(p) else -outline.distance(p)


def aoi_yaml(aoi: AOIFile, header: str = "") -> str:
    """The AOI in the YAML layout of configs/aois/ (corner lists on one line each, as the shipped files)."""
    def q(s: str) -> str:
        return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML scalar, whatever it contains

    def pts(points: list) -> str:
        return "[" + ", ".join(f"[{_num(x)}, {_num(y)}]" for x, y in points) + "]"

    out = [f"# {line}" if line else "#" for line in header.splitlines()]
    out += [f"name: {q(aoi.name)}", f"title: {q(aoi.title)}", f"country: {q(aoi.country)}",
            f"outline: {pts(aoi.outline)}", "zones:" + ("" if aoi.zones else " []")]
    for z in aoi.zones:
        out += [f"  - name: {q(z.name)}", f"    kind: {z.kind}", f"    polygon: {pts(z.polygon)}"]
    out.append("roads:" + ("" if aoi.roads else " []"))
    for r in aoi.roads:
        out += [f"  - name: {q(r.name)}", f"    line: {pts(r.line)}"]
    return "\n".join(out) + "\n"


def _num(v: float) -> str:
    return f"{v:.{DECIMALS}f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:.1f}"



def advice(aoi: AOIFile) -> list[str]:
    """What a valid AOI still cannot show, said at import (why: the diff judges zones by kind, and an AOI drawn
    without aprons or roads runs without error and never raises the alerts its analyst expects)."""
    kinds = {z.kind for z in aoi.zones}
    outline = Polygon(aoi.outline)
    notes = []
    if not kinds & {"apron", "runway"}:
        notes.append("no apron or runway zone: large aircraft are not counted, so no airlift surge can be raised")
    if not kinds & {"vehicle_park", "pier"}:
        notes.append("no vehicle_park or pier zone: parked vehicles are not counted, so no drawdown of them")
    if not aoi.roads:
        notes.append("no egress road: columns get no direction (inbound/outbound), so no outbound_columns alert")
    for z in aoi.zones:
        if not outline.buffer(1e-9).covers(Polygon(z.polygon)):
            notes.append(f"zone {z.name} reaches outside the outline: only the part inside is imaged")
    return notes


def export_aoi(name: str, out: Path | None = None, config_path: Path | None = None) -> tuple[Path, AOIFile]:
    """Write AOI ``name`` (or an AOI YAML path) as GeoJSON to ``out`` (default ./<name>.geojson)."""
    aoi = read_aoi_file(aoi_path(name, config_path))  # the same lookup and "not found" message as every command
    target = out or Path(f"{aoi.name}.geojson")
    write_text_atomic(target, geojson_text(aoi_to_geojson(aoi)))
    return target, aoi


def import_aoi(geojson: Path, *, name: str | None = None, title: str | None = None, country: str | None = None,
               force: bool = False, config_path: Path | None = None) -> tuple[Path, AOIFile]:
    """Check the GeoJSON as an AOI and write configs/aois/<name>.yaml; nothing is written unless all of it is valid,
    and an existing AOI is replaced only with ``force``."""
    aoi = aoi_from_geojson(read_geojson(geojson), str(geojson), name=name, title=title, country=country)
    target = aoi_dir(config_path) / f"{aoi.name}.yaml"
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; pass --force to replace it (or --name to import under another name)")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_text_atomic(target, aoi_yaml(aoi, f"{aoi.title}: imported from {Path(geojson).name} by `basewatch aoi "
                                            f"import` ({stamp}).\nZones and roads are as drawn there."))
    load_aoi_file(target)  # what was written reads back
    return target, aoi
