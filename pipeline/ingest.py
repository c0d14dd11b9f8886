"""Bring a user's own Sentinel-2 GeoTIFF into the interchange format (``basewatch convert``).

Why: `basewatch detect` and the files source read interchange GeoTIFFs only (bands named B02, B03, B04, B08,
reflectance, an acquisition time). Exports from other tools name no bands (a SNAP or EO Browser stack), keep digital
numbers (L2A JP2 turned GeoTIFF) or come one file per band. This module maps such files onto the interchange
encoding, window by window so a full 10980 px tile needs little memory, and refuses what it cannot map with one
clear message: a band missing, grids that differ, pixels coarser than 20 m, digital numbers without a scale.
Files in longitude/latitude are reprojected onto the UTM zone of their centre at 10 m on the way. An unzipped L2A
product needs none of the options: ``pipeline/safe.py`` reads them from its metadata.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from pipeline.atomic import atomic_write
from pipeline.errors import SceneError
from pipeline.geotiff import VALID_BAND, interchange_profile, interchange_tags, parse_when
from pipeline.sources.files import MAX_PIXEL_M
from pipeline.types import BAND_NAMES, Acquisition, utm_crs_for

LOGGER = logging.getLogger(__name__)
SKIP = "-"
"""A band name in ``--bands`` for a band of the file that is not wanted (e.g. B11 in a five-band stack)."""
L2A_HINT = ("Sentinel-2 L2A digital numbers: --scale 0.0001 --offset -0.1 (processing baseline 04.00, from 25 Jan "
            "2022), --scale 0.0001 --offset 0 before")
ROWS_PER_BLOCK = 512
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class BandInput:
    """Where one interchange band comes from: band ``index`` (1-based) of ``path``."""

    name: str
    path: Path
    index: int


@dataclass(frozen=True)
class ConvertOptions:
    """What the input files do not say themselves."""

    when: datetime | None = None  # acquisition time (UTC); None = the file's ACQUISITION_DATETIME tag
    scale: float | None = None  # reflectance = value * scale + offset; None = the file is reflectance already
    offset: float = 0.0
    nodata: float | None = None  # input value marking no data; None = the file's own nodata
    spacecraft: str = "Sentinel-2"
    acquisition_id: str | None = None  # None = the output's file name


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    width: int
    height: int
    crs: str
    pixel_m: float
    valid_fraction: float
    band_medians: dict[str, float]


def band_inputs(inputs: Sequence[str], bands: str | None) -> list[BandInput]:
    """The four interchange bands' sources, from the command line: one multi-band file (its bands named by
    ``bands`` in file order, or by its own band descriptions), or ``NAME=PATH`` single-band files."""
    if not inputs:
        raise SceneError("no input: give one multi-band GeoTIFF, or NAME=PATH per band (B02=..., B03=..., ...)")
    pairs = [s for s in inputs if "=" in s]
    if pairs:
        if len(pairs) != len(inputs) or bands:
            raise SceneError("give either one multi-band file (with --bands naming its bands in order) or NAME=PATH "
                             "per band, not both")
        found = {}
        for item in inputs:
            name, _, path = item.partition("=")
            found[name.strip().upper()] = BandInput(name.strip().upper(), _existing(path), 1)
        return [_pick(found, b, "NAME=PATH inputs") for b in BAND_NAMES]
    if len(inputs) > 1:
        raise SceneError(f"{len(inputs)} files given without band names: name each as B02=PATH, B03=PATH, ...")
    path = _existing(inputs[0])
    with _open(path) as src:
        count, descriptions = src.count, [(d or "").upper() for d in src.descriptions]
    if bands:
        names = [b.strip().upper() for b in bands.split(",")]
        if len(names) != count:
            raise SceneError(f"--bands names {len(names)} bands but {path} has {count}; name every band in file "
                             f"order, {SKIP!r} for one not wanted")
    elif all(b in descriptions for b in BAND_NAMES):
        names = descriptions
    else:
        raise SceneError(f"{path}: its {count} bands are not named {list(BAND_NAMES)} (descriptions: {descriptions});"
                         " name them in file order with --bands, e.g. --bands B04,B03,B02,B08")
    named = [n for n in names if n != SKIP]
    if len(set(named)) < len(named):
        raise SceneError(f"--bands names a band twice ({','.join(names)}); name each of the file's bands once, "
                         f"{SKIP!r} for one not wanted")
    found = {n: BandInput(n, path, i) for i, n in enumerate(names, start=1) if n != SKIP}
    return [_pick(found, b, "--bands" if bands else "its band descriptions") for b in BAND_NAMES]


def _pick(found: dict[str, BandInput], band: str, where: str) -> BandInput:
    if band not in found:
        raise SceneError(f"band {band} is missing from {where} (have {sorted(found)}); basewatch needs "
                         f"{list(BAND_NAMES)}")
    return found[band]


def _existing(path: str) -> Path:
    p = Path(path.strip())
    if not p.exists():
        raise SceneError(f"{p}: file not found")
    return p


def _open(path: Path):
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise SceneError(f"{path}: not a readable GeoTIFF ({exc})") from None


@dataclass(frozen=True)
class ClassMask:
    """A classification raster (e.g. Sentinel-2's 20 m SCL) whose ``invalid`` classes make pixels invalid; read
    onto the output grid by nearest neighbour."""

    path: Path
    invalid: frozenset[int]


def convert(sources: Sequence[BandInput], out: str | Path, options: ConvertOptions = ConvertOptions(),
            progress=None, mask: ClassMask | None = None) -> ConvertResult:
    """Write ``sources`` as one interchange GeoTIFF at ``out`` (atomically; nothing is left on an error)."""
    out = Path(out)
    handles: dict = {}
    opened: list = []  # every dataset to close: the files, and the warped views over them
    try:
        for path in dict.fromkeys(s.path for s in sources):
            handles[path] = _open(path)  # inside the try: an unreadable second file closes the first
            opened.append(handles[path])
        _check_grid(sources, handles)
        if handles[sources[0].path].crs.is_geographic:
            handles = _warped_to_utm(handles, sources, options)
            opened += list(handles.values())
        first = handles[sources[0].path]
        classes = _mask_view(mask, first, opened) if mask else None
        when = _acquisition_time(options, first, sources[0].path)
        scale, offset = _scaling(sources, handles, options)
        pixel_m = max(abs(first.transform.a), abs(first.transform.e))
        profile = interchange_profile(first.width, first.height, len(sources), first.crs, first.transform)
        acquisition = Acquisition(source="files", id=options.acquisition_id or out.stem, sensor=options.spacecraft,
                                  datetime=when)
        valid_px = 0
        medians: list[list[float]] = [[] for _ in sources]
        with atomic_write(out) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for i, s in enumerate(sources, start=1):
                dst.set_band_description(i, s.name)
            dst.set_band_description(len(sources) + 1, VALID_BAND)
            dst.update_tags(**interchange_tags(acquisition, simulated=False))
            blocks = list(_row_blocks(first.height, first.width))
            for k, win in enumerate(blocks):
                refl, valid = _read_block(sources, handles, win, scale, offset, options.nodata)
                if classes is not None:
                    valid &= ~np.isin(classes.read(1, window=win), list(mask.invalid))
                for i in range(len(sources)):
                    dst.write(np.where(valid, refl[i], np.nan).astype(np.float32), i + 1, window=win)
                    if valid.any():
                        medians[i].append(float(np.median(refl[i][valid][::97])))
                dst.write(valid.astype(np.float32), len(sources) + 1, window=win)
                valid_px += int(valid.sum())
                if progress:
                    progress(k + 1, len(blocks))
        crs = first.crs.to_string()
        width, height = first.width, first.height
    finally:
        for h in reversed(opened):
            h.close()
    band_medians = {s.name: float(np.median(m)) if m else float("nan") for s, m in zip(sources, medians, strict=True)}
    return ConvertResult(out, width, height, crs, round(pixel_m, 3), valid_px / (width * height), band_medians)


def _row_blocks(height: int, width: int) -> Iterator[Window]:
    for r in range(0, height, ROWS_PER_BLOCK):
        yield Window(0, r, width, min(ROWS_PER_BLOCK, height - r))


def _check_grid(sources: Sequence[BandInput], handles: dict) -> None:
    first_path = sources[0].path
    first = handles[first_path]
    if first.crs is None:
        raise SceneError(f"{first_path}: no CRS; georeference it in a projected CRS (UTM), 10 m pixels")
    pixel = max(abs(first.transform.a), abs(first.transform.e))
    if first.crs.is_geographic:
        pixel *= METRES_PER_DEGREE  # about: a degree of latitude (longitude shrinks; the coarser side counts)
    if pixel > MAX_PIXEL_M:
        raise SceneError(f"{first_path}: {pixel:g} m pixels; the detector needs 10 m (resample the 10 m bands, "
                         "e.g. gdalwarp -tr 10 10)")
    if not 8.0 <= pixel <= 12.0:
        LOGGER.warning("%s: %g m pixels; the detector was trained on 10 m", first_path, pixel)
    for s in sources:
        h = handles[s.path]
        if s.index > h.count:
            raise SceneError(f"{s.path}: has {h.count} bands, no band {s.index} for {s.name}")
        if (h.width, h.height, h.crs, h.transform) != (first.width, first.height, first.crs, first.transform):
            raise SceneError(f"{s.path} ({s.name}) is not on the grid of {first_path}: {h.width}x{h.height} "
                             f"{h.crs} vs {first.width}x{first.height} {first.crs}; bring the bands onto one 10 m "
                             "grid first (gdalwarp -tr 10 10 -tap)")


def _mask_view(mask: ClassMask, grid, opened: list):
    """The classification seen on ``grid``'s pixels (nearest; no data outside it reads 0)."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    src = _open(mask.path)
    opened.append(src)
    view = WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                     resampling=Resampling.nearest, nodata=0)
    opened.append(view)
    return view


