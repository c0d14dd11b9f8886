"""Windowed inference: window grid, seam merging, GeoTIFF and in-memory paths, and the committed detector."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
import torch
from affine import Affine

from models.centernet import CLASSES, REG_CHANNELS, ModelSpec
from models.device import resolve_device
from pipeline.config import DetectorConfig
from pipeline.detect import (
    ArraySource,
    LearnedDetector,
    RasterSource,
    grid_windows,
    make_detector,
)
from pipeline.errors import ConfigError, ModelError, SceneError
from pipeline.geotiff import write_scene
from pipeline.types import Acquisition, Scene

torch.set_num_threads(1)


@pytest.mark.parametrize("size,overlap,h,w", [(64, 16, 200, 130), (64, 0, 64, 64), (64, 16, 40, 300)])
def test_window_cores_tile_the_raster_exactly_once(size, overlap, h, w):
    owners = np.zeros((h, w), int)
    for win in grid_windows(h, w, size, overlap):
        assert win.row_off >= 0 and win.row_off + win.height <= h and win.col_off + win.width <= w
        assert win.row_off <= win.core_row0 < win.core_row1 <= win.row_off + win.height
        owners[win.core_row0 : win.core_row1, win.core_col0 : win.core_col1] += 1
    assert np.all(owners == 1)


class BrightPixelNet(torch.nn.Module):
    """Stand-in network with a known answer: one large_aircraft peak on every 2x2 cell whose B08 > 0.5.

    Lets the seam tests check the window/merge logic without depending on what training learned.
    """

    def __init__(self):
        super().__init__()
        self.spec = ModelSpec()

    def forward(self, bands, valid):
        hot = torch.nn.functional.max_pool2d(bands[:, 3:4], 2) > 0.5
        n, _, h, w = hot.shape
        out = torch.zeros(n, len(CLASSES) + len(REG_CHANNELS), h, w)
        out[:, 0] = torch.where(hot[:, 0], 8.0, -8.0)
        out[:, 1] = -8.0
        out[:, 4] = np.log(60.0)
        out[:, 5] = np.log(60.0)
        return out


def _scene(h: int, w: int, spots: list[tuple[int, int]]) -> Scene:
    bands = np.full((4, h, w), 0.1, np.float32)
    for r, c in spots:
        bands[3, r : r + 2, c : c + 2] = 1.0  # a 2x2 spot: one output cell, possibly straddling a window seam
    return Scene(bands, ("B02", "B03", "B04", "B08"), Affine(10, 0, 500_000, 0, -10, 4_000_000), "EPSG:32636",
                 np.ones((h, w), bool), Acquisition("test", "t", "Sentinel-2A", datetime(2024, 12, 13, tzinfo=UTC)),
                 True)


def _fake_detector(window: int, overlap: int) -> LearnedDetector:
    det = LearnedDetector.__new__(LearnedDetector)
    det.cfg = DetectorConfig(window=window, overlap=overlap, batch_size=3, score_threshold=0.5)
    det.model = BrightPixelNet()
    det.device = torch.device("cpu")
    det.classes = CLASSES
    det.stride = 2
    det.heading_classes = {"vehicle"}
    det.meta = {}
    det.version = "test"
    det.thresholds = [0.5, 0.5]
    det.heading_net = None
    det.verifiers = {}
    det.verifier_floors = {}
    return det


def test_object_on_window_seam_is_found_once():
    # window 64, overlap 16: windows start at 0, 48, 96; the seams (core borders) lie at 56 and 104.
    spots = [(56, 56), (54, 104), (10, 30), (100, 10)]
    scene = _scene(160, 160, spots)
    found = _fake_detector(64, 16).detect(scene)
    single = _fake_detector(256, 0).detect(scene)
    assert len(single) == len(spots)
    assert len(found) == len(spots)
    got = sorted((round(d.x), round(d.y)) for d in found)
    assert got == sorted((round(d.x), round(d.y)) for d in single)


def test_geotiff_path_equals_in_memory_path_and_respects_valid_mask(tmp_path):
    scene = _scene(150, 170, [(20, 20), (80, 120), (140, 40)])
    scene.valid[70:90, 110:130] = False  # a cloud over the second spot
    path = write_scene(scene, tmp_path / "s.tif")
    det = _fake_detector(64, 16)
    mem = det.detect(scene)
    disk = det.detect_path(path)
    assert len(mem) == 2
    assert [(d.cls, round(d.x, 3), round(d.y, 3)) for d in mem] == [(d.cls, round(d.x, 3), round(d.y, 3))
                                                                      for d in disk]
    assert all(abs(d.lon - 33.0) < 1 and 30 < d.lat < 40 for d in disk)


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ModelError, match="basewatch train"):
        LearnedDetector(DetectorConfig(weights=str(tmp_path / "nope.pt")))
    with pytest.raises(SceneError, match="overlap"):
        grid_windows(100, 100, 64, 64)
    assert make_detector(DetectorConfig(name="classical")).name == "classical"


def test_device_auto_falls_back_to_the_cpu_and_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="detector.device is cuda.*auto or cpu"):
        LearnedDetector(DetectorConfig(device="cuda"))
    assert LearnedDetector(DetectorConfig(device="auto")).device == torch.device("cpu")


# ------------------------------------------------------------------ the committed weights


def _scene_with_aircraft(min_count: int = 2):
    """A held-out scene from the scene renderer (`basewatch simulate --held-out`), seed used nowhere else."""
    from models.evaluate import observable
    from pipeline.simulate.command import held_out_scene

    for index in range(12):
        sim = held_out_scene(31337, index, size=256)
        planes = [t for t in observable(sim.truth, sim.scene) if t.cls == "large_aircraft"]
        if len(planes) >= min_count:
            return sim.scene, planes
    raise AssertionError("no held-out scene with aircraft")


def test_committed_detector_finds_planted_aircraft():
    from pipeline.evaluation import match_class

    det = make_detector(DetectorConfig(threads=1))
    assert det.name == "learned"
    scene, planes = _scene_with_aircraft()
    found = det.detect(scene)
    result = match_class(found, planes, "large_aircraft")
    # measured recall on held-out scenes is ~0.7 (MODEL_CARD.md): most, not all, planted aircraft are found
    assert result.tp >= max(2, math.ceil(0.6 * len(planes))), (planes, found)
    assert result.fp <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: run on a GPU machine")
def test_gpu_finds_what_the_cpu_finds():
    scene, _ = _scene_with_aircraft()
    on = {dev: sorted(LearnedDetector(DetectorConfig(threads=1, device=dev)).detect(scene),
                      key=lambda d: (d.cls, round(d.x), round(d.y))) for dev in ("cpu", "cuda")}
    assert on["cpu"] and len(on["cpu"]) == len(on["cuda"])
    for a, b in zip(on["cpu"], on["cuda"], strict=True):
        assert a.cls == b.cls and abs(a.x - b.x) < 0.5 and abs(a.y - b.y) < 0.5 and abs(a.score - b.score) < 2e-3


class TwoLevelVehicleNet(BrightPixelNet):
    """Vehicle peaks only: B08 = 1.0 gives a confident peak (score ~1), B08 = 0.6 a faint one (score ~0.27)."""

    def forward(self, bands, valid):
        out = super().forward(bands, valid)
        level = torch.nn.functional.max_pool2d(bands[:, 3:4], 2)[:, 0]
        out[:, 0] = -8.0
        out[:, 1] = torch.where(level > 0.8, 8.0, torch.where(level > 0.5, -1.0, -8.0))
        return out


def test_faint_vehicle_peaks_are_candidates_never_detections():
    scene = _scene(128, 128, [(20, 20), (80, 90)])
    scene.bands[3, 80:82, 90:92] = 0.6  # the second spot is faint
    det = _fake_detector(128, 0)
    det.model = TwoLevelVehicleNet()
    det.cfg = DetectorConfig(window=128, overlap=0, score_threshold=0.5, column_candidate_score=0.25)
    found = det.detect_with_candidates(scene)
    strong, weak = found.detections, found.candidates
    assert found.unsure == frozenset()  # no heading network: every heading is the detector's own
    assert [d.cls for d in strong] == ["vehicle"] and strong[0].score > 0.9
    assert len(weak) == 1 and 0.25 <= weak[0].score < 0.5
    assert det.detect(scene) == strong  # plain detection never returns a candidate
    det.cfg = DetectorConfig(window=128, overlap=0, score_threshold=0.5, column_candidate_score=None)
    assert det.detect_with_candidates(scene).candidates == []


def test_strip_reads_give_every_window_exactly_its_pixels(tmp_path):
    rng = np.random.default_rng(3)
    scene = _scene(150, 170, [])
    scene.bands[:] = rng.random(scene.bands.shape, dtype=np.float32)
    scene.valid[40:60, 100:140] = False
    path = write_scene(scene, tmp_path / "s.tif")
    disk, memory = RasterSource(path), ArraySource(scene)
    disk.STRIP_COLS = 70  # several strips per row of windows, windows straddling strip ends
    try:
        for w in grid_windows(150, 170, 64, 16):
            (a, va), (b, vb) = disk.read(w), memory.read(w)
            assert np.array_equal(a, b) and np.array_equal(va, vb), w
    finally:
        disk.close()


def test_one_blob_is_a_transport_or_a_fighter_never_both():
    from pipeline.detect import merge_duplicates

    classes = ("large_aircraft", "vehicle", "small_aircraft")
    # (class, score, row, col, length_m, ...): a transport, a weaker fighter peak on it, a fighter 8 px away,
    # and a truck on the transport (other group: kept)
    raw = [(0, 0.9, 50.0, 50.0, 45.0, 40.0, 0.0, 0.0), (2, 0.6, 50.5, 50.5, 20.0, 15.0, 0.0, 0.0),
           (2, 0.7, 50.0, 58.0, 20.0, 15.0, 0.0, 0.0), (1, 0.5, 50.0, 50.0, 8.0, 2.5, 0.0, 0.0)]
    kept = merge_duplicates(raw, classes)
    assert [(r[0], r[1]) for r in kept] == [(0, 0.9), (2, 0.7), (1, 0.5)]
    # the fighter wins where its peak is the stronger one
    kept = merge_duplicates([(0, 0.5, 50.0, 50.0, 30.0, 30.0, 0.0, 0.0), (2, 0.8, 50.0, 51.0, 20.0, 15.0, 0.0, 0.0)],
                            classes)
    assert [r[0] for r in kept] == [2]
    # a two-class model is unaffected
    assert len(merge_duplicates([raw[0], raw[3]], ("large_aircraft", "vehicle"))) == 2


@pytest.mark.parametrize("extra", [[], ["--tta-views", "4"], ["--norm-neighbourhood", "96"],
                                   ["--precision", "bfloat16"]])
def test_detect_command_writes_the_planted_aircraft_as_geojson(tmp_path, extra):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.evaluation import match_class
    from pipeline.objects import read_objects

    scene, planes = _scene_with_aircraft()
    path = write_scene(scene, tmp_path / "scene.tif")
    out = tmp_path / "found.geojson"
    result = CliRunner().invoke(app, ["detect", str(path), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    found = read_objects(out, crs=scene.crs)
    assert match_class(found, planes, "large_aircraft").tp >= 2
    bad = CliRunner().invoke(app, ["detect", str(path), "--out", str(out), "--tta-views", "3"])
    assert bad.exit_code == 2 and "--tta-views: Input should be 1, 4 or 8" in bad.output
    bad = CliRunner().invoke(app, ["detect", str(path), "--out", str(out), "--norm-neighbourhood", "-1"])
    assert bad.exit_code == 2 and "--norm-neighbourhood: Input should be greater than or equal to 0" in bad.output


def test_detect_uses_the_configs_heading_network_unless_told_none(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = write_scene(_scene_with_aircraft()[0], tmp_path / "scene.tif")
    models = []
    for extra in ([], ["--heading-weights", "none"]):
        out = tmp_path / f"found{len(extra)}.geojson"
        result = CliRunner().invoke(app, ["detect", str(path), "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        models.append(json.loads(out.read_text())["model"])
    assert "+heading-crop-v1@" in models[0] and "heading-crop" not in models[1]


def test_detect_uses_the_configs_aircraft_verifier_unless_told_none(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = write_scene(_scene_with_aircraft()[0], tmp_path / "scene.tif")
    found = []
    for extra in ([], ["--verifier-weights", "none"]):
        out = tmp_path / f"found{len(extra)}.geojson"
        result = CliRunner().invoke(app, ["detect", str(path), "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        found.append(json.loads(out.read_text()))
    assert "+verify-crop-v1@06b29774b97d" in found[0]["model"]
    assert "verify-crop-v1@06b29774b97d" not in found[1]["model"]
    scores = [[f["properties"]["score"] for f in fc["features"] if f["properties"]["class"] == "large_aircraft"]
              for fc in found]
    assert scores[0] and min(scores[0]) >= 0.9  # the verifier's probability, kept at its calibrated 0.9
    assert scores[0] != scores[1]


def test_local_normalisation_reaches_the_network_and_changes_what_it_sees():
    """detector.norm_neighbourhood is applied by the detector (a 256 px scene is local at 96 px, untouched at 256)."""
    scene, _ = _scene_with_aircraft()
    whole = make_detector(DetectorConfig(threads=1))
    local = make_detector(DetectorConfig(threads=1, norm_neighbourhood=96))
    too_big = make_detector(DetectorConfig(threads=1, norm_neighbourhood=256))
    assert (whole.model.norm.neighbourhood, local.model.norm.neighbourhood) == (0, 96)
    scores = [sorted(round(d.score, 4) for d in det.detect(scene)) for det in (whole, local, too_big)]
    assert scores[0] != scores[1] and scores[0] == scores[2]


def test_bfloat16_finds_what_float32_finds():
    """detector.precision bfloat16 (autocast convolutions) moves scores by about 0.01 at most: the same objects
    at the same places, so it only changes what sits right at a threshold."""
    scene, _ = _scene_with_aircraft()
    cfg = DetectorConfig(threads=1, class_thresholds={"large_aircraft": 0.2, "vehicle": 0.2})
    full = make_detector(cfg).detect(scene)
    half = make_detector(cfg.model_copy(update={"precision": "bfloat16"})).detect(scene)
    assert full, "the scene has detections to compare"
    pairs = [(a, min(half, key=lambda b: (b.cls != a.cls, (b.x - a.x) ** 2 + (b.y - a.y) ** 2))) for a in full
             if abs(a.score - 0.2) > 0.03]  # far enough from the threshold to be found by both
    assert all(a.cls == b.cls and abs(a.x - b.x) <= 2 and abs(a.y - b.y) <= 2 and abs(a.score - b.score) < 0.03
               for a, b in pairs), [(a.score, b.score) for a, b in pairs]
    assert any(a.score != b.score for a, b in pairs)  # and bfloat16 did run: its scores are not float32's


def test_bfloat16_runs_the_verifiers_and_the_heading_network_in_bfloat16_too(monkeypatch):
    """detector.precision covers every network of the cascade: on the dense benchmark raster the verifiers were as
    slow as the detector, so bfloat16 for the detector alone left the runs' config under 5 Mpx/s."""
    from models.heading_net import HeadingRefiner
    from models.verify_net import Verifier
    from pipeline.config import load_config

    seen: dict[str, set] = {"verifier": set(), "heading": set()}

    def recording(original, key):
        def call(self, *args, **kwargs):
            seen[key].add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
            return original(self, *args, **kwargs)
        return call

    monkeypatch.setattr(Verifier, "probabilities", recording(Verifier.probabilities, "verifier"))
    monkeypatch.setattr(HeadingRefiner, "headings", recording(HeadingRefiner.headings, "heading"))
    from pipeline.simulate.command import held_out_scene

    scenes = [_scene_with_aircraft()[0], held_out_scene(4242, 3, size=256).scene]  # aircraft; moving trucks
    runs = load_config(None).detector.model_copy(update={"threads": 1})
    full = [make_detector(runs).detect(scene) for scene in scenes]
    assert seen == {"verifier": {torch.float32}, "heading": {torch.float32}}
    half = [make_detector(runs.model_copy(update={"precision": "bfloat16"})).detect(scene) for scene in scenes]
    assert seen == {"verifier": {torch.float32, torch.bfloat16}, "heading": {torch.float32, torch.bfloat16}}
    for cls, a, b in (("large_aircraft", full[0], half[0]), ("vehicle", full[1], half[1])):
        mine, theirs = ([d for d in found if d.cls == cls] for found in (a, b))
        assert mine and len(mine) == len(theirs), cls  # clear objects: found either way, at the same places
        assert all(min(math.hypot(d.x - e.x, d.y - e.y) for e in theirs) < 5 for d in mine), cls


def test_the_last_scenes_seconds_per_stage_are_recorded_and_add_up_to_no_more_than_its_time():
    import time

    from pipeline.simulate.command import held_out_scene

    scene = held_out_scene(4242, 3, size=256).scene
    det = make_detector(DetectorConfig(threads=1))  # the runs' cascade: heading network and aircraft verifier
    start = time.perf_counter()
    det.detect(scene)
    elapsed = time.perf_counter() - start
    assert set(det.stage_seconds) == {"network", "decode", "verifier", "heading_network"}
    assert all(v > 0 for v in det.stage_seconds.values())
    assert sum(det.stage_seconds.values()) <= elapsed
