"""`basewatch convert`: other tools' Sentinel-2 GeoTIFFs into the interchange format, or one clear error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import SceneError
from pipeline.geotiff import read_scene
from pipeline.ingest import ConvertOptions, band_inputs, convert

TRANSFORM = Affine(10, 0, 500_000, 0, -10, 3_900_000)
WHEN = datetime(2024, 12, 13, 8, 25, tzinfo=UTC)


def _write(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32636", transform: Affine = TRANSFORM,
           nodata: float | None = None, descriptions: list[str] | None = None) -> Path:
    data = data if data.ndim == 3 else data[None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": str(data.dtype), "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return path


def _reflectance(height: int = 600, width: int = 90) -> np.ndarray:
    """(B02, B03, B04, B08) reflectance with a distinct ramp per band."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.05, 0.3, (height, width)).astype(np.float32)
    return np.stack([base, base + 0.01, base + 0.02, base * 2 + 0.05]).astype(np.float32)


def test_a_stack_without_band_names_is_written_in_interchange_order_with_its_holes_invalid(tmp_path):
    refl = _reflectance()  # 600 rows: more than one block of rows
    stack = refl[[2, 1, 0, 3]].copy()  # the file holds B04, B03, B02, B08 (SNAP / S2TD order)
    stack[:, 550, 10:20] = np.nan
    src = _write(tmp_path / "export.tif", stack)
    out = tmp_path / "scene.tif"
    result = convert(band_inputs([str(src)], "B04,B03,B02,B08"), out, ConvertOptions(when=WHEN))
    scene = read_scene(out)
    assert scene.acquisition.datetime == WHEN and not scene.simulated
    expected_valid = np.ones(refl.shape[1:], bool)
    expected_valid[550, 10:20] = False
    assert np.array_equal(scene.valid, expected_valid)
    assert np.array_equal(scene.bands[:, expected_valid], refl[:, expected_valid])
    assert scene.crs == "EPSG:32636" and scene.transform == TRANSFORM
    assert result.valid_fraction == pytest.approx(expected_valid.mean())
    assert result.band_medians["B08"] > result.band_medians["B02"]

    from pipeline.detect import RasterSource  # what `basewatch detect` reads, window by window

    source = RasterSource(out)
    bands, valid = source.read(source_window(source))
    source.close()
    assert np.array_equal(valid, expected_valid) and np.array_equal(bands[:, valid], refl[:, expected_valid])


def source_window(source):
    from pipeline.detect import grid_windows

    return grid_windows(source.height, source.width, 1024, 32)[0]


def test_one_file_per_band_of_digital_numbers_becomes_reflectance_with_nodata_invalid(tmp_path):
    refl = _reflectance(120, 80)
    dn = np.round((refl + 0.1) / 0.0001).astype(np.uint16)
    dn[:, 5, 5] = 0  # L2A's no-data value
    inputs = [f"{b}={_write(tmp_path / f'T36_{b}.tif', dn[i], nodata=0)}"
              for i, b in enumerate(("B02", "B03", "B04", "B08"))]
    out = tmp_path / "scene.tif"
    convert(band_inputs(inputs[::-1], None), out, ConvertOptions(when=WHEN, scale=0.0001, offset=-0.1))
    scene = read_scene(out)
    assert not scene.valid[5, 5] and scene.valid.sum() == scene.valid.size - 1
    assert np.allclose(scene.bands[:, scene.valid], refl[:, scene.valid], atol=6e-5)


