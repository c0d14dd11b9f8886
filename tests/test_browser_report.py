"""The report in a real browser (headless Chromium over the DevTools protocol): no console errors, every image
loads, the AOI names and alert kinds are on the page, no request leaves the folder, and a screenshot is saved.

Skipped, with the reason, only where no Chromium can be found (scripts/setup installs Debian's `chromium`).
Set BASEWATCH_SCREENSHOT=path to also copy the screenshot there (docs/report-screenshot.png is made this way).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.report import render_report
from pipeline.store import open_store
from tests.report_world import build_world

pytestmark = pytest.mark.browser

websocket = pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[dev]')")

from tests.cdp import Browser, find_chromium  # noqa: E402

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine: install Debian's `chromium` (scripts/setup does it as root) "
                    "or set BASEWATCH_CHROMIUM to a Chrome/Chromium binary")
    with Browser(exe) as b:
        yield b


def _check_page(report, folder: Path) -> None:
    assert report.console_errors == [], report.console_errors
    assert report.dialogs == [], "a script ran: " + repr(report.dialogs)
    assert report.requests_failed == []
    assert report.images, "the report has images"
    broken = [i for i in report.images if not (i["complete"] and i["naturalWidth"] > 0)]
    assert broken == [], broken
    outside = [u for u in report.requested_urls if not u.startswith(folder.resolve().as_uri())]
    assert outside == [], f"requests outside the report folder: {outside}"


def test_report_renders_cleanly_in_chromium(browser, tmp_path):
    w = build_world(tmp_path)
    with open_store(w.data_dir) as store:
        folder = render_report(store, w.run_id, w.data_dir)
    # open it through reports/latest, as a user would
    page = browser.open((w.data_dir / "reports" / "latest" / "index.html").resolve().as_uri())
    _check_page(page, folder)
    assert len(page.images) == 6  # 2 alerts x (before + after) + time series + overview
    for text in ("Khmeimim air base", "airlift_surge", "outbound_columns", "SIMULATED SCENES"):
        assert text in page.text, text
    shot = browser.screenshot(tmp_path / "report.png")
    image = Image.open(shot)
    assert image.size[0] >= 1000 and image.size[1] > 800
    pixels = np.asarray(image.convert("RGB").resize((64, 64))).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50, "the screenshot is not blank"
    target = os.environ.get("BASEWATCH_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)


def test_escaped_names_show_as_text_in_chromium(browser, tmp_path):
    w = build_world(tmp_path, aoi_name=EVIL, n_dates=4)
    with open_store(w.data_dir) as store:
        folder = render_report(store, w.run_id, w.data_dir)
    page = browser.open((folder / "index.html").resolve().as_uri())
    _check_page(page, folder)
    assert EVIL in page.text  # shown literally, as text
    assert page.dialogs == []
    assert EVIL in page.title or "basewatch report" in page.title


def test_run_then_report_latest_renders_cleanly_in_chromium(browser, tmp_path):
    """The acceptance path: `basewatch run` then `basewatch report latest`, opened in the browser."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    data = tmp_path / "data"
    runner = CliRunner()
    ran = runner.invoke(app, ["run", "--data-dir", str(data), "--source", "simulated", "--detector", "classical",
                              "--aoi", "tartus", "--start", "2024-12-08", "--end", "2024-12-18"])
    assert ran.exit_code == 0, ran.output
    regenerated = runner.invoke(app, ["report", "latest", "--data-dir", str(data)])
    assert regenerated.exit_code == 0, regenerated.output
    folder = (data / "reports" / "latest").resolve()
    for name in ("index.html", "alerts.json", "detections.geojson", "columns.geojson", "alerts.geojson",
                 "observations.csv"):
        assert (folder / name).is_file(), name
    page = browser.open((folder / "index.html").as_uri())
    _check_page(page, folder)
    assert "Tartus" in page.text and "SIMULATED SCENES" in page.text
    assert len(page.images) >= 2  # time series + overview at least
    doc = json.loads((folder / "alerts.json").read_text())
    for a in doc["alerts"] + doc["open_alerts"]:
        assert a["kind"] in page.text
