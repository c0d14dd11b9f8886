"""A folder of interchange GeoTIFFs as a source: search by footprint and date from tags, load onto the AOI grid."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from pipeline.config import BasewatchConfig, SourceConfig
from pipeline.errors import ConfigError, SceneError, SourceError
from pipeline.geotiff import write_scene
from pipeline.sources.files import FilesSource
from pipeline.sources.select import make_source
from pipeline.types import AOI, BAND_NAMES, Acquisition, GridSpec, Scene, reproject_geometry

AOI_SMALL = AOI(name="small", title="small", outline=box(35.940, 35.392, 35.952, 35.402))


def scene_on(grid: GridSpec, when: datetime, acq_id: str, *, simulated: bool = False, seed: int = 0) -> Scene:
    t = grid.transform
    xs = t.c + (np.arange(grid.width) + 0.5) * t.a
    ys = t.f + (np.arange(grid.height) + 0.5) * t.e
    x, y = np.meshgrid(xs, ys)
    base = (0.1 + 0.03 * np.sin(x / 300.0) + 0.03 * np.cos(y / 200.0)).astype(np.float32)
    bands = np.stack([base, base + 0.01, base + 0.02, base * 2])
    valid = np.ones((grid.height, grid.width), bool)
    valid[:3] = False
    acq = Acquisition(source="sentinelhub", id=acq_id, sensor="Sentinel-2B", datetime=when, cloud_cover=12.0)
    return Scene(bands=bands, band_names=BAND_NAMES, transform=grid.transform, crs=grid.crs, valid=valid,
                 acquisition=acq, simulated=simulated)


def padded(grid: GridSpec, pad: int, pixel: float = 10.0, crs: str | None = None) -> GridSpec:
    t = grid.transform
    return GridSpec(crs=crs or grid.crs, transform=Affine(pixel, 0, t.c - pad * 10, 0, -pixel, t.f + pad * 10),
                    width=int((grid.width + 2 * pad) * 10 / pixel), height=int((grid.height + 2 * pad) * 10 / pixel))


WHEN = datetime(2024, 12, 13, 8, 25, 41, tzinfo=UTC)


def test_search_uses_footprint_and_date_window_and_skips_bad_files(tmp_path, caplog):
    grid = AOI_SMALL.grid()
    write_scene(scene_on(grid, WHEN, "S2B_20241213T082541"), tmp_path / "a" / "one.tif")
    write_scene(scene_on(grid, datetime(2024, 11, 2, 8, 25, tzinfo=UTC), "old"), tmp_path / "two.tif")
    far = GridSpec(grid.crs, Affine(10, 0, 200000, 0, -10, 3000000), 50, 50)
    write_scene(scene_on(far, WHEN, "elsewhere"), tmp_path / "far.tif")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    source = FilesSource(tmp_path)
    found = source.search(AOI_SMALL, date(2024, 12, 1), date(2024, 12, 31))
    assert [a.id for a in found] == ["S2B_20241213T082541"]
    acq = found[0]
    assert acq.source == "files" and acq.datetime == WHEN and acq.sensor == "Sentinel-2B" and acq.cloud_cover == 12.0
    assert acq.footprint.contains(AOI_SMALL.outline.centroid)
    assert "broken.tif" in caplog.text
    assert [a.id for a in source.search(AOI_SMALL, date(2024, 11, 1), date(2024, 11, 2))] == ["old"]
    assert not source.simulated


def test_files_that_need_converting_are_skipped_with_the_command_named(tmp_path, caplog):
    """An export without the interchange tags, and an unzipped L2A product, in the folder: both skipped, each with
    a warning naming `basewatch convert` (the way into this folder for them)."""
    import rasterio

    grid = AOI_SMALL.grid()
    write_scene(scene_on(grid, WHEN, "S2B_20241213T082541"), tmp_path / "one.tif")
    with rasterio.open(tmp_path / "export.tif", "w", driver="GTiff", width=20, height=20, count=4, dtype="float32",
                       crs=grid.crs, transform=grid.transform) as dst:
        dst.write(np.full((4, 20, 20), 0.1, np.float32))
    product = tmp_path / "S2B_MSIL2A_20241213T082319_N0511_R021_T36SYD_20241213T110455.SAFE"
    product.mkdir()
    (product / "MTD_MSIL2A.xml").write_text("<n1:Level-2A_User_Product/>", encoding="utf-8")
    found = FilesSource(tmp_path).search(AOI_SMALL, date(2024, 12, 1), date(2024, 12, 31))
    assert [a.id for a in found] == ["S2B_20241213T082541"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("export.tif" in w and "basewatch convert" in w for w in warnings)
    assert any(product.name in w and "basewatch convert" in w for w in warnings)


def test_load_on_the_same_grid_returns_the_pixels(tmp_path):
    grid = AOI_SMALL.grid()
    original = scene_on(grid, WHEN, "x", simulated=True)
    write_scene(original, tmp_path / "x.tif")
    source = FilesSource(tmp_path)
    acq = source.search(AOI_SMALL, date(2024, 12, 13), date(2024, 12, 13))[0]
    assert source.simulated  # a SIMULATED tag in the folder marks the source
    scene = source.load(acq, AOI_SMALL)
    assert scene.grid == grid and scene.simulated and scene.acquisition.simulated
    np.testing.assert_allclose(scene.bands, original.bands)
    np.testing.assert_array_equal(scene.valid, original.valid)


def test_larger_aligned_file_is_cropped(tmp_path):
    grid = AOI_SMALL.grid()
    big = scene_on(padded(grid, 7), WHEN, "big")
    write_scene(big, tmp_path / "big.tif")
    source = FilesSource(tmp_path)
    scene = source.load(source.search(AOI_SMALL, date(2024, 12, 1), date(2024, 12, 31))[0], AOI_SMALL)
    assert scene.grid == grid
    np.testing.assert_allclose(scene.bands, big.bands[:, 7:-7, 7:-7])
    assert scene.valid.all()  # the invalid top rows of the big file lie outside the AOI grid


def test_other_utm_zone_is_reprojected(tmp_path):
    grid = AOI_SMALL.grid()
    minx, miny, maxx, maxy = reproject_geometry(AOI_SMALL.outline, "EPSG:4326", "EPSG:32637").bounds
    minx, maxy = np.floor(minx / 10) * 10 - 300, np.ceil(maxy / 10) * 10 + 300
    other = GridSpec("EPSG:32637", Affine(10, 0, minx, 0, -10, maxy), int((maxx - minx) / 10) + 60,
                     int((maxy - miny) / 10) + 60)
    write_scene(scene_on(other, WHEN, "zone37"), tmp_path / "z37.tif")
    source = FilesSource(tmp_path)
    scene = source.load(source.search(AOI_SMALL, date(2024, 12, 1), date(2024, 12, 31))[0], AOI_SMALL)
    assert scene.grid == grid and scene.crs == "EPSG:32636"
    assert scene.valid.mean() > 0.9
    assert 0.05 < float(scene.band("B02")[scene.valid].mean()) < 0.2


def test_coarse_file_is_refused_clearly(tmp_path):
    coarse = padded(AOI_SMALL.grid(), 12, pixel=60.0)
    write_scene(scene_on(coarse, WHEN, "coarse"), tmp_path / "coarse.tif")
    source = FilesSource(tmp_path)
    acq = source.search(AOI_SMALL, date(2024, 12, 1), date(2024, 12, 31))[0]
    with pytest.raises(SceneError, match="60 m pixels are too coarse"):
        source.load(acq, AOI_SMALL)


def test_prefers_the_file_on_the_aoi_grid_for_one_acquisition(tmp_path):
    grid = AOI_SMALL.grid()
    write_scene(scene_on(grid, WHEN, "same"), tmp_path / "on-grid.tif")
    write_scene(scene_on(padded(grid, 3), WHEN, "same"), tmp_path / "zz-larger.tif")
    source = FilesSource(tmp_path)
    found = source.search(AOI_SMALL, date(2024, 12, 1), date(2024, 12, 31))
    assert len(found) == 1
    assert source._entries["same"].path.name == "on-grid.tif"


def test_missing_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no such folder"):
        FilesSource(tmp_path / "nope").search(AOI_SMALL, date(2024, 12, 1), date(2024, 12, 2))


def test_make_source_picks_by_kind_and_credentials(tmp_path, monkeypatch):
    config = BasewatchConfig()
    files = make_source(config, kind="files", data_dir=tmp_path)
    assert isinstance(files, FilesSource) and files.folder == tmp_path / "scenes"
    custom = BasewatchConfig(source=SourceConfig(kind="files", files_dir=str(tmp_path / "mine")))
    assert make_source(custom, data_dir=tmp_path).folder == tmp_path / "mine"
    with pytest.raises(ConfigError, match="unknown source"):
        make_source(config, kind="ftp", data_dir=tmp_path)
    from pipeline.sources.select import credentials_available

    assert not credentials_available(config)
    auto = make_source(config, kind="auto", data_dir=tmp_path)
    assert auto.name == "simulated" and auto.simulated
    monkeypatch.setenv("SH_CLIENT_ID", "id")
    monkeypatch.setenv("SH_CLIENT_SECRET", "files-source-test-client-secret")
    assert credentials_available(config)
    real = make_source(config, kind="auto", data_dir=tmp_path, profile="sentinelhub")
    assert real.name == "sentinelhub" and not real.simulated
    assert real.credentials.base_url == "https://services.sentinel-hub.com"
    assert real.cache.root == tmp_path / "cache" / "sentinelhub"