def test_a_file_that_already_names_its_bands_needs_no_band_list_and_skips_the_others(tmp_path):
    refl = _reflectance(64, 64)
    five = np.concatenate([refl[:1] * 0 + 0.4, refl[[3, 0, 1, 2]]])  # B11, B08, B02, B03, B04
    src = _write(tmp_path / "five.tif", five, descriptions=["B11", "B08", "B02", "B03", "B04"])
    convert(band_inputs([str(src)], None), tmp_path / "a.tif", ConvertOptions(when=WHEN))
    convert(band_inputs([str(src)], "-,B08,B02,B03,B04"), tmp_path / "b.tif", ConvertOptions(when=WHEN))
    for name in ("a.tif", "b.tif"):
        assert np.array_equal(read_scene(tmp_path / name).bands, refl)


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")  # inside rasterio's own from_bounds
def test_a_longitude_latitude_export_is_reprojected_onto_its_utm_zone_at_10_m(tmp_path):
    """EO Browser's default: EPSG:4326. The output is on the UTM zone of the scene's centre (36N at Tartus), 10 m
    pixels, each band's reflectance kept (bilinear over uniform ground), no data where the rotated footprint ends."""
    reflectance = (0.08, 0.09, 0.11, 0.27)
    stack = np.stack([np.full((200, 200), v, np.float32) for v in reflectance])
    stack[:, 90:110, 90:110] = np.nan  # a hole in the file stays a hole
    lonlat = Affine(1e-4, 0, 35.86, 0, -1e-4, 34.92)  # about 9 x 11 m pixels
    src = _write(tmp_path / "eo_browser.tif", stack, crs="EPSG:4326", transform=lonlat)
    out = tmp_path / "scene.tif"
    result = convert(band_inputs([str(src)], "B02,B03,B04,B08"), out, ConvertOptions(when=WHEN))
    scene = read_scene(out)
    assert scene.crs == "EPSG:32636" and result.pixel_m == 10.0
    assert scene.transform.a == 10.0 and scene.transform.e == -10.0
    assert 0.6 < result.valid_fraction < 0.99  # the hole, and the rotated footprint's corners
    middle = scene.valid[scene.height // 2 - 2 : scene.height // 2 + 3, scene.width // 2 - 2 : scene.width // 2 + 3]
    assert not middle.any()  # the hole, in the middle of the scene
    for band, value in zip(scene.bands, reflectance, strict=True):
        assert np.allclose(band[scene.valid], value, atol=1e-6)
    explicit = CliRunner().invoke(app, ["convert", str(src), "--bands", "B02,B03,B04,B08", "--datetime",
                                        "2024-12-13T08:25:00Z", "--out", str(tmp_path / "cli.tif")])
    assert explicit.exit_code == 0 and "EPSG:32636, 10 m" in explicit.output, explicit.output


@pytest.mark.parametrize("case, phrase", [
    ("integer without scale", "integer bands; pass --scale"),
    ("float digital numbers", "look like digital numbers"),
    ("grids differ", "is not on the grid of"),
    ("band missing", "band B08 is missing"),
    ("band count", "--bands names 3 bands but"),
    ("band twice", "names a band twice"),
    ("no CRS", "no CRS"),
    ("coarse degrees", "the detector needs 10 m"),
    ("no time", "pass --datetime"),
    ("unnamed stack", "name them in file order with --bands"),
    ("coarse pixels", "the detector needs 10 m"),
    ("truncated", "corrupt or truncated|not a readable GeoTIFF"),
    ("truncated, scale given", "corrupt or truncated|not a readable GeoTIFF"),  # read in blocks, not sampled
])
def test_bad_input_gets_one_clear_error_and_writes_nothing(tmp_path, case, phrase):
    refl = _reflectance(40, 40)
    when = None if case == "no time" else WHEN
    bands = "B02,B03,B04,B08"
    scale = 1.0 if case == "truncated, scale given" else None
    if case == "integer without scale":
        inputs = [str(_write(tmp_path / "dn.tif", np.round(refl / 0.0001).astype(np.uint16)))]
    elif case == "float digital numbers":
        inputs = [str(_write(tmp_path / "dn.tif", refl / 0.0001))]
    elif case == "grids differ":
        shifted = Affine(10, 0, 500_010, 0, -10, 3_900_000)  # B02 one pixel east of the others
        inputs = [f"{b}={_write(tmp_path / f'{b}.tif', refl[i], transform=TRANSFORM if i else shifted)}"
                  for i, b in enumerate(("B02", "B03", "B04", "B08"))]
        bands = None
    elif case == "band missing":
        inputs, bands = [str(_write(tmp_path / "s.tif", refl))], "B02,B03,B04,B11"
    elif case == "band twice":
        inputs, bands = [str(_write(tmp_path / "s.tif", refl))], "B02,B03,B02,B08"
    elif case == "band count":
        inputs, bands = [str(_write(tmp_path / "s.tif", refl))], "B02,B03,B04"
    elif case == "no CRS":
        inputs = [str(_write(tmp_path / "s.tif", refl, crs=None))]
    elif case == "coarse degrees":  # 0.0005 degrees: about 55 m, however it is reprojected
        inputs = [str(_write(tmp_path / "s.tif", refl, crs="EPSG:4326", transform=Affine(5e-4, 0, 35, 0, -5e-4, 35)))]
    elif case == "unnamed stack":
        inputs, bands = [str(_write(tmp_path / "s.tif", refl))], None
    elif case.startswith("truncated"):  # a download cut off half way
        path = tmp_path / "cut.tif"
        with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=4, dtype="float32",
                           crs="EPSG:32636", transform=TRANSFORM, tiled=True, compress="deflate") as dst:
            dst.write(np.random.default_rng(1).uniform(0.05, 0.3, (4, 256, 256)).astype(np.float32))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        inputs = [str(path)]
    elif case == "coarse pixels":
        inputs = [str(_write(tmp_path / "s.tif", refl, transform=Affine(60, 0, 500_000, 0, -60, 3_900_000)))]
    else:
        inputs = [str(_write(tmp_path / "s.tif", refl))]
    out = tmp_path / "out" / "scene.tif"
    with pytest.raises(SceneError, match=phrase):
        convert(band_inputs(inputs, bands), out, ConvertOptions(when=when, scale=scale))
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no temp file left behind either


