"""The network, its targets, training and checkpoints (tiny models and chips; CPU, one thread)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.centernet import (
    CLASSES,
    REG_CHANNELS,
    CenterNet,
    ModelSpec,
    fold_batchnorm,
    fold_derived,
    fold_stem,
)
from models.checkpoint import load_model, save_checkpoint
from models.dataset import LabelledObject, Sample, dihedral, to_targets
from models.targets import TargetObject, decode, encode, total_loss
from pipeline.errors import ModelError, SceneError

torch.set_num_threads(1)
TINY = ModelSpec(widths=(8, 8, 8))


def test_forward_shapes_and_valid_channel():
    model = CenterNet(TINY).eval()
    x = torch.rand(2, 4, 48, 64) * 0.3
    valid = torch.ones(2, 48, 64, dtype=torch.bool)
    out = model(x, valid)
    assert out.shape == (2, len(CLASSES) + len(REG_CHANNELS), 24, 32)
    normed = model.norm(x, valid)
    assert normed.shape == (2, TINY.in_channels, 48, 64)
    valid[1, :, :32] = False
    normed = model.norm(x, valid)
    assert torch.all(normed[1, :, :, :32][:-1] == 0)  # invalid pixels carry no signal, only valid=0
    assert torch.all(normed[1, -1, :, 32:] == 1)


def test_normalisation_removes_haze_offset_and_gain():
    torch.manual_seed(0)
    model = CenterNet(TINY).eval()
    x = torch.rand(1, 4, 64, 64) * 0.2
    valid = torch.ones(1, 64, 64, dtype=torch.bool)
    hazy = x * 0.6 + torch.tensor([0.12, 0.09, 0.06, 0.03])[None, :, None, None]
    assert torch.allclose(model.norm(x, valid), model.norm(hazy, valid), atol=1e-3)


def _two_grounds(side: int = 512) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int]]:
    """Dark textured vegetation over three quarters of a window, a strip of bright desert over the last quarter,
    and one identical +0.03 truck-sized bump on each: (bands, valid, bump on the dark side, bump on the bright)."""
    g = torch.Generator().manual_seed(3)
    edge = side - side // 4
    x = 0.05 + 0.01 * torch.rand(1, 4, side, side, generator=g)
    x[..., edge:] += 0.25
    dark, bright = (side // 2, side // 4), (side // 2, edge + side // 8)
    for r, c in (dark, bright):
        x[..., r, c] += 0.03
    return x, torch.ones(1, side, side, dtype=torch.bool), dark, bright


def test_local_normalisation_shows_an_object_on_bright_ground_as_on_dark_ground():
    """One median per window puts bright ground far out on the soft clip, where a truck's change all but vanishes;
    statistics of the neighbourhood (norm.neighbourhood) keep it as clear as the same truck on the usual ground."""
    model = CenterNet(TINY).eval()
    x, valid, dark, bright = _two_grounds()

    def bump(normed: torch.Tensor, at: tuple[int, int]) -> float:
        r, c = at
        return float(normed[0, 2, r, c] - normed[0, 2, r, c + 3])  # B04 at the bump minus its neighbour

    whole = model.norm(x, valid)
    assert bump(whole, bright) < 0.25 * bump(whole, dark)
    model.norm.neighbourhood = 96
    local = model.norm(x, valid)
    assert 0.7 < bump(local, bright) / bump(local, dark) < 1.4
    assert bump(local, bright) > 3 * bump(whole, bright)
    desert = (slice(200, 300), slice(420, 500))  # no longer pinned near the clip, as under the window's median
    assert float(whole[0, 2][desert].median()) > 11 and float(local[0, 2][desert].median()) < 4


def test_local_normalisation_leaves_small_windows_and_training_chips_alone():
    """A window under 1.5 neighbourhoods (a 96 px training chip) is normalised exactly as before."""
    model = CenterNet(TINY).eval()
    x, valid, _, _ = _two_grounds(128)
    before = model.norm(x, valid)
    model.norm.neighbourhood = 96
    assert torch.equal(model.norm(x, valid), before)


def test_local_normalisation_under_clouds_falls_back_to_the_window():
    model = CenterNet(TINY).eval()
    model.norm.neighbourhood = 96
    x, valid, _, _ = _two_grounds()
    valid[:, :, :300] = False  # a cloud over most of the window
    normed = model.norm(x, valid)
    assert torch.isfinite(normed).all()
    assert torch.all(normed[0, :-1, :, :300] == 0) and torch.all(normed[0, -1, :, 300:] == 1)


def test_folding_batchnorm_and_stem_keeps_outputs():
    torch.manual_seed(1)
    model = CenterNet(TINY)
    model.train()
    for _ in range(3):  # move the BN running statistics away from their defaults
        model(torch.rand(2, 4, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool))
    model.eval()
    x, v = torch.rand(1, 4, 32, 32), torch.ones(1, 32, 32, dtype=torch.bool)
    ref = model(x, v)
    assert torch.allclose(fold_batchnorm(model)(x, v), ref, atol=1e-4)
    v[0, :5] = False  # the space-to-depth stem folded into one 6x6 stride-2 conv is the same function
    ref = model(x, v)
    assert torch.allclose(fold_stem(model)(x, v), ref, atol=1e-4)
    # the band differences folded into the stem's weights: 5 input channels instead of 8, the same function
    assert torch.allclose(fold_derived(model)(x, v), ref, atol=1e-4)
    assert model.level1[0][0].in_channels == len(TINY.bands) + 1
    assert model.norm(x, v).shape[1] == len(TINY.bands) + 1


def test_encode_decode_round_trip():
    objs = [TargetObject(0, 21.3, 40.8, 69.0, 73.0, 45.0), TargetObject(1, 9.6, 9.2, 8.0, 2.5, 300.0, 20.0)]
    tg = encode(objs, 64, 64, 2)
    assert tg.heatmap[0, 10, 20] == 1.0 and tg.heatmap[1, 4, 4] == 1.0
    # Build the logits a perfect network would output and decode them.
    eps = 1e-4
    heat_logit = torch.logit(torch.from_numpy(tg.heatmap).clamp(eps, 1 - eps))
    reg = torch.from_numpy(tg.reg).clone()
    reg[0:2] = torch.logit(reg[0:2].clamp(eps, 1 - eps))
    out = torch.cat([heat_logit, reg])[None]
    dets = sorted(decode(out, 2, 0.5)[0], key=lambda d: d.cls_index)
    assert len(dets) == 2
    assert dets[0].row == pytest.approx(21.3, abs=1e-3) and dets[0].col == pytest.approx(40.8, abs=1e-3)
    assert dets[0].length_m == pytest.approx(69.0, rel=1e-3)
    assert dets[1].heading_deg == pytest.approx(300.0, abs=1e-2) and dets[1].speed_mps == pytest.approx(20.0, rel=1e-3)


def test_targets_ignore_slow_and_parked_trucks():
    objs = [LabelledObject("vehicle", 30.5, 30.5, 8, 2.5, 90, True, 15.0),
            LabelledObject("vehicle", 60.5, 60.5, 8, 2.5, 90, True, 1.0),  # too slow to see: ignored
            LabelledObject("vehicle", 90.5, 90.5, 8, 2.5, 90, False, 0.0),  # parked: background
            LabelledObject("small_aircraft", 20.5, 100.5, 22, 15, 0, False, 0.0),
            LabelledObject("vehicle", 100.5, 20.5, 8, 2.5, 90, True, 20.0, contrast=0.004)]  # below noise: ignored
    tg, weight = to_targets(objs, 128, 128)
    v = CLASSES.index("vehicle")
    assert tg.heatmap[v].max() == 1.0 and np.argwhere(tg.heatmap[v] == 1.0).tolist() == [[15, 15]]
    assert weight[v, 30, 30] == 0.0 and weight[v, 45, 45] == 1.0 and weight[v, 50, 10] == 0.0
    assert tg.heatmap[:, 10, 50].max() == 0.0


def _rainbow_sample(heading: float) -> Sample:
    """A bright dot whose blue image trails and red image leads along ``heading`` (like a moving truck)."""
    bands = np.zeros((4, 32, 32), np.float32)
    h = math.radians(heading)
    d = np.array([-math.cos(h), math.sin(h)]) * 3
    for b, t in ((0, -0.5), (2, 0.5)):
        r, c = (np.array([16.0, 16.0]) + d * t).round().astype(int)
        bands[b, r, c] = 1.0
    return Sample(bands, np.ones((32, 32), bool), [LabelledObject("vehicle", 16.5, 16.5, 8, 2.5, heading, True, 20)])


@pytest.mark.parametrize("k", range(8))
@pytest.mark.parametrize("heading", [0.0, 90.0, 30.0, 225.0])
def test_dihedral_keeps_heading_consistent_with_band_offset(k, heading):
    s = dihedral(_rainbow_sample(heading), k)
    blue = np.argwhere(s.bands[0] > 0.5)[0]
    red = np.argwhere(s.bands[2] > 0.5)[0]
    drow, dcol = red - blue
    measured = math.degrees(math.atan2(dcol, -drow)) % 360
    err = abs((measured - s.objects[0].heading_deg + 180) % 360 - 180)
    assert err < 20, (k, heading, measured, s.objects[0].heading_deg)


def test_tiny_training_run_decreases_loss():
    torch.manual_seed(0)
    model = CenterNet(TINY)
    rng = np.random.default_rng(0)
    batch = []
    for _ in range(4):  # bright 6x6 'aircraft' on noise, plus a blue/red 'truck'
        bands = (0.1 + 0.01 * rng.standard_normal((4, 64, 64))).astype(np.float32)
        r, c = rng.integers(8, 50, 2)
        bands[:, r : r + 6, c : c + 6] += 0.3
        objs = [LabelledObject("large_aircraft", r + 3.0, c + 3.0, 60, 60, 0, False, 0)]
        tr, tc = rng.integers(8, 56, 2)
        bands[0, tr, tc - 1] += 0.2
        bands[2, tr, tc + 1] += 0.2
        objs.append(LabelledObject("vehicle", tr + 0.5, tc + 0.5, 8, 2.5, 90.0, True, 20.0))
        batch.append((bands, objs))
    x = torch.from_numpy(np.stack([b for b, _ in batch]))
    valid = torch.ones(4, 64, 64, dtype=torch.bool)
    targets = [to_targets(o, 64, 64) for _, o in batch]
    heat = torch.stack([torch.from_numpy(t.heatmap) for t, _ in targets])
    reg = torch.stack([torch.from_numpy(t.reg) for t, _ in targets])
    mask = torch.stack([torch.from_numpy(t.reg_mask) for t, _ in targets])
    weight = torch.stack([torch.from_numpy(w) for _, w in targets])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        loss, _ = total_loss(model(x, valid), heat, reg, mask, 2, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_checkpoint_round_trip_and_mismatch_refusal(tmp_path):
    torch.manual_seed(2)
    model = CenterNet(TINY).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, {"weights_id": "abc"})
    loaded, meta = load_model(path)
    assert meta["weights_id"] == "abc"
    x, v = torch.rand(1, 4, 32, 32), torch.ones(1, 32, 32, dtype=torch.bool)
    assert torch.equal(loaded(x, v), model(x, v))
    with pytest.raises(ModelError, match=r"classes \['large_aircraft', 'vehicle', 'ship'\]"):
        load_model(save_checkpoint(tmp_path / "c.pt", CenterNet(ModelSpec(widths=(8, 8, 8),
                                                                           classes=(*CLASSES, "ship")))))
    with pytest.raises(ModelError, match="bands"):
        load_model(save_checkpoint(tmp_path / "b.pt", CenterNet(ModelSpec(widths=(8, 8, 8),
                                                                          bands=("B04", "B03", "B02", "B08")))))
    with pytest.raises(ModelError, match="version"):
        load_model(save_checkpoint(tmp_path / "v.pt", CenterNet(ModelSpec(widths=(8, 8, 8), version="old"))))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="basewatch train"):
        load_model(tmp_path / "missing.pt")


def test_training_resumes_to_the_same_weights(tmp_path):
    from models.train import TrainConfig, train

    def cfg(name: str) -> TrainConfig:
        return TrainConfig(steps=3, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                           checkpoint_every=1, checkpoint_dir=str(tmp_path / name), out=str(tmp_path / f"{name}.pt"))

    straight = train(cfg("a"), progress=False)
    assert train(cfg("b"), progress=False, stop_after=1).name == "last.pt"  # "killed" after one step
    resumed = train(cfg("b"), progress=False)
    a, meta_a = load_model(straight)
    b, meta_b = load_model(resumed)
    assert meta_a["weights_id"] == meta_b["weights_id"]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    with pytest.raises(ModelError, match="different training config"):
        train(cfg("b").model_copy(update={"lr": 1e-2}), progress=False)


def test_training_on_a_missing_gpu_is_a_clear_error(tmp_path, monkeypatch):
    from models.train import TrainConfig, train
    from pipeline.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = TrainConfig(steps=1, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1, device="cuda",
                      checkpoint_dir=str(tmp_path / "c"), out=str(tmp_path / "m.pt"))
    with pytest.raises(ConfigError, match="device is cuda, but this torch sees no CUDA GPU"):
        train(cfg, progress=False)
    assert cfg.fingerprint() == cfg.model_copy(update={"device": "cpu"}).fingerprint()  # where, not what


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: run on a GPU machine")
def test_training_on_the_gpu_resumes_and_loads_on_the_cpu(tmp_path):
    from models.train import TrainConfig, train

    cfg = TrainConfig(steps=4, batch_size=4, chip_size=32, widths=(8, 8, 8), workers=0, threads=1, device="cuda",
                      checkpoint_every=1, checkpoint_dir=str(tmp_path / "c"), out=str(tmp_path / "m.pt"))
    assert train(cfg, progress=False, stop_after=2).name == "last.pt"
    model, meta = load_model(train(cfg, progress=False))  # resumed on the GPU, loaded on the CPU
    assert meta["steps"] == 4 and "CPU" not in meta["hardware"]
    assert all(v.device.type == "cpu" and torch.isfinite(v).all() for v in model.state_dict().values()
               if v.is_floating_point())


def test_labelled_scenes_reader_crops_in_pixel_coordinates(tmp_path):
    from datetime import UTC, datetime

    from affine import Affine

    from models.dataset import LabelledScenes
    from pipeline.georef import object_at_pixel
    from pipeline.geotiff import write_scene
    from pipeline.objects import write_objects
    from pipeline.types import Acquisition, Scene

    t = Affine(10, 0, 500_000, 0, -10, 4_000_000)
    valid = np.ones((64, 80), bool)
    valid[:10, :10] = False
    scene = Scene(np.full((4, 64, 80), 0.1, np.float32), ("B02", "B03", "B04", "B08"), t, "EPSG:32636", valid,
                  Acquisition("user", "a", "Sentinel-2A", datetime(2024, 12, 13, tzinfo=UTC)), False)
    write_scene(scene, tmp_path / "a.tif")
    write_objects([object_at_pixel(t, "EPSG:32636", 30.5, 40.25, "large_aircraft", length_m=69.0, width_m=73.0),
                   object_at_pixel(t, "EPSG:32636", 5.5, 5.5, "vehicle", moving=True, speed_mps=20.0)],
                  tmp_path / "a.labels.geojson")
    ls = LabelledScenes(tmp_path)
    objs = {o.cls: o for o in ls.items[0].objects}
    assert objs["large_aircraft"].row == pytest.approx(30.5, abs=1e-3)
    assert objs["large_aircraft"].col == pytest.approx(40.25, abs=1e-3)
    assert objs["vehicle"].occluded and not objs["large_aircraft"].occluded
    crop = ls.crop(np.random.default_rng(0), 32)
    assert crop.bands.shape == (4, 32, 32)
    with pytest.raises(SceneError, match="not a folder"):
        LabelledScenes(tmp_path / "empty")


def test_torchvision_dihedral_equals_the_numpy_definition():
    """dihedral() (torchvision v2 flips + transpose) gives exactly the samples of the original numpy rot90 code."""
    from models.dataset import _moved

    def reference(sample, k):
        bands, valid, objs = sample.bands, sample.valid, sample.objects
        w = valid.shape[1]
        for _ in range(k % 4):
            bands, valid = np.rot90(bands, 1, axes=(1, 2)), np.rot90(valid, 1)
            objs = [_moved(o, w - o.col, o.row, None if o.heading_deg is None else (o.heading_deg - 90.0) % 360)
                    for o in objs]
            w = valid.shape[1]
        if k >= 4:
            bands, valid = np.swapaxes(bands, 1, 2), valid.T
            objs = [_moved(o, o.col, o.row, None if o.heading_deg is None else (270.0 - o.heading_deg) % 360)
                    for o in objs]
        return bands, valid, objs

    rng = np.random.default_rng(0)
    sample = Sample(rng.random((4, 6, 9), dtype=np.float32), rng.random((6, 9)) > 0.3,
                    [LabelledObject("vehicle", 1.3, 7.2, 7.0, 2.5, 33.0, True, 10.0, False, 0.02),
                     LabelledObject("large_aircraft", 4.9, 0.4, 60.0, 70.0, None, False, 0.0, False, 0.3)])
    for k in range(8):
        got = dihedral(sample, k)
        bands, valid, objs = reference(sample, k)
        assert np.array_equal(got.bands, bands) and np.array_equal(got.valid, valid), k
        for a, b in zip(got.objects, objs, strict=True):
            assert (a.row, a.col) == pytest.approx((b.row, b.col), abs=1e-9)
            assert (a.heading_deg is None) == (b.heading_deg is None)
            if a.heading_deg is not None:
                assert abs((a.heading_deg - b.heading_deg + 180) % 360 - 180) < 1e-9


def test_polarity_inversion_turns_bright_objects_dark_and_leaves_invalid_pixels():
    from models.dataset import invert_polarity

    bands = np.full((4, 8, 8), 0.2, np.float32)
    bands[:, 3, 3] = 0.5  # a bright object
    valid = np.ones((8, 8), bool)
    valid[0, 0] = False
    bands[:, 0, 0] = 0.0  # nodata stays 0
    out = invert_polarity(bands, valid)
    assert np.allclose(out[:, 3, 3], -0.1) and np.allclose(out[:, 5, 5], 0.2)  # 2 x median - value
    assert np.all(out[:, 0, 0] == 0.0)
    assert np.allclose(invert_polarity(out, valid), bands)


THREE = (*CLASSES, "small_aircraft")


def test_small_aircraft_class_learns_fighters_and_helicopters_only_when_the_model_has_it():
    objs = [LabelledObject("small_aircraft", 20.5, 100.5, 22, 15, 0, False, 0.0, contrast=0.05),
            LabelledObject("helicopter", 100.5, 20.5, 18, 18, 0, False, 0.0, contrast=0.05),
            LabelledObject("helicopter", 60.5, 60.5, 18, 18, 0, False, 0.0, contrast=0.003)]  # below noise: ignored
    tg2, _ = to_targets(objs, 128, 128)
    assert tg2.heatmap.max() == 0.0  # a two-class model: background
    tg3, weight = to_targets(objs, 128, 128, THREE)
    k = THREE.index("small_aircraft")
    assert np.argwhere(tg3.heatmap[k] == 1.0).tolist() == [[10, 50], [50, 10]]
    assert tg3.heatmap[:k].max() == 0.0
    assert weight[k, 30, 30] == 0.0 and weight[k, 40, 40] == 1.0


def test_three_class_checkpoint_loads_and_unknown_or_reordered_classes_are_refused(tmp_path):
    model = CenterNet(ModelSpec(widths=(8, 8, 8), classes=THREE))
    loaded, _ = load_model(save_checkpoint(tmp_path / "three.pt", model, {}))
    assert loaded.spec.classes == THREE and loaded.spec.out_channels == 3 + len(REG_CHANNELS)
    with pytest.raises(ModelError, match="small_aircraft"):
        load_model(save_checkpoint(tmp_path / "r.pt", CenterNet(ModelSpec(widths=(8, 8, 8),
                                                                           classes=("vehicle", "large_aircraft")))))
    with pytest.raises(ModelError, match="expected"):
        load_model(tmp_path / "three.pt", classes=CLASSES)  # a caller that demands exactly two classes


def test_transfer_to_a_new_class_keeps_every_old_output_and_starts_it_from_large_aircraft():
    from models.centernet import transfer_weights

    torch.manual_seed(0)
    old = CenterNet(ModelSpec(widths=(8, 8, 8))).eval()
    new = CenterNet(ModelSpec(widths=(8, 8, 8), classes=THREE)).eval()
    transfer_weights(old, new)
    x, v = torch.rand(1, 4, 32, 32), torch.ones(1, 32, 32, dtype=torch.bool)
    a, b = old(x, v), new(x, v)
    assert torch.equal(b[:, :2], a[:, :2]) and torch.equal(b[:, 3:], a[:, 2:])
    assert torch.equal(b[:, 2], a[:, CLASSES.index("large_aircraft")])
    with pytest.raises(ValueError, match="lacks classes"):
        transfer_weights(new, CenterNet(ModelSpec(widths=(8, 8, 8))))


def test_train_config_classes_are_checked_and_the_default_keeps_old_fingerprints():
    from pydantic import ValidationError

    from models.train import TrainConfig

    with pytest.raises(ValidationError, match="classes must be"):
        TrainConfig(classes=("large_aircraft", "vehicle", "ship"))
    assert TrainConfig(classes=CLASSES).fingerprint() == TrainConfig().fingerprint()
    assert TrainConfig(classes=THREE).fingerprint() != TrainConfig().fingerprint()
    # the default config's fingerprint from before the option existed (resumable checkpoints name it)
    assert TrainConfig().fingerprint() == "676735e6fd25"
    assert TrainConfig(norm_jitter=0.5).fingerprint() != TrainConfig().fingerprint()


def test_window_jitter_moves_training_statistics_only():
    """norm_jitter shows a share of training chips as parts of a larger window (their ground off-centre, often on
    the soft clip); evaluation and inference normalise exactly as without it."""
    torch.manual_seed(0)
    model = CenterNet(TINY)
    x, valid = torch.rand(64, 4, 32, 32) * 0.05 + 0.2, torch.ones(64, 32, 32, dtype=torch.bool)
    plain = model.norm(x, valid)
    model.norm.jitter = 0.5
    jittered = model.norm(x, valid)
    moved = (jittered - plain).abs().flatten(1).amax(dim=1) > 1e-6
    assert 16 < int(moved.sum()) < 48  # about half of the samples
    centre = jittered[moved, :4].flatten(2).median(dim=2).values.abs()
    assert float(centre.max()) > 6  # some ground far from zero, as in a window of other ground
    model.eval()
    assert torch.equal(model.norm(x, valid), plain)


def test_a_second_stage_adds_small_aircraft_to_two_class_weights(tmp_path):
    from models.train import TrainConfig, train

    first = train(TrainConfig(steps=1, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                              checkpoint_dir=str(tmp_path / "a"), out=str(tmp_path / "a.pt")), progress=False)
    second = train(TrainConfig(steps=2, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                               classes=THREE, init_from=str(first), fighter_rows=1.0,
                               checkpoint_dir=str(tmp_path / "b"), out=str(tmp_path / "b.pt")), progress=False)
    model, _ = load_model(second)
    assert model.spec.classes == THREE
    with pytest.raises(ModelError, match="does not fit"):
        train(TrainConfig(steps=1, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                          init_from=str(second), checkpoint_dir=str(tmp_path / "c"), out=str(tmp_path / "c.pt")),
              progress=False)


def test_training_only_a_new_class_leaves_every_other_output_bit_for_bit(tmp_path):
    from pydantic import ValidationError

    from models.centernet import transfer_weights
    from models.train import TrainConfig, train

    first = train(TrainConfig(steps=2, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                              checkpoint_dir=str(tmp_path / "a"), out=str(tmp_path / "a.pt")), progress=False)
    added = train(TrainConfig(steps=3, batch_size=4, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                              lr=0.05, classes=THREE, train_only_classes=("small_aircraft",), init_from=str(first),
                              fighter_rows=1.0, checkpoint_dir=str(tmp_path / "b"), out=str(tmp_path / "b.pt")),
                  progress=False)
    old, _ = load_model(first)
    new, _ = load_model(added)
    start = CenterNet(ModelSpec(widths=(8, 8, 8), classes=THREE)).eval()
    transfer_weights(old, start)
    x, v = torch.rand(2, 4, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool)
    a, b, s = old(x, v), new(x, v), start(x, v)
    assert torch.equal(b[:, :2], a[:, :2]) and torch.equal(b[:, 3:], a[:, 2:])  # the old classes, regressions
    assert not torch.equal(b[:, 2], s[:, 2])  # the new class did learn
    with pytest.raises(ValidationError, match="not among classes"):
        TrainConfig(train_only_classes=("small_aircraft",), init_from="x.pt")
    with pytest.raises(ValidationError, match="needs init_from"):
        TrainConfig(classes=THREE, train_only_classes=("small_aircraft",))


def test_fighters_parked_closer_than_the_output_stride_are_left_out_of_the_loss():
    objs = [LabelledObject("small_aircraft", 20.5, 20.5, 22, 17, 0, False, 0.0, contrast=0.05),
            LabelledObject("small_aircraft", 20.5, 22.3, 22, 17, 0, False, 0.0, contrast=0.05),  # 1.8 px: crowded
            LabelledObject("helicopter", 60.5, 60.5, 18, 18, 0, False, 0.0, contrast=0.05),
            LabelledObject("small_aircraft", 60.5, 64.5, 22, 17, 0, False, 0.0, contrast=0.05)]  # 4 px: both kept
    tg, weight = to_targets(objs, 96, 96, THREE)
    k = THREE.index("small_aircraft")
    assert np.argwhere(tg.heatmap[k] == 1.0).tolist() == [[30, 30], [30, 32]]
    assert weight[k, 10, 10] == 0.0 and weight[k, 10, 11] == 0.0


def test_distillation_loss_is_zero_on_the_teacher_and_pulls_only_the_teachers_classes():
    from models.targets import distillation_loss

    torch.manual_seed(1)
    teacher = torch.randn(2, 2 + len(REG_CHANNELS), 8, 8)
    teacher[:, 0, 3, 3] = 4.0  # a confident peak, so the regressions are compared there
    student = torch.cat([teacher[:, :2], torch.randn(2, 1, 8, 8), teacher[:, 2:]], dim=1).requires_grad_(True)
    assert distillation_loss(student, teacher, [0, 1]).item() == pytest.approx(0.0, abs=1e-7)
    moved = student.detach().clone()
    moved[:, 0] += 1.0
    moved[:, 3:] += 0.5
    moved.requires_grad_(True)
    loss = distillation_loss(moved, teacher, [0, 1])
    loss.backward()
    assert loss.item() > 0.1
    assert moved.grad[:, 2].abs().max() == 0.0  # the new class learns freely
    assert moved.grad[:, 0].abs().max() > 0 and moved.grad[:, 3:].abs().max() > 0
    # holding only large_aircraft: vehicles learn freely too, and the regressions are held only where the teacher
    # sees an aircraft (its confident peak at (3, 3), not the random vehicle logits elsewhere)
    vehicles_moved = student.detach().clone()
    vehicles_moved[:, 1] += 1.0
    assert distillation_loss(vehicles_moved, teacher, [0, 1], hold=[0]).item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_loss(vehicles_moved, teacher, [0, 1]).item() > 0.01  # held by default
    moved.grad = None
    distillation_loss(moved, teacher, [0, 1], hold=[0]).backward()
    assert moved.grad[:, 1].abs().max() == 0.0 and moved.grad[:, 0].abs().max() > 0
    aircraft_seen = torch.sigmoid(teacher[:, 0:1]) > 0.1
    reg_grad = moved.grad[:, 3:].abs().amax(dim=1, keepdim=True)
    assert reg_grad[aircraft_seen].min() > 0 and reg_grad[~aircraft_seen].max() == 0.0


def test_training_with_a_teacher_logs_the_distillation_and_refuses_a_teacher_with_other_classes(tmp_path):
    import json

    from models.train import TrainConfig, train

    first = train(TrainConfig(steps=1, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                              checkpoint_dir=str(tmp_path / "a"), out=str(tmp_path / "a.pt")), progress=False)
    base = dict(steps=2, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1, classes=THREE,
                init_from=str(first), distill_from=str(first))
    out = train(TrainConfig(**base, checkpoint_dir=str(tmp_path / "b"), out=str(tmp_path / "b.pt")), progress=False)
    assert load_model(out)[0].spec.classes == THREE
    logged = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert logged and all("distill" in row and row["distill"] >= 0 for row in logged)
    assert TrainConfig(**base).fingerprint() != TrainConfig(**{**base, "distill_from": None}).fingerprint()
    held = TrainConfig(**base, distill_classes=("large_aircraft",))
    assert held.fingerprint() != TrainConfig(**base).fingerprint()
    with pytest.raises(ModelError, match="small_aircraft"):  # the teacher has two classes
        train(TrainConfig(**base, distill_classes=("small_aircraft",), checkpoint_dir=str(tmp_path / "c"),
                          out=str(tmp_path / "c.pt")), progress=False)
    with pytest.raises(ModelError, match="lacks its classes"):
        train(TrainConfig(steps=1, batch_size=2, chip_size=32, widths=(8, 8, 8), workers=0, threads=1,
                          distill_from=str(out), checkpoint_dir=str(tmp_path / "c"), out=str(tmp_path / "c.pt")),
              progress=False)


def test_heap_padding_is_accepted_on_linux():
    """The speed-up that keeps freed activations mapped is applied where basewatch runs (glibc Linux) and is
    idempotent; elsewhere it reports False and changes nothing."""
    import platform
    import sys

    from pipeline.heap import retain_freed_memory

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert retain_freed_memory() is glibc
    assert retain_freed_memory() is glibc


def test_peaks_above_a_floor_are_the_max_pool_peaks():
    """decode compares only the neighbourhoods of cells above the floor: the same peaks as a full 3x3 max pool,
    ties and borders included."""
    import torch.nn.functional as F

    from models.targets import _peaks

    torch.manual_seed(3)
    logits = torch.round(torch.randn(3, 2, 31, 37) * 2)  # rounded: many equal neighbours
    floor = math.log(0.3 / 0.7)
    pooled = (F.max_pool2d(logits, 3, 1, 1) == logits) & (logits >= floor)
    assert torch.equal(_peaks(logits, floor), torch.nonzero(pooled))
    assert torch.equal(_peaks(logits, None), torch.nonzero(F.max_pool2d(logits, 3, 1, 1) == logits))
    assert _peaks(logits, 100.0).shape == (0, 4)
