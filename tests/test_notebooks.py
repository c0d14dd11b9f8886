"""The notebooks run top to bottom (nbclient) against a tiny real run, so they cannot rot; the review notebook's
verdicts become a labels pair that the trainer's reader (models.dataset.LabelledScenes) accepts."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import nbformat
import pytest

from pipeline.config import BasewatchConfig
from pipeline.review import open_run
from pipeline.run import run

nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[dev]')")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("nb") / "data"
    result = run(BasewatchConfig(), data_dir=data, source_kind="simulated", detector="classical", aois=["tartus"],
                 start=date(2024, 12, 8), end=date(2024, 12, 18), progress=False)
    assert result.processed >= 2 and result.report_dir is not None
    return data, result


def execute(name: str, data: Path, monkeypatch, **env) -> nbformat.NotebookNode:
    monkeypatch.setenv("BASEWATCH_DATA_DIR", str(data))
    monkeypatch.setenv("BASEWATCH_RUN_ID", "latest")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


def test_explore_notebook_shows_a_scene_with_truth_and_detections(tiny_run, monkeypatch):
    data, result = tiny_run
    nb = execute("explore.ipynb", data, monkeypatch)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert result.run_id in text and "'simulated': True" in text
    assert "ground-truth object(s)" in text and " no ground-truth" not in text  # truth re-rendered from the scenario
    assert len(outputs(nb, "image/png")) >= 2  # overview + scene figure


def test_review_notebook_saves_labels_the_trainer_reads(tiny_run, monkeypatch):
    data, _ = tiny_run
    nb = execute("review.ipynb", data, monkeypatch, BASEWATCH_REVIEW_DEMO="1")
    assert len(outputs(nb, "image/png")) >= 3  # time series, scene, grids
    labels_dir = data / "labels"
    pairs = sorted(labels_dir.glob("*.labels.geojson"))
    assert len(pairs) == 1
    tif = pairs[0].with_name(pairs[0].name.replace(".labels.geojson", ".tif"))
    assert tif.is_file()
    fc = json.loads(pairs[0].read_text())
    verdicts = [f["properties"]["verdict"] for f in fc["features"]]
    assert verdicts.count("right") == 1 and verdicts.count("missed") == 1 and "wrong" not in verdicts
    assert fc["simulated"] is True
    session = open_run(data)
    try:
        wrong = [d for d, v in session.verdicts().items() if v == "wrong"]
        assert len(wrong) == 1
        assert wrong[0] not in {f["properties"].get("detection_id") for f in fc["features"]}
        acq = fc["acquisition_id"]
        kept = len(session.detections("tartus", acq))  # all detections but the wrong one, plus the missed one
        assert len(fc["features"]) == kept
    finally:
        session.close()
    dataset = pytest.importorskip("models.dataset")
    scenes = dataset.LabelledScenes(labels_dir)
    assert len(scenes) == 1 and len(scenes.items[0].objects) == kept
