"""A Sentinel-2 L2A product folder (.SAFE, as downloaded and unzipped) as ``basewatch convert`` input.

Why: that is what an analyst downloads from the Copernicus Browser. Everything convert otherwise asks for is in the
product itself: the 10 m bands' JP2 files, the acquisition time and spacecraft, the digital-number scale and offset
(which changed with processing baseline 04.00) and the scene classification (SCL), whose cloud, shadow and
saturated classes become invalid pixels exactly as in scenes fetched through Sentinel Hub.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import SceneError
from pipeline.geotiff import parse_when
from pipeline.ingest import BandInput, ConvertOptions
from pipeline.sources.evalscript import SCL_INVALID
from pipeline.types import BAND_NAMES

METADATA = "MTD_MSIL2A.xml"
BAND_IDS = {"B02": "1", "B03": "2", "B04": "3", "B08": "7"}
"""``band_id`` of each band in the product metadata (B01 is 0, B8A 8, B11 11)."""


@dataclass(frozen=True)
class SafeProduct:
    """What convert needs from one L2A product."""

    bands: list[BandInput]
    options: ConvertOptions
    scl: Path | None  # the 20 m scene classification; None when the product has none


def is_safe(path: Path) -> bool:
    return path.is_dir() and (path / METADATA).exists()


def read_safe(folder: Path, nodata: float | None = None) -> SafeProduct:
    """The product's 10 m bands, time, scale and offset, and SCL; a clear SceneError for anything missing."""
    folder = Path(folder)
    if str(folder).endswith(".zip"):
        raise SceneError(f"{folder}: unzip the product first and give its .SAFE folder")
    if not is_safe(folder):
        raise SceneError(f"{folder}: not a Sentinel-2 L2A product folder (no {METADATA}); give the unzipped .SAFE")
    try:
        root = ET.parse(folder / METADATA).getroot()
    except ET.ParseError as exc:
        raise SceneError(f"{folder / METADATA}: not readable XML ({exc}); download the product again") from None
    text = {el.tag.split("}")[-1]: (el.text or "").strip() for el in root.iter()}
    when = parse_when(text.get("PRODUCT_START_TIME"))
    if when is None:
        raise SceneError(f"{folder / METADATA}: no PRODUCT_START_TIME, or not ISO 8601")
    quantification = float(text.get("BOA_QUANTIFICATION_VALUE") or 10000.0)
    offsets = {el.get("band_id"): float(el.text) for el in root.iter() if el.tag.split("}")[-1] == "BOA_ADD_OFFSET"}
    band_offsets = {offsets.get(BAND_IDS[b], 0.0) for b in BAND_NAMES}  # no list: before baseline 04.00, none
    if len(band_offsets) != 1:
        raise SceneError(f"{folder / METADATA}: the 10 m bands have different offsets {sorted(band_offsets)}; "
                         "convert them one by one with --scale and --offset")
    bands = [BandInput(b, _one(folder, f"GRANULE/*/IMG_DATA/R10m/*_{b}_10m.jp2", b), 1) for b in BAND_NAMES]
    scl = sorted(folder.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
    options = ConvertOptions(when=when, scale=1.0 / quantification, offset=band_offsets.pop() / quantification,
                             nodata=0.0 if nodata is None else nodata,
                             spacecraft=text.get("SPACECRAFT_NAME") or "Sentinel-2",
                             acquisition_id=text.get("PRODUCT_URI", folder.name).removesuffix(".SAFE"))
    return SafeProduct(bands, options, scl[0] if scl else None)


def _one(folder: Path, pattern: str, band: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise SceneError(f"{folder}: no 10 m {band} image ({pattern}); is the download complete?")
    if len(found) > 1:
        raise SceneError(f"{folder}: {len(found)} {band} images (several granules); convert them one by one with "
                         "NAME=PATH")
    return found[0]


SCL_MASKED = frozenset(SCL_INVALID)
"""Scene classes that make a pixel invalid: no data, saturated, cloud shadow and clouds (as the Sentinel Hub path)."""
