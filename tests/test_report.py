"""The report folder: files and schema, SIMULATED marking, escaping, chips that show what they claim, regeneration."""

from __future__ import annotations

import csv
import json
import re
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.chips import CAPTION_HEIGHT, render_chip, window_around
from pipeline.cli import app
from pipeline.config import BasewatchConfig
from pipeline.georef import pixel_to_map
from pipeline.geotiff import read_scene
from pipeline.report import render_report
from pipeline.store import open_store
from pipeline.types import Alert
from tests.report_world import AIRCRAFT_REFLECTANCE, build_world

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build_world(tmp_path_factory.mktemp("world"))
    with open_store(w.data_dir) as store:
        folder = render_report(store, w.run_id, w.data_dir)
    return w, folder


def test_report_folder_has_every_output_and_alerts_json_follows_the_schema(world):
    w, folder = world
    assert folder == w.data_dir / "reports" / w.run_id
    for name in ("index.html", "alerts.json", "detections.geojson", "columns.geojson", "alerts.geojson",
                 "aois.geojson", "observations.csv"):
        assert (folder / name).is_file(), name
    doc = json.loads((folder / "alerts.json").read_text())
    assert {"run_id", "simulated", "source", "model", "alerts"} <= set(doc)
    assert doc["run_id"] == w.run_id and doc["simulated"] is True and doc["model"] == "classical-1.0"
    assert [a["kind"] for a in doc["alerts"]] == ["airlift_surge", "outbound_columns"]  # high before medium
    for a in doc["alerts"]:
        assert {"id", "aoi", "kind", "severity", "confidence", "first_seen", "last_seen", "acquisitions", "baseline",
                "current", "evidence"} <= set(a)
        assert a["evidence"], "each alert has chips"
        for chip in a["evidence"]:
            assert (folder / chip).is_file() and Image.open(folder / chip).size[0] > 0
        assert a["first_seen"].startswith("2024-12-")
    surge = doc["alerts"][0]
    assert {Path(p).name.rsplit("-", 1)[1] for p in surge["evidence"]} == {"before.png", "after.png"}


def test_geojson_and_csv_are_objects_format_and_say_simulated(world):
    w, folder = world
    dets = json.loads((folder / "detections.geojson").read_text())
    assert dets["type"] == "FeatureCollection" and dets["simulated"] is True
    classes = {f["properties"]["class"] for f in dets["features"]}
    assert classes == {"large_aircraft", "vehicle"}
    lon, lat = dets["features"][0]["geometry"]["coordinates"]
    assert 35.0 < lon < 37.0 and 34.0 < lat < 36.5  # lon/lat near Khmeimim, not UTM metres
    cols = json.loads((folder / "columns.geojson").read_text())
    assert [f["properties"]["direction"] for f in cols["features"]] == ["outbound"]
    assert cols["features"][0]["geometry"]["type"] == "LineString"
    alerts = json.loads((folder / "alerts.geojson").read_text())
    assert alerts["simulated"] is True and len(alerts["features"]) == 2
    surge = next(f for f in alerts["features"] if f["properties"]["kind"] == "airlift_surge")
    assert surge["geometry"]["type"] == "MultiPoint" and len(surge["geometry"]["coordinates"]) == 2
    # the AOI as the run counted it, in the layout `basewatch aoi import` reads back
    aois = json.loads((folder / "aois.geojson").read_text())
    assert aois["simulated"] is True and {f["properties"]["aoi"] for f in aois["features"]} == {"khmeimim"}
    from pipeline.aoi_geojson import aoi_from_geojson
    from pipeline.config import load_aoi

    assert aoi_from_geojson(aois).to_aoi() == load_aoi("khmeimim")
    rows = list(csv.DictReader((folder / "observations.csv").open()))
    assert len(rows) == 5 and {r["simulated"] for r in rows} == {"true"}
    assert [int(r["large_aircraft"]) for r in rows] == [2, 2, 0, 4, 4]
    assert [int(r["large_aircraft_confident"]) for r in rows] == [2, 2, 0, 4, 3]  # one marginal on the last date
    assert rows[4]["outbound_vehicles"] == "6" and float(rows[2]["valid_fraction"]) < 0.5
    # what the diff concluded from each pass, alerting or not
    assert [r["events"] for r in rows] == ["", "outbound_columns 0.15", "", "airlift_surge 0.85",
                                           "outbound_columns 0.60"]
    html = (folder / "index.html").read_text()
    assert "<span class=\"event\">outbound_columns 0.15</span>" in html


