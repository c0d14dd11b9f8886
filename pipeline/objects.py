"""Objects GeoJSON interchange format (truth, labels, detections, columns): RFC 7946, lon/lat."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pyproj import Transformer
from shapely.geometry import mapping

from pipeline.atomic import write_text_atomic
from pipeline.errors import SceneError
from pipeline.types import Column, MapObject

_OPTIONAL = ("type", "length_m", "width_m", "heading_deg", "moving", "speed_mps", "score", "zone", "id", "contrast")


def object_feature(obj: MapObject, **extra) -> dict:
    props: dict = {"class": obj.cls}
    for key in _OPTIONAL:
        value = getattr(obj, key)
        if value is not None:
            props[key] = round(value, 4) if isinstance(value, float) else value
    props.update(extra)
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [round(obj.lon, 7), round(obj.lat, 7)]},
        "properties": props,
    }


def column_feature(col: Column, **extra) -> dict:
    props = {
        "class": "vehicle_column",
        "id": col.id,
        "direction": col.direction,
        "vehicles": col.vehicles,
        "heading_deg": round(col.heading_deg, 1),
        "length_m": round(col.length_m, 1),
        "road": col.road,
        "members": list(col.members),
    }
    props.update(extra)
    return {"type": "Feature", "geometry": mapping(col.line), "properties": props}


def feature_collection(features: Iterable[dict], **foreign) -> dict:
    """A FeatureCollection; ``foreign`` members (e.g. simulated=True) ride along at top level."""
    fc = {"type": "FeatureCollection", "features": list(features)}
    fc.update(foreign)
    return fc


def write_geojson(fc: dict, path: str | Path) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(fc, indent=1))
    return path


def write_objects(objects: Iterable[MapObject], path: str | Path, **foreign) -> Path:
    return write_geojson(feature_collection((object_feature(o) for o in objects), **foreign), path)


def read_objects(path: str | Path, crs: str | None = None) -> list[MapObject]:
    """Read point objects; with ``crs`` the map x/y are computed in it (else x/y = lon/lat)."""
    path = Path(path)
    try:
        fc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SceneError(f"{path}: not readable GeoJSON ({exc})") from None
    if fc.get("type") != "FeatureCollection":
        raise SceneError(f"{path}: expected a GeoJSON FeatureCollection")
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True) if crs else None
    out = []
    for i, feat in enumerate(fc.get("features", [])):
        geom = feat.get("geometry") or {}
        props = feat.get("properties") or {}
        if geom.get("type") != "Point":
            continue
        if "class" not in props:
            raise SceneError(f"{path}: feature {i} has no 'class' property")
        lon, lat = geom["coordinates"][:2]
        x, y = to_map.transform(lon, lat) if to_map else (lon, lat)
        kwargs = {k: props.get(k) for k in _OPTIONAL}
        out.append(MapObject(cls=props["class"], x=x, y=y, lon=lon, lat=lat, **kwargs))
    return out
