"""The independent evaluation renderer: deterministic, truth where the pixels say it is, readable by our readers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.independent_renderer import (
    BAND_TIME_S,
    MID_TIME_S,
    Builder,
    main,
    render,
    render_independent,
    scene_name,
)
from pipeline.georef import map_to_pixel
from pipeline.geotiff import read_scene
from pipeline.objects import read_objects

SEEDS = tuple(range(900, 907))
SIZE = 384


@pytest.fixture(scope="module")
def rendered():
    return {seed: render(seed, SIZE) for seed in SEEDS}


def test_same_seed_same_pixels_other_seed_other_pixels(rendered):
    scene, truth = render_independent(903, SIZE)
    first = rendered[903]
    assert np.array_equal(scene.bands, first.scene.bands)
    assert np.array_equal(scene.valid, first.scene.valid)
    assert truth == first.truth
    assert scene.bands.dtype == np.float32 and scene.bands.shape == (4, SIZE, SIZE)
    assert not np.array_equal(scene.bands, rendered[904].scene.bands)


def _visible_contrast(r, obj) -> float:
    """Visible-mean brightness at the aircraft centre (2 x 2 nearest pixels) minus the median of a ring just outside."""
    sc = r.scene
    vis = sc.bands[:3].mean(axis=0)
    row, col = map_to_pixel(sc.transform, obj.x, obj.y)
    rr, cc = np.mgrid[0:sc.height, 0:sc.width]
    dist = np.hypot(rr + 0.5 - row, cc + 0.5 - col)
    inner = max(obj.length_m, obj.width_m) / 20 + 0.7
    ring = vis[(dist >= inner) & (dist <= inner + 2) & sc.valid]
    r0, c0 = int(round(row)) - 1, int(round(col)) - 1
    return float(vis[r0:r0 + 2, c0:c0 + 2].mean() - np.median(ring))


def test_large_aircraft_truth_sits_on_a_contrasting_blob(rendered):
    checked, faint = 0, 0
    for r in rendered.values():
        for obj, extra in zip(r.truth, r.extras, strict=True):
            if obj.cls != "large_aircraft":
                continue
            checked += 1
            diff = _visible_contrast(r, obj)
            if abs(diff) <= 0.01:  # a grey jet on grey concrete under a blurring PSF can vanish, as in life
                faint += 1
                continue
            assert (diff > 0) == (extra["tone"] == "brighter"), (obj, extra, diff)
    assert checked >= 15
    assert faint <= 0.1 * checked


def _centroid(img: np.ndarray) -> tuple[float, float]:
    w = np.clip(img, 0, None)
    rr, cc = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    return float((rr * w).sum() / w.sum()) + 0.5, float((cc * w).sum() / w.sum()) + 0.5


def _along_across(d_row: float, d_col: float, heading_deg: float) -> tuple[float, float]:
    """Pixel displacement -> metres along and across a heading (0 = north, clockwise)."""
    east, north = d_col * 10.0, -d_row * 10.0
    h = math.radians(heading_deg)
    return east * math.sin(h) + north * math.cos(h), east * math.cos(h) - north * math.sin(h)


def _one_truck_image(seed: int):
    """The final bands with and without the first visible moving truck (everything else, noise included, equal)."""
    full = Builder(seed, SIZE)
    full.plan()
    bands, valid = full.draw()
    for k, m in enumerate(full.movers):
        r, c, _ = m.pose(MID_TIME_S)
        if m.truth and valid[int(r), int(c)]:
            without = Builder(seed, SIZE)
            without.plan()
            del without.movers[k]
            return m, bands - without.draw()[0]
    return None, None


@pytest.mark.parametrize("seed", [900, 903, 904, 906])
def test_moving_truck_rainbow_matches_truth(seed, rendered):
    mover, diff = _one_truck_image(seed)
    assert mover is not None
    r, c, _ = mover.pose(MID_TIME_S)
    truth = min((o for o in rendered[seed].truth if o.cls == "vehicle" and o.moving),
                key=lambda o: math.dist(map_to_pixel(rendered[seed].scene.transform, o.x, o.y), (r, c)))
    t_row, t_col = map_to_pixel(rendered[seed].scene.transform, truth.x, truth.y)
    assert math.dist((t_row, t_col), (r, c)) < 0.01
    far = np.ones(diff.shape[1:], bool)
    far[int(r) - 8:int(r) + 9, int(c) - 8:int(c) + 9] = False
    assert np.all(diff[:, far] == 0)  # removing the truck changed nothing else

    window = diff[:, int(r) - 8:int(r) + 9, int(c) - 8:int(c) + 9]
    blue, green, red = (_centroid(window[b]) for b in (0, 1, 2))
    along, across = _along_across(red[0] - blue[0], red[1] - blue[1], truth.heading_deg)
    # within a pixel, and tighter: 4 m along (blur and the truck's own shadow shift centroids a little)
    assert abs(along - truth.speed_mps * 1.005) < 4.0, (along, truth.speed_mps)
    assert abs(across) < 5.0
    g_along, _ = _along_across(green[0] - blue[0], green[1] - blue[1], truth.heading_deg)
    assert abs(g_along - truth.speed_mps * BAND_TIME_S[1]) < 4.0
    mid = ((blue[0] + red[0]) / 2 + int(r) - 8, (blue[1] + red[1]) / 2 + int(c) - 8)
    assert math.dist(mid, (t_row, t_col)) < 1.0  # truth is the middle of the rainbow


def test_cli_output_round_trips_through_the_readers(tmp_path):
    assert main(["--n", "2", "--seed", "903", "--size", "128", "--out", str(tmp_path)]) == 0
    total = 0
    for seed in (903, 904):
        expected = render(seed, 128)
        scene = read_scene(tmp_path / f"{scene_name(seed)}.tif")
        assert np.array_equal(scene.bands, expected.scene.bands)
        assert np.array_equal(scene.valid, expected.scene.valid)
        assert scene.crs == expected.scene.crs and scene.transform == expected.scene.transform
        assert scene.simulated and scene.acquisition.source == "independent-renderer"
        objs = read_objects(tmp_path / f"{scene_name(seed)}.truth.geojson", crs=scene.crs)
        assert [o.cls for o in objs] == [o.cls for o in expected.truth]
        for got, want in zip(objs, expected.truth, strict=True):
            assert math.hypot(got.x - want.x, got.y - want.y) < 0.05
            assert got.heading_deg == pytest.approx(want.heading_deg, abs=1e-3)
            assert got.moving == want.moving and got.speed_mps == pytest.approx(want.speed_mps, abs=1e-3)
            assert got.cls in ("large_aircraft", "small_aircraft", "helicopter", "vehicle")
        total += len(objs)
    assert total > 0


def test_robustness_scores_every_truth_object_once(tmp_path):
    from benchmarks.robustness import main as robustness_main

    assert main(["--n", "2", "--seed", "903", "--size", "128", "--out", str(tmp_path)]) == 0
    report_path = tmp_path / "report.json"
    assert robustness_main(["--scenes", str(tmp_path), "--out", str(report_path), "--detectors", "classical"]) == 0
    report = json.loads(report_path.read_text())
    classes = report["detectors"]["classical"]["classes"]
    truth = [o for seed in (903, 904) for o in render(seed, 128).truth]
    assert classes["large_aircraft"]["tp"] + classes["large_aircraft"]["fn"] == sum(
        o.cls == "large_aircraft" for o in truth)
    assert classes["vehicle"]["tp"] + classes["vehicle"]["fn"] == sum(o.cls == "vehicle" and o.moving for o in truth)
    assert report["scenes"] == 2 and classes["vehicle"]["scenes"] == 2