def test_html_shows_banner_header_alerts_and_links_every_local_file(world):
    w, folder = world
    html = (folder / "index.html").read_text()
    assert 'id="simulated-banner"' in html and "SIMULATED" in html
    for text in ("Khmeimim air base", "airlift_surge", "outbound_columns", "classical-1.0", w.run_id,
                 "2024-12-01 to 2024-12-31", "(cloudy)"):
        assert text in html, text
    assert "http://" not in html and "https://" not in html  # offline: nothing fetched from the internet
    for src in re.findall(r'(?:src|href)="([^"#:]+)"', html):
        assert (folder / src).exists(), src


def test_latest_points_at_the_newest_run_and_an_old_run_does_not_move_it(world):
    w, folder = world
    latest = w.data_dir / "reports" / "latest"
    assert (latest / "index.html").read_text() == (folder / "index.html").read_text()
    with open_store(w.data_dir) as store:
        newer = store.begin_run(BasewatchConfig(), source="simulated", simulated=True, model="classical-1.0",
                                aois=[w.aoi], start=date(2024, 12, 1), end=date(2024, 12, 31))
        store.finish_run(newer, "ok", {})
        render_report(store, newer, w.data_dir)
        assert latest.resolve().name == newer
        # a run that changed nothing still shows the alerts that are open at its AOIs, apart from its own
        doc = json.loads((latest / "alerts.json").read_text())
        assert doc["alerts"] == [] and {a["kind"] for a in doc["open_alerts"]} == {"airlift_surge", "outbound_columns"}
        assert all((latest / p).is_file() for a in doc["open_alerts"] for p in a["evidence"])
        page = (latest / "index.html").read_text()
        assert "This run raised or updated no alert." in page and "Still open from earlier runs (2)" in page
        render_report(store, w.run_id, w.data_dir)  # regenerating the older one leaves latest alone
        assert latest.resolve().name == newer


def test_cli_report_regenerates_from_the_store_alone(world, tmp_path):
    w, folder = world
    # delete the folder; the CLI rebuilds it without any detector
    shutil.rmtree(folder)
    result = CliRunner().invoke(app, ["report", w.run_id, "--data-dir", str(w.data_dir)])
    assert result.exit_code == 0, result.output
    assert (folder / "index.html").is_file() and (folder / "alerts.json").is_file()
    bad = CliRunner().invoke(app, ["report", "no-such-run", "--data-dir", str(w.data_dir)])
    assert bad.exit_code == 2 and "no run 'no-such-run'" in bad.output
    empty = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "no basewatch store" in empty.output


def test_text_from_configs_and_data_is_escaped(tmp_path):
    w = build_world(tmp_path, aoi_name=EVIL, n_dates=5)
    with open_store(w.data_dir) as store:
        alert = store.alerts()[0]
        store.upsert_alert(w.run_id, Alert(**{**vars(alert), "kind": f"kind{EVIL}", "baseline": {EVIL: 1}}))
        folder = render_report(store, w.run_id, w.data_dir)
    html = (folder / "index.html").read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    # the file names built from the AOI name stay inside the report folder
    for path in folder.rglob("*"):
        assert folder in path.resolve().parents or path.resolve() == folder
    assert json.loads((folder / "alerts.json").read_text())["alerts"][0]["aoi"] == EVIL