def _warped_to_utm(handles: dict, sources: Sequence[BandInput], options: ConvertOptions) -> dict:
    """Each file seen through a GDAL warped view onto the UTM zone of the scene's centre at 10 m (bilinear; pixels
    outside the file are no data). Why: exports in longitude/latitude (EO Browser's default) are common, and the
    detector counts pixels as 10 m squares. The view is read block by block like any file, so memory stays flat."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform

    first = handles[sources[0].path]
    west, south, east, north = first.bounds
    utm = utm_crs_for((west + east) / 2, (south + north) / 2)
    transform, width, height = calculate_default_transform(first.crs, utm, first.width, first.height, *first.bounds,
                                                           resolution=10.0)
    LOGGER.info("%s: %s reprojected to %s at 10 m (bilinear)", sources[0].path, first.crs.to_string(),
                utm.to_string())
    warped = {}
    for path, h in handles.items():
        integer = np.issubdtype(np.dtype(h.dtypes[0]), np.integer)
        marker = options.nodata if options.nodata is not None else h.nodata
        fill = (marker if marker is not None else 0) if integer else float("nan")
        warped[path] = WarpedVRT(h, crs=utm, transform=transform, width=width, height=height,
                                 resampling=Resampling.bilinear, nodata=fill)
    return warped


def _acquisition_time(options: ConvertOptions, src, path: Path) -> datetime:
    if options.when is not None:
        return options.when if options.when.tzinfo else options.when.replace(tzinfo=UTC)
    tagged = parse_when(src.tags().get("ACQUISITION_DATETIME"))
    if tagged is not None:
        return tagged
    raise SceneError(f"{path}: no acquisition time; pass --datetime (UTC, e.g. 2024-12-13T08:25:00Z): the diff "
                     "stage orders passes by it")


def _scaling(sources: Sequence[BandInput], handles: dict, options: ConvertOptions) -> tuple[float, float]:
    """(scale, offset) to reflectance. Digital numbers without a scale are refused, not guessed: a wrong offset
    shifts every reflectance and the detector's contrasts with it."""
    integer = any(np.issubdtype(np.dtype(handles[s.path].dtypes[s.index - 1]), np.integer) for s in sources)
    if options.scale is not None:
        return options.scale, options.offset
    if integer:
        raise SceneError(f"{sources[0].path}: integer bands; pass --scale and --offset (reflectance = DN x scale + "
                         f"offset). {L2A_HINT}")
    sample = _sample_median(sources, handles)
    if sample > 2.0:
        raise SceneError(f"{sources[0].path}: values look like digital numbers (median {sample:g}), not reflectance "
                         f"0-1; pass --scale and --offset. {L2A_HINT}")
    return 1.0, options.offset


