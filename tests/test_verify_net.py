"""The aircraft verifier: a crop classifier over the detector's large-aircraft peaks (models/verify_net.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.train_verify import VerifyTrainConfig, best_threshold, split, train_verifier
from models.verify_data import SampleSet
from models.verify_net import (
    SYMMETRIES,
    VerifyNet,
    VerifySpec,
    _apply,
    load_verify_net,
    logit_over_symmetries,
    save_verify_net,
)
from pipeline.config import DetectorConfig
from pipeline.detect import make_detector
from pipeline.errors import ModelError


def _blobs(n: int, rng: np.random.Generator, crop: int = 25) -> SampleSet:
    """Half of the crops hold a bright 5 px cross at the centre (an "aircraft"), half a bright 2 px spot (a
    "fighter"), both on textured ground; scores overlap, so only the crop can tell them apart."""
    ground = rng.uniform(0.1, 0.3, (n, 4, 1, 1)).astype(np.float32)
    crops = ground + rng.normal(0, 0.01, (n, 4, crop, crop)).astype(np.float32)
    label = np.arange(n) % 2 == 0
    c = crop // 2
    for k in range(n):
        if label[k]:
            crops[k, :, c - 2 : c + 3, c] += 0.15
            crops[k, :, c, c - 2 : c + 3] += 0.15
        else:
            crops[k, :, c : c + 2, c : c + 2] += 0.15
    score = rng.uniform(0.2, 0.7, n).astype(np.float32)
    return SampleSet(crops, np.ones((n, crop, crop), bool), score, label, (np.arange(n) // 8).astype(np.int32))


def test_mean_over_the_eight_symmetries_does_not_depend_on_how_the_crop_is_turned():
    torch.manual_seed(0)
    net = VerifyNet(VerifySpec(width=8, hidden=8)).eval()
    crops = torch.rand(3, 4, 25, 25)
    valid = torch.ones(3, 25, 25, dtype=torch.bool)
    scores = torch.tensor([0.3, 0.5, 0.9])
    assert net(crops, valid, scores).shape == (3,)
    base = logit_over_symmetries(net, crops, valid, scores)
    for view in SYMMETRIES[1:]:
        turned = logit_over_symmetries(net, _apply(crops, view).contiguous(), _apply(valid, view).contiguous(), scores)
        assert torch.allclose(base, turned, atol=1e-5), view
    assert not torch.allclose(logit_over_symmetries(net, crops, valid, scores, views=1), base)


def test_threshold_is_the_best_f1_of_the_kept_candidates():
    prob = np.array([0.95, 0.9, 0.8, 0.6, 0.3, 0.1])
    label = np.array([True, True, False, True, False, False])
    best = best_threshold(prob, label)
    assert (best["tp"], best["fp"], best["fn"]) == (3, 1, 0) and best["threshold"] <= 0.6
    assert best_threshold(np.array([0.9, 0.2]), np.array([True, False]))["threshold"] > 0.2


def test_validation_never_shares_a_scene_with_training():
    samples = _blobs(80, np.random.default_rng(1))
    train, val = split(samples, 3)
    assert set(val.group) == {7, 8, 9} and not set(train.group) & set(val.group)
    assert len(train) + len(val) == 80


def test_tiny_training_tells_crosses_from_spots_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setattr("models.train_verify.resolve_path", lambda p: tmp_path / p)
    torch.set_num_threads(1)
    samples = _blobs(160, np.random.default_rng(2))

    def cfg(sub: str) -> VerifyTrainConfig:
        return VerifyTrainConfig(steps=120, batch_size=32, lr=3e-3, width=8, hidden=16, val_scenes=4,
                                 out=str(tmp_path / sub / "v.pt"))

    net, meta = load_verify_net(train_verifier(cfg("a"), samples=samples))
    # the detector's score alone cannot separate them (drawn from the same range); the crop can
    assert best_threshold(samples.score, samples.label)["f1"] < 0.75
    assert meta["validation"]["f1"] >= 0.95, meta["validation"]
    assert 0 < meta["threshold"] < 1 and meta["floor"] == 0.2
    (tmp_path / "b").mkdir()
    assert train_verifier(cfg("b"), stop_after=100, samples=samples).name.endswith(".partial.pt")
    resumed, _ = load_verify_net(train_verifier(cfg("b"), samples=samples))
    for (name, a), b in zip(net.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), name


def test_checkpoint_round_trip_and_mismatch_refusal(tmp_path):
    torch.manual_seed(0)
    net = VerifyNet(VerifySpec(width=8, hidden=8)).eval()
    path = save_verify_net(tmp_path / "v.pt", net, {"weights_id": "x", "floor": 0.25, "threshold": 0.6})
    loaded, meta = load_verify_net(path)
    x = (torch.rand(2, 4, 25, 25), torch.ones(2, 25, 25, dtype=torch.bool), torch.tensor([0.3, 0.6]))
    assert torch.equal(loaded(*x), net(*x)) and meta["floor"] == 0.25
    blob = torch.load(path, weights_only=True)
    blob["spec"]["version"] = "verify-crop-v0"
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(ModelError, match="version"):
        load_verify_net(tmp_path / "old.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not readable"):
        load_verify_net(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="train-verifier"):
        load_verify_net(tmp_path / "missing.pt")


def test_verifier_rescores_aircraft_and_drops_its_rejects_leaving_vehicles_alone(tmp_path):
    from pipeline.simulate.command import held_out_scene

    scene = held_out_scene(4242, 3, size=256).scene
    torch.manual_seed(0)
    net = VerifyNet(VerifySpec(width=8, hidden=8)).eval()
    with torch.no_grad():
        net.mlp[-1].bias.fill_(3.0)  # an untrained net with a large bias: every peak is "an aircraft", p ~ 0.95
        net.mlp[-1].weight.mul_(0.01)
    accept = save_verify_net(tmp_path / "accept.pt", net, {"floor": 0.2, "threshold": 0.5, "weights_id": "t"})
    plain = make_detector(DetectorConfig(threads=1, heading_weights=None)).detect(scene)
    floor = make_detector(DetectorConfig(threads=1, heading_weights=None,
                                         class_thresholds={"large_aircraft": 0.2, "vehicle": 0.425})).detect(scene)
    verified = make_detector(DetectorConfig(threads=1, heading_weights=None, verifier_weights=str(accept)))
    assert "+verify-crop-v1@t" in verified.model_id
    got = verified.detect(scene)
    aircraft = lambda ds: sorted((round(d.x), round(d.y)) for d in ds if d.cls == "large_aircraft")  # noqa: E731
    vehicles = lambda ds: sorted((d.x, d.y, d.score) for d in ds if d.cls == "vehicle")  # noqa: E731
    assert aircraft(got) == aircraft(floor) and len(aircraft(floor)) > len(aircraft(plain))
    assert all(d.score > 0.9 for d in got if d.cls == "large_aircraft")
    assert vehicles(got) == vehicles(plain)
    strict = make_detector(DetectorConfig(threads=1, heading_weights=None, verifier_weights=str(accept),
                                          verifier_threshold=0.99))
    assert not aircraft(strict.detect(scene))


def _screen_case(n: int, seed: int):
    """An untrained small verifier, n blob crops, and their eight-view and single-view logits (screen tests)."""
    torch.manual_seed(1)
    net = VerifyNet(VerifySpec(width=8, hidden=8)).eval()
    samples = _blobs(n, np.random.default_rng(seed))
    crops, valid = torch.from_numpy(samples.crops), torch.from_numpy(samples.valid)
    scores = torch.from_numpy(samples.score)
    with torch.inference_mode():
        full = logit_over_symmetries(net, crops, valid, scores)
        one = logit_over_symmetries(net, crops, valid, scores, views=1)
    return net, crops, valid, scores, full, one


def test_screened_logits_are_the_eight_view_mean_wherever_one_view_does_not_decide_at_once():
    from models.verify_net import screened_logits

    net, crops, valid, scores, full, one = _screen_case(40, seed=3)
    with torch.inference_mode():
        p = torch.sigmoid(one)
        screen, accept = float(p.quantile(0.3)), float(p.quantile(0.7))  # a third rejected, a third accepted at once
        got = screened_logits(net, crops, valid, scores, screen=screen, accept=accept, pair_screen=0.0,
                              pair_accept=1.0, quad_screen=0.0, quad_accept=1.0)  # the later screens off
    middle = (p >= screen) & (p < accept)
    assert 5 < int(middle.sum()) < len(middle) - 10 and int((p >= accept).sum()) >= 5
    assert torch.allclose(got[middle], full[middle], atol=1e-5)
    assert torch.allclose(got[~middle], one[~middle], atol=1e-5)
    assert not torch.allclose(full[~middle], one[~middle], atol=1e-3)  # the views do differ there


def test_screened_logits_keep_the_two_view_mean_where_it_decides_and_the_eight_view_mean_elsewhere():
    from models.heading_net import SYMMETRIES
    from models.verify_net import screened_logits

    net, crops, valid, scores, full, one = _screen_case(60, seed=4)
    with torch.inference_mode():
        opposite = logit_over_symmetries(net, _apply(crops, SYMMETRIES[-1]).contiguous(),
                                         _apply(valid, SYMMETRIES[-1]).contiguous(), scores, views=1)
        pair = (one + opposite) / 2
        p2 = torch.sigmoid(pair)
        low, high = float(p2.quantile(0.3)), float(p2.quantile(0.7))
        got = screened_logits(net, crops, valid, scores, screen=0.0, accept=1.0, pair_screen=low, pair_accept=high,
                              quad_screen=0.0, quad_accept=1.0)
    decided = (p2 < low) | (p2 >= high)
    assert 10 < int(decided.sum()) < len(decided) - 10
    assert torch.allclose(got[decided], pair[decided], atol=1e-5)
    assert torch.allclose(got[~decided], full[~decided], atol=1e-5)
    assert not torch.allclose(pair[decided], full[decided], atol=1e-3)  # the other six views do move them


def test_screened_logits_keep_the_four_view_mean_where_it_decides_and_the_eight_view_mean_elsewhere():
    from models.heading_net import SYMMETRIES
    from models.verify_net import QUAD_VIEWS, screened_logits

    net, crops, valid, scores, full, one = _screen_case(60, seed=5)
    views = (0, len(SYMMETRIES) - 1, *QUAD_VIEWS)
    with torch.inference_mode():
        four = torch.stack([logit_over_symmetries(net, _apply(crops, SYMMETRIES[v]).contiguous(),
                                                  _apply(valid, SYMMETRIES[v]).contiguous(), scores, views=1)
                            for v in views]).mean(dim=0)
        p4 = torch.sigmoid(four)
        low, high = float(p4.quantile(0.3)), float(p4.quantile(0.7))
        got = screened_logits(net, crops, valid, scores, screen=0.0, accept=1.0, pair_screen=0.0, pair_accept=1.0,
                              quad_screen=low, quad_accept=high)
    decided = (p4 < low) | (p4 >= high)
    assert 10 < int(decided.sum()) < len(decided) - 10
    assert torch.allclose(got[decided], four[decided], atol=1e-5)
    assert torch.allclose(got[~decided], full[~decided], atol=1e-5)
    assert not torch.allclose(four[decided], full[decided], atol=1e-3)  # the last four views do move them


def _constant_verifier(path, cls: str, bias: float):
    """An untrained verifier whose output is dominated by a bias: it accepts (bias > 0) or rejects every peak."""
    torch.manual_seed(0)
    net = VerifyNet(VerifySpec(cls=cls, width=8, hidden=8)).eval()
    with torch.no_grad():
        net.mlp[-1].bias.fill_(bias)
        net.mlp[-1].weight.mul_(0.01)
    return save_verify_net(path, net, {"floor": 0.2, "threshold": 0.5, "weights_id": cls})


def test_vehicle_verifier_rejects_become_column_candidates_and_aircraft_stay_as_they_were(tmp_path):
    from pipeline.simulate.command import held_out_scene

    scene = held_out_scene(4242, 3, size=256).scene  # four moving trucks found there
    plain = make_detector(DetectorConfig(threads=1, heading_weights=None)).detect_with_candidates(scene)
    reject = _constant_verifier(tmp_path / "reject.pt", "vehicle", -5.0)
    checked = make_detector(DetectorConfig(threads=1, heading_weights=None, vehicle_verifier_weights=str(reject)))
    assert "+verify-crop-v1@vehicle" in checked.model_id
    got = checked.detect_with_candidates(scene)
    trucks = lambda ds: sorted((round(d.x), round(d.y)) for d in ds if d.cls == "vehicle")  # noqa: E731
    aircraft = lambda ds: sorted((d.x, d.y, d.score) for d in ds if d.cls == "large_aircraft")  # noqa: E731
    assert len(trucks(plain.detections)) >= 3 and not trucks(got.detections)
    # every truck the detector was sure of is now only a candidate, at its detector score
    assert set(trucks(plain.detections)) <= set(trucks(got.candidates))
    assert all(d.score >= 0.25 for d in got.candidates if d.cls == "vehicle")
    assert aircraft(got.detections) == aircraft(plain.detections)
    assert not trucks(checked.detect(scene))  # no candidates outside the column stage
    accept = _constant_verifier(tmp_path / "accept.pt", "vehicle", 5.0)
    both = DetectorConfig(threads=1, verifier_weights=str(accept), vehicle_verifier_weights=str(reject))
    with pytest.raises(ModelError, match="two verifiers"):
        make_detector(both)


def test_vehicle_verifier_rejects_under_the_candidate_floor_are_dropped_not_held(tmp_path):
    """detector.candidate_verifier_floor: a reject whose probability is under it is clutter, not a column
    candidate; at or above it, it stays one as before."""
    from pipeline.simulate.command import held_out_scene

    scene = held_out_scene(4242, 3, size=256).scene  # four moving trucks found there
    doubtful = _constant_verifier(tmp_path / "doubtful.pt", "vehicle", -1.0)  # every peak about 0.27: a reject
    cascade = dict(threads=1, heading_weights=None, vehicle_verifier_weights=str(doubtful))
    trucks = lambda ds: [d for d in ds if d.cls == "vehicle"]  # noqa: E731
    below = make_detector(DetectorConfig(**cascade, candidate_verifier_floor=0.25)).detect_with_candidates(scene)
    assert len(trucks(below.candidates)) >= 3 and not trucks(below.detections)
    above = make_detector(DetectorConfig(**cascade, candidate_verifier_floor=0.3)).detect_with_candidates(scene)
    assert not trucks(above.candidates) and not trucks(above.detections)
    # the floor is about rejects only: a verifier that accepts keeps its trucks whatever the floor
    sure = _constant_verifier(tmp_path / "sure.pt", "vehicle", 5.0)
    kept = make_detector(DetectorConfig(threads=1, heading_weights=None, vehicle_verifier_weights=str(sure),
                                        candidate_verifier_floor=0.9)).detect_with_candidates(scene)
    assert len(trucks(kept.detections)) >= 3


def test_vehicle_verifier_at_the_detectors_floor_only_filters_the_trucks_the_detector_reports(tmp_path):
    """vehicle_verifier_floor: detector. An accept-all verifier then reports the very trucks and candidates of the
    detector alone (it cannot admit a fainter peak); a reject-all one turns every sure truck into a candidate."""
    from pipeline.simulate.command import held_out_scene

    scene = held_out_scene(4242, 3, size=256).scene
    plain = make_detector(DetectorConfig(threads=1, heading_weights=None)).detect_with_candidates(scene)
    trucks = lambda ds: sorted((round(d.x), round(d.y)) for d in ds if d.cls == "vehicle")  # noqa: E731
    accept = _constant_verifier(tmp_path / "accept.pt", "vehicle", 5.0)
    lenient = DetectorConfig(threads=1, heading_weights=None, vehicle_verifier_weights=str(accept))
    admitted = make_detector(lenient).detect_with_candidates(scene)
    assert len(trucks(admitted.detections)) > len(trucks(plain.detections))  # from its trained floor 0.2
    filtering = make_detector(lenient.model_copy(update={"vehicle_verifier_floor": "detector"}))
    assert filtering.model_id.endswith(">=0.425")
    got = filtering.detect_with_candidates(scene)
    assert len(trucks(plain.detections)) >= 3
    assert trucks(got.detections) == trucks(plain.detections)
    assert trucks(got.candidates) == trucks(plain.candidates)
    assert all(d.score > 0.99 for d in got.detections if d.cls == "vehicle")  # the verifier's probability
    assert all(d.score < 0.425 for d in got.candidates if d.cls == "vehicle")  # never shown to it
    reject = _constant_verifier(tmp_path / "reject.pt", "vehicle", -5.0)
    strict = make_detector(DetectorConfig(threads=1, heading_weights=None, vehicle_verifier_weights=str(reject),
                                          vehicle_verifier_floor="detector")).detect_with_candidates(scene)
    assert not trucks(strict.detections)
    assert set(trucks(strict.candidates)) == set(trucks(plain.detections)) | set(trucks(plain.candidates))


def test_faint_floor_shows_fainter_peaks_to_the_vehicle_verifier_and_keeps_them_only_at_its_own_threshold(tmp_path):
    """vehicle_verifier_faint_floor: peaks between it and the detector's threshold are judged too, against the
    stricter faint threshold; rejected ones stay the column candidates they were."""
    from pipeline.simulate.command import held_out_scene

    scene = held_out_scene(4242, 3, size=256).scene
    plain = make_detector(DetectorConfig(threads=1, heading_weights=None)).detect_with_candidates(scene)
    trucks = lambda ds: sorted((round(d.x), round(d.y)) for d in ds if d.cls == "vehicle")  # noqa: E731
    assert trucks(plain.candidates) and len(trucks(plain.detections)) >= 3
    sure = _constant_verifier(tmp_path / "sure.pt", "vehicle", 2.0)  # probability about 0.88 for every peak
    base = DetectorConfig(threads=1, heading_weights=None, vehicle_verifier_weights=str(sure),
                          vehicle_verifier_floor="detector", vehicle_verifier_faint_floor=0.25)
    strict = make_detector(base.model_copy(update={"vehicle_verifier_faint_threshold": 0.95}))
    assert strict.model_id.endswith(">=0.425~0.25@0.95")
    got = strict.detect_with_candidates(scene)
    assert trucks(got.detections) == trucks(plain.detections) and trucks(got.candidates) == trucks(plain.candidates)
    lenient = make_detector(base.model_copy(update={"vehicle_verifier_faint_threshold": 0.8}))
    admitted = lenient.detect_with_candidates(scene)
    assert set(trucks(admitted.detections)) == set(trucks(plain.detections)) | set(trucks(plain.candidates))
    assert not trucks(admitted.candidates)
    assert all(0.85 < d.score < 0.95 for d in admitted.detections if d.cls == "vehicle")
    assert trucks(lenient.detect(scene)) == trucks(admitted.detections)  # detect() shows them to it as well
    above = make_detector(base.model_copy(update={"vehicle_verifier_faint_floor": 0.5}))  # not under the floor
    assert not above.faint_thresholds and trucks(above.detect_with_candidates(scene).detections) == trucks(
        plain.detections)
    with pytest.raises(ModelError, match="faint_floor needs"):
        make_detector(DetectorConfig(threads=1, heading_weights=None, vehicle_verifier_faint_floor=0.3))
