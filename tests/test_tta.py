"""Test-time augmentation maps every view's output back correctly: averaged over the views, the detector is
exactly equivariant (a mirrored scene gives mirrored detections with mirrored headings)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.centernet import CenterNet, ModelSpec
from models.targets import OFF, SINH
from models.tta import VIEWS, apply_view, averaged_forward, undo_view
from pipeline.config import DetectorConfig
from pipeline.detect import make_detector
from tests.test_detect import _scene_with_aircraft


def _random_batch(images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random reflectances, every pixel valid: (bands, valid) for ``images`` windows of 32 x 40 px."""
    torch.manual_seed(seed)
    return torch.rand(images, 4, 32, 40), torch.ones(images, 32, 40, dtype=torch.bool)


def _random_net() -> CenterNet:
    torch.manual_seed(0)
    net = CenterNet(ModelSpec()).eval()
    for p in net.parameters():  # untrained but not symmetric: a wrong mapping cannot cancel out
        p.data.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("view", VIEWS[8])
def test_averaging_over_the_eight_views_is_equivariant(view):
    """avg_g g^-1 f(g x) satisfies A(h x) = h A(x) for every symmetry h, channel meanings included, only if each
    g^-1 undoes its view exactly (positions, sub-cell offsets, headings)."""
    net = _random_net()
    nc = len(net.spec.classes)
    torch.manual_seed(1)
    bands = torch.rand(1, 4, 32, 48)
    valid = torch.ones(1, 32, 48, dtype=torch.bool)
    with torch.no_grad():
        base = averaged_forward(net, bands, valid, 8, nc)
        moved = averaged_forward(net, apply_view(bands, view).contiguous(), apply_view(valid, view).contiguous(), 8,
                                 nc)
    back = undo_view(moved, view, nc)
    assert torch.allclose(back, base, atol=1e-5)
    if view != (False, False, False):  # and the check has teeth: skipping the channel rules breaks it
        naive = moved
        for flip, axis in ((view[2], -1), (view[1], -2)):
            naive = naive.flip(axis) if flip else naive
        naive = naive.transpose(-2, -1) if view[0] else naive
        reg = slice(nc + OFF, nc + SINH + 2)
        assert not torch.allclose(naive[:, reg], base[:, reg], atol=1e-3)


def test_undo_view_maps_offsets_and_headings():
    nc = 2
    out = torch.zeros(1, nc + 7, 4, 4)
    out[0, nc + OFF, 1, 2], out[0, nc + OFF + 1, 1, 2] = 1.0, 2.0  # row / column offset logits at cell (1, 2)
    out[0, nc + SINH, 1, 2], out[0, nc + SINH + 1, 1, 2] = 0.6, 0.8  # heading ~37 deg
    h = undo_view(out, (False, False, True), nc)  # horizontal flip: cell (1, 1), column offset and sin negated
    assert h[0, nc + OFF, 1, 1] == 1.0 and h[0, nc + OFF + 1, 1, 1] == -2.0
    assert h[0, nc + SINH, 1, 1] == -0.6 and h[0, nc + SINH + 1, 1, 1] == 0.8
    t = undo_view(out, (True, False, False), nc)  # transpose: cell (2, 1), offsets swapped, 270 - h
    assert t[0, nc + OFF, 2, 1] == 2.0 and t[0, nc + OFF + 1, 2, 1] == 1.0
    assert t[0, nc + SINH, 2, 1] == -0.8 and t[0, nc + SINH + 1, 2, 1] == -0.6


def test_a_mirrored_scene_gives_mirrored_detections():
    det = make_detector(DetectorConfig(threads=1, tta_views=8))
    scene, _ = _scene_with_aircraft()
    h, width = (n // 8 * 8 for n in scene.valid.shape)  # whole cells: the padding to a multiple of 8 is not mirrored
    scene = replace(scene, bands=np.ascontiguousarray(scene.bands[:, :h, :width]),
                    valid=np.ascontiguousarray(scene.valid[:h, :width]))
    mirrored = replace(scene, bands=np.ascontiguousarray(scene.bands[:, :, ::-1]),
                       valid=np.ascontiguousarray(scene.valid[:, ::-1]))
    a, b = det.detect(scene), det.detect(mirrored)
    assert len(a) >= 2 and len(a) == len(b)
    x0 = scene.transform.c
    for d, e in zip(sorted(a, key=lambda d: (d.cls, d.y)), sorted(b, key=lambda d: (d.cls, d.y)), strict=True):
        assert d.cls == e.cls and d.score == pytest.approx(e.score, abs=1e-3)
        assert (d.x - x0) + (e.x - x0) == pytest.approx(10 * width, abs=0.5)  # col -> W - col
        assert d.y == pytest.approx(e.y, abs=0.5)
        if d.heading_deg is not None:
            assert (d.heading_deg + e.heading_deg) % 360 == pytest.approx(0, abs=0.5)



def test_heading_over_views_averages_only_the_headings():
    """The heading channels are the 4-view mean (as full averaging gives them); every other channel is the single
    view's, so scores, positions and sizes, and what the alert rules count, do not move."""
    from models.tta import heading_over_views

    net = _random_net()
    nc = len(net.spec.classes)
    bands, valid = _random_batch(2, seed=2)
    with torch.no_grad():
        single = net(bands, valid)
        full = averaged_forward(net, bands, valid, 4, nc)
        mixed = heading_over_views(net, bands, valid, 4, nc, single)
    heading = slice(nc + SINH, nc + SINH + 2)
    assert torch.allclose(mixed[:, heading], full[:, heading], atol=1e-5)
    rest = torch.ones(mixed.shape[1], dtype=torch.bool)
    rest[heading] = False
    assert torch.equal(mixed[:, rest], single[:, rest])
    assert not torch.allclose(mixed[:, heading], single[:, heading], atol=1e-3)  # it did change the headings


def test_heading_views_keep_the_detections_and_move_only_vehicle_headings():
    from pipeline.simulate.command import held_out_scene

    scene = held_out_scene(4242, 3, size=256).scene  # four moving trucks found there
    one = make_detector(DetectorConfig(threads=1)).detect(scene)
    four = make_detector(DetectorConfig(threads=1, heading_views=4)).detect(scene)
    vehicles = [d for d in one if d.cls == "vehicle"]
    assert len(vehicles) >= 3 and len(one) == len(four)
    key = lambda d: (d.cls, d.x, d.y)  # noqa: E731
    for a, b in zip(sorted(one, key=key), sorted(four, key=key), strict=True):
        assert (a.cls, a.x, a.y, a.score, a.length_m) == (b.cls, b.x, b.y, b.score, b.length_m)
    assert any(a.heading_deg != b.heading_deg for a, b in zip(sorted(one, key=key), sorted(four, key=key),
                                                              strict=True) if a.cls == "vehicle")


def test_heading_over_views_of_some_windows_leaves_the_others_alone():
    """Only the windows with a vehicle peak pay for the extra views; theirs are what the whole batch would give."""
    from models.tta import heading_over_views

    net = _random_net()
    nc = len(net.spec.classes)
    bands, valid = _random_batch(3, seed=4)
    with torch.no_grad():
        single = net(bands, valid)
        every = heading_over_views(net, bands, valid, 4, nc, single)
        some = heading_over_views(net, bands, valid, 4, nc, single, images=[0, 2])
    assert torch.allclose(some[[0, 2]], every[[0, 2]], atol=1e-5)
    assert torch.equal(some[1], single[1])
