"""Scene GeoTIFF interchange: round trip, both encodings, and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.errors import SceneError
from pipeline.geotiff import read_scene, write_scene
from tests.helpers import flat_scene


def test_round_trip_keeps_pixels_grid_tags_and_mask(tmp_path):
    scene = flat_scene(64, 80, seed=3)
    scene.valid[10:20, 10:30] = False
    path = write_scene(scene, tmp_path / "s.tif")
    with rasterio.open(path) as src:
        assert src.descriptions == ("B02", "B03", "B04", "B08", "valid")
        assert src.dtypes[0] == "float32"
        assert src.crs.to_epsg() == 32636
        assert src.tags()["SIMULATED"] == "false"
        assert src.tags()["ACQUISITION_DATETIME"] == "2024-12-13T08:25:00Z"
    back = read_scene(path)
    np.testing.assert_array_equal(back.bands, scene.bands)
    np.testing.assert_array_equal(back.valid, scene.valid)
    assert back.transform == scene.transform
    assert back.acquisition.datetime == scene.acquisition.datetime
    assert back.acquisition.sensor == "Sentinel-2A"
    assert not list(tmp_path.glob("*.part")), "no temp file may survive a write"


def test_reads_uint16_with_scale_offset_in_any_band_order(tmp_path):
    path = tmp_path / "dn.tif"
    dn = {"B04": 2200, "B02": 1800, "B08": 4000, "B03": 2000}
    profile = dict(driver="GTiff", width=8, height=6, count=4, dtype="uint16", crs="EPSG:32636",
                   transform=Affine(10, 0, 760000, 0, -10, 3920000), nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        for i, (name, value) in enumerate(dn.items(), start=1):
            data = np.full((6, 8), value, np.uint16)
            data[0, 0] = 0
            dst.write(data, i)
            dst.set_band_description(i, name)
        dst.update_tags(SCALE="0.0001", OFFSET="-0.1", ACQUISITION_DATETIME="2024-12-13T08:25:00Z")
    scene = read_scene(path)
    assert scene.band_names == ("B02", "B03", "B04", "B08")
    assert scene.band("B02")[3, 3] == pytest.approx(0.08, abs=1e-6)
    assert scene.band("B08")[3, 3] == pytest.approx(0.30, abs=1e-6)
    assert not scene.valid[0, 0] and scene.valid[1, 1]


def test_geographic_crs_is_refused_with_a_hint(tmp_path):
    scene = flat_scene(8, 8)
    scene.crs = "EPSG:4326"
    scene.transform = Affine(0.0001, 0, 35.9, 0, -0.0001, 35.4)
    path = write_scene(scene, tmp_path / "geo.tif")
    with pytest.raises(SceneError, match="is geographic; scenes must be in a projected CRS"):
        read_scene(path)


def test_missing_bands_are_named(tmp_path):
    path = tmp_path / "rgb.tif"
    profile = dict(driver="GTiff", width=4, height=4, count=3, dtype="float32", crs="EPSG:32636",
                   transform=Affine(10, 0, 0, 0, -10, 0))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.zeros((3, 4, 4), np.float32))
        for i, name in enumerate(["B04", "B03", "B02"], start=1):
            dst.set_band_description(i, name)
    with pytest.raises(SceneError, match=r"lack \['B08'\]"):
        read_scene(path)


def test_truncated_file_is_a_scene_error(tmp_path):
    path = write_scene(flat_scene(256, 256, seed=1), tmp_path / "t.tif")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(SceneError, match="re-download"):
        read_scene(path)


def test_written_files_are_not_owner_only(tmp_path):
    import stat

    from pipeline import atomic

    path = write_scene(flat_scene(8, 8), tmp_path / "perm.tif")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~atomic._UMASK
    assert stat.S_IMODE(path.stat().st_mode) & 0o044, "others may read outputs under a usual umask"
