"""The review library behind the notebook: verdicts persist, missed objects land where the analyst put them, and
the labels pairs are what `basewatch train --labels` reads."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import ConfigError, StoreError
from pipeline.georef import map_to_pixel
from pipeline.geotiff import read_scene
from pipeline.objects import read_objects
from pipeline.review import open_run
from tests.report_world import build_world


@pytest.fixture
def world(tmp_path):
    return build_world(tmp_path)


def test_verdicts_survive_reopening_and_later_verdicts_win(world):
    s = open_run(world.data_dir)
    acq = world.acquisitions[3]
    grid = s.detection_grid(world.aoi, acq)
    assert grid.acquisition_id == acq and len(grid.ids) == 4 and grid._repr_png_()[:4] == b"\x89PNG"
    s.mark_right(grid.ids[0], grid.ids[1])
    s.mark_wrong(grid.ids[2])
    s.close()
    s = open_run(world.data_dir, world.run_id)
    assert s.verdicts() == {grid.ids[0]: "right", grid.ids[1]: "right", grid.ids[2]: "wrong"}
    s.mark(grid.ids[2], True)  # changed their mind
    assert s.verdicts()[grid.ids[2]] == "right"
    with pytest.raises(StoreError, match="no detection 'nope'"):
        s.mark("nope", True)
    s.close()


def test_missed_objects_by_pixel_or_lonlat_and_their_errors(world):
    s = open_run(world.data_dir)
    acq = world.acquisitions[0]
    obj = s.add_missed(world.aoi, acq, cls="large_aircraft", row=100.5, col=120.5, type="Il-76", length_m=47.0)
    scene = s.scene(world.aoi, acq)
    row, col = map_to_pixel(scene.transform, obj.x, obj.y)
    assert (round(row, 6), round(col, 6)) == (100.5, 120.5)
    again = s.add_missed(world.aoi, acq, cls="vehicle", lon=obj.lon, lat=obj.lat)
    assert abs(again.x - obj.x) < 0.01 and abs(again.y - obj.y) < 0.01
    with pytest.raises(ConfigError, match="class 'tank' is not one of"):
        s.add_missed(world.aoi, acq, cls="tank", row=1, col=1)
    with pytest.raises(ConfigError, match="outside the scene"):
        s.add_missed(world.aoi, acq, cls="vehicle", lon=0.0, lat=0.0)
    with pytest.raises(ConfigError, match="needs lon= and lat=, or row= and col="):
        s.add_missed(world.aoi, acq, cls="vehicle")
    assert len(s.missed(world.aoi)) == 2
    s.close()


def test_save_labels_writes_scene_and_objects_pairs_the_trainer_reads(world):
    s = open_run(world.data_dir)
    acq = world.acquisitions[3]
    dets = s.detections(world.aoi, acq)
    s.mark_right(dets[0].id)
    s.mark_wrong(dets[1].id)
    s.add_missed(world.aoi, acq, cls="large_aircraft", row=30.5, col=200.5)
    [path] = s.save_labels()
    assert path.parent == world.data_dir / "labels" and path.name.endswith(".labels.geojson")
    tif = path.with_name(path.name.replace(".labels.geojson", ".tif"))
    assert read_scene(tif).acquisition.id == acq  # the scene itself, next to its labels
    fc = json.loads(path.read_text())
    assert fc["aoi"] == world.aoi and fc["acquisition_id"] == acq and fc["simulated"] is True
    by_verdict = sorted(f["properties"]["verdict"] for f in fc["features"])
    assert by_verdict == ["missed", "right", "unreviewed", "unreviewed"]  # 4 detections - 1 wrong + 1 missed
    assert all("score" not in f["properties"] for f in fc["features"])
    objs = read_objects(path, crs=read_scene(tif).crs)
    assert {o.cls for o in objs} == {"large_aircraft"}
    # strict mode keeps only what the analyst confirmed or added
    [path] = s.save_labels(include_unreviewed=False)
    assert sorted(f["properties"]["verdict"] for f in json.loads(path.read_text())["features"]) == ["missed", "right"]
    dataset = pytest.importorskip("models.dataset")
    scenes = dataset.LabelledScenes(world.data_dir / "labels")
    assert len(scenes) == 1 and len(scenes.items[0].objects) == 2
    s.close()


def test_alerts_view_time_series_and_truth_of_a_hand_built_world(world):
    from pipeline.report import render_report
    from pipeline.store import open_store

    with open_store(world.data_dir) as store:
        render_report(store, world.run_id, world.data_dir)
    s = open_run(world.data_dir)
    view = s.alerts_view()
    assert "airlift_surge" in view.html and view.html.count("data:image/png;base64,") == 4
    assert "SIMULATED" in view.html and repr(view).startswith("[high] airlift_surge")
    assert s.time_series(world.aoi).axes
    assert s.latest_clear(world.aoi) == world.acquisitions[-1]
    assert "run <code>" in s._repr_html_()
    s.close()


def test_open_run_errors_say_what_to_do(tmp_path, world):
    with pytest.raises(StoreError, match="no basewatch store here"):
        open_run(tmp_path / "nothing")
    with pytest.raises(StoreError, match="no run 'x'"):
        open_run(world.data_dir, "x")


def test_ensure_report_writes_a_missing_report_from_the_store(world):
    s = open_run(world.data_dir)
    assert s.report_dir is None  # the hand-built world has no report yet
    folder = s.ensure_report()
    assert (folder / "alerts.json").is_file() and s.report_dir == folder
    assert s.ensure_report() == folder  # and leaves an existing one alone
    s.close()