def test_chip_shows_the_planted_aircraft_at_the_detection(world):
    """A planted aircraft's pixels are inside its chip, at the place the chip says, and bright in the PNG."""
    w, folder = world
    acq = next(iter(w.planted))
    with open_store(w.data_dir) as store:
        scene = read_scene(store.acquisition(w.aoi, acq).scene_path)
        dets = store.detections(w.aoi, acq)
    for row, col in w.planted[acq]:
        x, y = pixel_to_map(scene.transform, row + 0.5, col + 0.5)
        det = min(dets, key=lambda d: (d.x - x) ** 2 + (d.y - y) ** 2)
        window = window_around(scene.grid, det.x, det.y, 48)
        chip = render_chip(scene, window, folder / "probe.png", detections=dets, highlight=[det.id])
        assert window.contains(x, y)
        c, r = window.pixel_of(x, y)
        assert abs(c - window.cols / 2) <= 1 and abs(r - window.rows / 2) <= 1  # centred on the detection
        png = np.asarray(Image.open(chip.path).convert("RGB")).astype(int)
        assert png.shape[0] == window.rows * chip.zoom + CAPTION_HEIGHT
        u, v = chip.image_xy(x, y)
        centre = png[int(v), int(u)]
        assert centre.min() > 240, "the aircraft is white where the chip puts it"
        background = np.median(png[: window.rows * chip.zoom], axis=(0, 1))
        assert background.max() < 200
        # and the aircraft is exactly where the scene has it: the crop's brightest pixels
        crop = scene.band("B04")[window.row0:window.row0 + window.rows, window.col0:window.col0 + window.cols]
        rr, cc = np.nonzero(crop >= AIRCRAFT_REFLECTANCE - 1e-6)
        assert rr.min() <= r <= rr.max() + 1 and cc.min() <= c <= cc.max() + 1
        assert det.id in chip.detection_ids


def test_chip_near_the_scene_edge_shifts_but_keeps_the_object(world):
    w, _ = world
    with open_store(w.data_dir) as store:
        scene = read_scene(store.acquisition(w.aoi, w.acquisitions[0]).scene_path)
    x, y = pixel_to_map(scene.transform, 2.5, scene.width - 3.5)  # 2 px from the top-right corner
    window = window_around(scene.grid, x, y, 64)
    assert (window.row0, window.col0 + window.cols) == (0, scene.width)
    assert window.rows == window.cols == 64 and window.contains(x, y)


def test_latest_falls_back_to_a_redirect_folder_where_symlinks_fail(tmp_path, monkeypatch):
    from pipeline import report as report_module

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not supported here (test)")

    monkeypatch.setattr(report_module.os, "symlink", no_symlinks)
    reports = tmp_path / "reports"
    (reports / "run-a").mkdir(parents=True)
    latest = report_module.point_latest(reports, "run-a")
    assert latest.is_dir() and not latest.is_symlink()
    assert (latest / "RUN_ID").read_text().strip() == "run-a"
    assert 'url=../run-a/index.html' in (latest / "index.html").read_text()
    report_module.point_latest(reports, "run-b")  # moves on
    assert (latest / "RUN_ID").read_text().strip() == "run-b"
    monkeypatch.undo()
    assert report_module.point_latest(reports, "run-a").resolve() == (reports / "run-a").resolve()


def test_half_built_folders_of_a_killed_report_are_swept(world):
    import os
    import time

    w, folder = world
    stale = w.data_dir / "reports" / f".{w.run_id}.abandoned"
    (stale / "chips").mkdir(parents=True)
    fresh = w.data_dir / "reports" / ".someone-else.building"
    fresh.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    with open_store(w.data_dir) as store:
        render_report(store, w.run_id, w.data_dir)
    assert not stale.exists() and fresh.exists()  # only what is clearly abandoned
    fresh.rmdir()


def test_a_run_on_real_imagery_has_no_simulated_banner(tmp_path):
    w = build_world(tmp_path, simulated=False, n_dates=4)
    with open_store(w.data_dir) as store:
        folder = render_report(store, w.run_id, w.data_dir)
    html = (folder / "index.html").read_text()
    assert 'id="simulated-banner"' not in html and "(SIMULATED)" not in html
    assert json.loads((folder / "alerts.json").read_text())["simulated"] is False
    assert json.loads((folder / "detections.geojson").read_text())["simulated"] is False
    assert {r["simulated"] for r in csv.DictReader((folder / "observations.csv").open())} == {"false"}