def test_detect_names_convert_when_a_file_is_not_interchange(tmp_path):
    from pipeline.detect import RasterSource

    src = _write(tmp_path / "export.tif", _reflectance(40, 40))
    with pytest.raises(SceneError, match="basewatch convert"):
        RasterSource(src)
    with pytest.raises(SceneError, match="basewatch convert"):
        read_scene(src)


def test_convert_command_reports_what_it_wrote_and_exits_2_on_a_mistake(tmp_path):
    src = _write(tmp_path / "export.tif", _reflectance(40, 40)[[2, 1, 0, 3]])
    out = tmp_path / "scene.tif"
    ok = CliRunner().invoke(app, ["convert", str(src), "--bands", "B04,B03,B02,B08", "--datetime",
                                  "2024-12-13T08:25:00Z", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "40 x 40 px" in ok.output and "100% valid" in ok.output
    assert read_scene(out).acquisition.datetime == WHEN
    bad = CliRunner().invoke(app, ["convert", str(src), "--out", str(tmp_path / "x.tif")])
    assert bad.exit_code == 2 and "--bands" in bad.output and not (tmp_path / "x.tif").exists()


def test_the_real_motorway_patch_converted_by_the_command_gives_the_benchmarks_trucks(tmp_path):
    """The S2TD Braunschweig patch (bands B04, B03, B02, B08, reflectance x 255, no band names): converted and then
    detected through the commands, it gives the detections benchmarks/realdata.py gets from its own reader."""
    from benchmarks.realdata import REALDATA, braunschweig_scene

    patch = REALDATA / "s2td_braunschweig" / "S2_test_data.tif"
    if not patch.exists():
        pytest.skip(f"real imagery not present at {patch}")
    out, found = tmp_path / "braunschweig.tif", tmp_path / "found.geojson"
    ok = CliRunner().invoke(app, ["convert", str(patch), "--bands", "B04,B03,B02,B08", "--scale", repr(1 / 255),
                                  "--datetime", "2020-06-01T10:30:00Z", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert CliRunner().invoke(app, ["detect", str(out), "--out", str(found)]).exit_code == 0
    import json

    from pipeline.config import load_config
    from pipeline.detect import LearnedDetector

    via_command = [f["geometry"]["coordinates"] for f in json.loads(found.read_text())["features"]
                   if f["properties"]["class"] == "vehicle"]
    direct = [(d.lon, d.lat) for d in LearnedDetector(load_config(None).detector).detect(braunschweig_scene())
              if d.cls == "vehicle"]
    assert len(via_command) == len(direct) >= 12
    assert np.allclose(sorted(map(tuple, via_command)), sorted(direct), atol=1e-6)


def _jp2(path: Path, data: np.ndarray, transform: Affine) -> None:
    """A lossless single-band JPEG 2000, as in a product's IMG_DATA."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint16", crs="EPSG:32636", transform=transform, QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(data[None])


def _safe(folder: Path, dn: np.ndarray, scl: np.ndarray, offsets: bool = True) -> Path:
    """A minimal unzipped L2A product: the four 10 m bands, the 20 m SCL and MTD_MSIL2A.xml as ESA writes them."""
    safe = folder / "S2B_MSIL2A_20241213T082319_N0511_R021_T36SYD_20241213T110455.SAFE"
    img = safe / "GRANULE" / "L2A_T36SYD_A040511_20241213T082510" / "IMG_DATA"
    for i, b in enumerate(("B02", "B03", "B04", "B08")):
        _jp2(img / "R10m" / f"T36SYD_20241213T082319_{b}_10m.jp2", dn[i], TRANSFORM)
    _jp2(img / "R20m" / "T36SYD_20241213T082319_SCL_20m.jp2", scl,
         Affine(20, 0, TRANSFORM.c, 0, -20, TRANSFORM.f))
    offset_list = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL2A.xml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2024-12-13T08:23:19.024Z</PRODUCT_START_TIME>
      <PRODUCT_URI>{safe.name}</PRODUCT_URI>
      <Datatake datatakeIdentifier="GS2B_20241213T082319_040511_N05.11">
        <SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
      </Datatake>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      {f"<BOA_ADD_OFFSET_VALUES_LIST>{offset_list}</BOA_ADD_OFFSET_VALUES_LIST>" if offsets else ""}
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
""", encoding="utf-8")
    return safe


@pytest.mark.parametrize("offsets", [True, False], ids=["baseline 04.00 on", "before 04.00"])
def test_an_unzipped_l2a_product_converts_with_its_own_time_scale_and_cloud_mask(tmp_path, offsets):
    refl = _reflectance(80, 60)
    dn = np.round((refl + (0.1 if offsets else 0.0)) * 10000).astype(np.uint16)
    dn[:, 0, 0] = 0  # no data
    scl = np.full((40, 30), 4, np.uint16)  # vegetation ...
    scl[10:20, 5:15] = 9  # ... a thick cloud over 20 x 20 px at 10 m
    safe = _safe(tmp_path, dn, scl, offsets)
    out = tmp_path / "scene.tif"
    result = CliRunner().invoke(app, ["convert", str(safe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scene = read_scene(out)
    assert scene.acquisition.datetime == datetime(2024, 12, 13, 8, 23, 19, 24000, tzinfo=UTC)
    assert scene.acquisition.sensor == "Sentinel-2B" and scene.acquisition.id.startswith("S2B_MSIL2A_20241213")
    cloud = np.zeros(refl.shape[1:], bool)
    cloud[20:40, 10:30] = True
    assert not scene.valid[cloud].any() and not scene.valid[0, 0]
    assert scene.valid.sum() == scene.valid.size - cloud.sum() - 1
    assert np.allclose(scene.bands[:, scene.valid], refl[:, scene.valid], atol=6e-5)


def test_a_product_folder_missing_a_band_is_named(tmp_path):
    dn = np.full((4, 20, 20), 1500, np.uint16)
    safe = _safe(tmp_path, dn, np.full((10, 10), 4, np.uint16))
    next(safe.glob("GRANULE/*/IMG_DATA/R10m/*_B08_10m.jp2")).unlink()
    result = CliRunner().invoke(app, ["convert", str(safe), "--out", str(tmp_path / "x.tif")])
    assert result.exit_code == 2 and "no 10 m B08 image" in result.output and not (tmp_path / "x.tif").exists()
    zipped = CliRunner().invoke(app, ["convert", str(tmp_path / "S2B_MSIL2A_x.zip"), "--out", str(tmp_path / "x.tif")])
    assert zipped.exit_code == 2 and "unzip the product first" in zipped.output