def _sample_median(sources: Sequence[BandInput], handles: dict) -> float:
    """Median of a decimated read of the bands (an overview-sized look, whatever the raster's size)."""
    values = []
    for s in sources:
        h = handles[s.path]
        side = (max(1, min(h.height, 256)), max(1, min(h.width, 256)))
        try:
            data = h.read(s.index, out_shape=side, masked=True).astype(np.float64)
        except RasterioIOError as exc:
            raise SceneError(f"{s.path}: pixel data is corrupt or truncated ({exc}); re-download it") from None
        good = data.compressed()
        good = good[np.isfinite(good) & (good != 0)]
        if good.size:
            values.append(float(np.median(good)))
    return float(np.median(values)) if values else 0.0


def _read_block(sources: Sequence[BandInput], handles: dict, win: Window, scale: float, offset: float,
                nodata: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (bands, rows, cols) and valid mask of one block of rows."""
    refl, valid = [], None
    for s in sources:
        h = handles[s.path]
        try:
            raw = h.read(s.index, window=win)
        except RasterioIOError as exc:
            raise SceneError(f"{s.path}: pixel data is corrupt or truncated ({exc}); re-download it") from None
        value = raw.astype(np.float64)
        bad = ~np.isfinite(value)
        marker = nodata if nodata is not None else h.nodata
        if marker is not None and not (isinstance(marker, float) and math.isnan(marker)):
            bad |= raw == marker
        refl.append(value * scale + offset)
        valid = ~bad if valid is None else valid & ~bad
    return np.stack(refl).astype(np.float32), valid