def test_report_evidence_chips_show_the_new_aircraft_after_and_not_before(world):
    """The airlift alert's own chips: both planted aircraft white in the 'after' chip, absent in the 'before' one."""
    w, folder = world
    doc = json.loads((folder / "alerts.json").read_text())
    surge = next(a for a in doc["alerts"] if a["kind"] == "airlift_surge")
    before = next(p for p in surge["evidence"] if p.endswith("before.png"))
    after = next(p for p in surge["evidence"] if p.endswith("after.png"))
    acq = next(iter(w.planted))
    with open_store(w.data_dir) as store:
        scene = read_scene(store.acquisition(w.aoi, acq).scene_path)
    centres = [pixel_to_map(scene.transform, r + 0.5, c + 0.5) for r, c in w.planted[acq]]
    cx, cy = np.mean([p[0] for p in centres]), np.mean([p[1] for p in centres])
    window = window_around(scene.grid, cx, cy, BasewatchConfig().report.chip_size_px)
    zoom = 4
    after_png = np.asarray(Image.open(folder / after).convert("RGB")).astype(int)
    before_png = np.asarray(Image.open(folder / before).convert("RGB")).astype(int)
    assert after_png.shape == before_png.shape == (window.rows * zoom + CAPTION_HEIGHT, window.cols * zoom, 3)
    for x, y in centres:
        c, r = window.pixel_of(x, y)
        u, v = int(c * zoom), int(r * zoom)
        assert after_png[v, u].min() > 240, "aircraft shown where it is, on the alert date"
        assert before_png[v, u].max() < 200, "and not there on the baseline date"


def test_figures_are_formatted_for_people():
    from pipeline.report import format_figure

    assert format_figure({"expected_now": 1.6923, "median": 2.0, "zones": ["a", "b"]}) == \
        "expected now 1.69, median 2, zones a, b"
    assert format_figure({"airlift": {"count": 4, "coverage": 1.0}, "columns": {"vehicles": 12}}) == \
        "airlift (count 4, coverage 1); columns (vehicles 12)"
    assert [format_figure(v) for v in (None, True, 3.0, 0.125, "x")] == ["–", "yes", "3", "0.12", "x"]
    # the signals behind a withdrawal: one line each, oldest first, without acquisition ids
    signals = [{"kind": "outbound_columns", "acquisition_id": "sim-b", "when": "2024-12-18T08:25:10+00:00",
                "confidence": 0.75},
               {"kind": "airlift_surge", "acquisition_id": "sim-a", "when": "2024-12-13T08:25:00+00:00",
                "confidence": 0.6}]
    assert format_figure({"signals": signals}) == \
        "signals 2024-12-13 airlift surge (confidence 0.6); 2024-12-18 outbound columns (confidence 0.75)"


def test_a_drawdown_confirmed_on_its_second_low_look_shows_a_before_from_ahead_of_the_first(world, tmp_path):
    """A drawdown is confirmed on the second low look, and its figures list both looks. The 'before' chip must show
    the assets still there (the last clear pass before the first low look), not the first low look itself."""
    from dataclasses import replace

    from pipeline.report import _evidence_pairs, _Scenes

    w, _ = world
    first_low, second_low = w.acquisitions[3], w.acquisitions[4]
    with open_store(w.data_dir) as store:
        [alert] = [a for a in store.alerts(w.aoi) if a.kind == "outbound_columns"]
        drawdown = replace(alert, kind="asset_drawdown", acquisitions=[second_low], evidence=[],
                           current={"acquisitions": [first_low, second_low], "large_aircraft": {"count": 2}})
        args = (store, _Scenes(store))
        cfg = BasewatchConfig()
        pairs, before_id, after_id = _evidence_pairs(*args, drawdown, None, cfg, tmp_path, "d", 0.5)
        # without the first look in its figures, the same alert would be shown against that look
        _, naive_before, _ = _evidence_pairs(*args, replace(drawdown, current={}), None, cfg, tmp_path, "n", 0.5)
    assert after_id == second_low
    assert naive_before == first_low
    assert before_id == w.acquisitions[1]  # acquisitions[2] is clouded, so the clear pass before is the second
    # and the chips centre on what stood there before (the two base aircraft), not on the later arrivals
    scene = read_scene(next((w.data_dir / "scenes").glob(f"{before_id}.tif")))
    stood = [pixel_to_map(scene.transform, 60.5, col + 0.5) for col in (60, 90)]
    assert pairs and all(min(np.hypot(x - sx, y - sy) for sx, sy in stood) < 200 for x, y in (p.centre for p in pairs))
