"""Scene GeoTIFF interchange format (DESIGN.md): read any valid encoding, write one canonical encoding.

Canonical write: float32 reflectance, bands B02,B03,B04,B08 (+ `valid` 0/1 band), NaN nodata, DEFLATE,
tags ACQUISITION_DATETIME, SPACECRAFT, SIMULATED, SOURCE, ACQUISITION_ID. Writes are atomic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from pipeline.atomic import atomic_write
from pipeline.errors import SceneError
from pipeline.types import BAND_NAMES, Acquisition, Scene

VALID_BAND = "valid"
CONVERT_HINT = ("basewatch convert FILE --bands <its bands in file order> --datetime <UTC time> [--scale 0.0001 "
                "--offset -0.1 for L2A digital numbers] --out OUT.tif")
"""How to turn another tool's export into an interchange GeoTIFF (pipeline/ingest.py), named in read errors."""


def interchange_profile(width: int, height: int, bands: int, crs, transform) -> dict:
    """The canonical encoding of ``bands`` reflectance bands plus the valid band: float32, NaN nodata, DEFLATE with
    the float predictor, 256 px tiles (what write_scene and ``basewatch convert`` write)."""
    return {"driver": "GTiff", "width": width, "height": height, "count": bands + 1, "dtype": "float32", "crs": crs,
            "transform": transform, "nodata": float("nan"), "compress": "deflate", "predictor": 3, "tiled": True,
            "blockxsize": 256, "blockysize": 256}


def interchange_tags(acq: Acquisition, simulated: bool) -> dict[str, str]:
    """The tags an interchange GeoTIFF carries for its acquisition."""
    return {"ACQUISITION_DATETIME": acq.datetime.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "SPACECRAFT": acq.sensor, "SIMULATED": "true" if simulated else "false", "SOURCE": acq.source,
            "ACQUISITION_ID": acq.id, "CLOUD_COVER": "" if acq.cloud_cover is None else f"{acq.cloud_cover:.2f}"}


def write_scene(scene: Scene, path: str | Path) -> Path:
    """Write ``scene`` as a canonical interchange GeoTIFF (atomically)."""
    path = Path(path)
    data = scene.bands.astype(np.float32, copy=True)
    count = data.shape[0] + 1
    profile = interchange_profile(scene.width, scene.height, data.shape[0], CRS.from_user_input(scene.crs),
                                  scene.transform)
    with atomic_write(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, indexes=list(range(1, data.shape[0] + 1)))
        dst.write(scene.valid.astype(np.float32), count)
        for i, name in enumerate(scene.band_names, start=1):
            dst.set_band_description(i, name)
        dst.set_band_description(count, VALID_BAND)
        dst.update_tags(**interchange_tags(scene.acquisition, scene.simulated))
    return path


def parse_when(text: str | None) -> datetime | None:
    """An ACQUISITION_DATETIME tag (ISO 8601; UTC when it names no zone), or None when missing or unreadable."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _parse_datetime(text: str | None, path: Path) -> datetime:
    if not text:
        raise SceneError(f"{path}: tag ACQUISITION_DATETIME is missing (ISO 8601 UTC, e.g. 2024-12-13T08:25:00Z); "
                         f"an interchange copy has it: {CONVERT_HINT}")
    dt = parse_when(text)
    if dt is None:
        raise SceneError(f"{path}: tag ACQUISITION_DATETIME={text!r} is not ISO 8601")
    return dt


def read_scene(path: str | Path, bands: tuple[str, ...] = BAND_NAMES) -> Scene:
    """Read an interchange GeoTIFF into a Scene; a clear SceneError says what is wrong with a bad file."""
    path = Path(path)
    if not path.exists():
        raise SceneError(f"{path}: file not found")
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise SceneError(f"{path}: not a readable GeoTIFF ({exc}); re-download or re-export it") from None
    with src:
        if src.crs is None:
            raise SceneError(f"{path}: no CRS; scenes must be in a projected CRS (UTM), 10 m pixels")
        if not src.crs.is_projected:
            raise SceneError(
                f"{path}: CRS {src.crs.to_string()} is geographic; scenes must be in a projected CRS (UTM) "
                "with metre pixels — reproject it (e.g. gdalwarp -t_srs EPSG:326xx -tr 10 10), or let basewatch "
                f"convert do it: {CONVERT_HINT}"
            )
        descriptions = [d or "" for d in src.descriptions]
        missing = [b for b in bands if b not in descriptions]
        if missing:
            raise SceneError(
                f"{path}: band descriptions {descriptions} lack {missing}; "
                f"set band descriptions to {list(bands)} (any order), or write an interchange copy: {CONVERT_HINT}"
            )
        tags = src.tags()
        try:
            raw = np.stack([src.read(descriptions.index(b) + 1) for b in bands]).astype(np.float32)
            valid_band = src.read(descriptions.index(VALID_BAND) + 1) if VALID_BAND in descriptions else None
        except RasterioIOError as exc:
            raise SceneError(f"{path}: pixel data is corrupt or truncated ({exc}); re-download it") from None
        nodata = src.nodata
        is_int = np.issubdtype(np.dtype(src.dtypes[descriptions.index(bands[0])]), np.integer)
        transform, crs = src.transform, src.crs.to_string()

    if is_int:
        if "SCALE" not in tags:
            raise SceneError(f"{path}: integer bands need tags SCALE and OFFSET (reflectance = DN * SCALE + OFFSET), "
                             f"or an interchange copy: {CONVERT_HINT}")
        scale, offset = float(tags["SCALE"]), float(tags.get("OFFSET", 0.0))
        nod = np.zeros(raw.shape[1:], bool) if nodata is None else np.any(raw == nodata, axis=0)
        refl = raw * scale + offset
        refl[:, nod] = np.nan
    else:
        refl = raw
        if nodata is not None and not np.isnan(nodata):
            refl[raw == nodata] = np.nan
    valid = np.all(np.isfinite(refl), axis=0)
    if valid_band is not None:
        valid &= valid_band > 0.5
    refl = np.nan_to_num(refl, nan=0.0)
    simulated = tags.get("SIMULATED", "false").lower() == "true"
    acq = Acquisition(
        source=tags.get("SOURCE", "files"),
        id=tags.get("ACQUISITION_ID", path.stem),
        sensor=tags.get("SPACECRAFT", "Sentinel-2"),
        datetime=_parse_datetime(tags.get("ACQUISITION_DATETIME"), path),
        cloud_cover=float(tags["CLOUD_COVER"]) if tags.get("CLOUD_COVER") else None,
        simulated=simulated,
    )
    return Scene(
        bands=refl,
        band_names=tuple(bands),
        transform=transform,
        crs=crs,
        valid=valid,
        acquisition=acq,
        simulated=simulated,
    )
