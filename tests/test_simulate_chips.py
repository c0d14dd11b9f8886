"""Training chips: API shape, determinism, truth consistency, randomisation breadth, speed."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from pipeline.simulate.chips import Chip, ChipObject, ChipOptions, render_chip
from pipeline.types import OBJECT_CLASSES


@pytest.fixture(scope="module")
def chips() -> list[Chip]:
    return [render_chip(seed) for seed in range(60)]


def test_chip_api_shapes_and_types():
    chip = render_chip(3, size=96)
    assert chip.bands.shape == (4, 96, 96) and chip.bands.dtype == np.float32
    assert chip.valid.shape == (96, 96) and chip.valid.dtype == bool
    assert all(isinstance(o, ChipObject) for o in chip.objects)
    for o in chip.objects:
        assert o.cls in OBJECT_CLASSES
        assert 0 <= o.row < 96 and 0 <= o.col < 96
        assert 0 <= o.heading_deg < 360 and o.length_m > 0 and o.width_m > 0
        assert o.moving == (o.speed_mps > 0)
        assert np.isfinite(o.contrast) and o.contrast >= 0


def test_same_seed_same_chip_different_seed_different():
    a, b, c = render_chip(42), render_chip(42), render_chip(43)
    assert a.bands.tobytes() == b.bands.tobytes() and np.array_equal(a.valid, b.valid)
    assert a.objects == b.objects
    assert a.bands.tobytes() != c.bands.tobytes()


def test_chips_cover_every_class_and_wide_conditions(chips):
    counts = Counter(o.cls for c in chips for o in c.objects)
    learned = [k for k in OBJECT_CLASSES if k != "vessel"]  # ships are counted by a rule (pipeline/vessels.py);
    assert all(counts[k] >= 5 for k in learned), counts  # boats on chips are clutter the detector must ignore
    assert counts["vessel"] == 0
    moving = [o for c in chips for o in c.objects if o.moving]
    assert len(moving) > 50 and max(o.speed_mps for o in moving) > 25
    assert len({round(o.heading_deg / 45) % 8 for o in moving}) == 8  # travel in every direction
    assert any((~c.valid).any() for c in chips) and any(c.valid.all() for c in chips)  # some clouds, some clear
    types = {o.type for c in chips for o in c.objects if o.cls != "vehicle"}
    assert {"An-124", "Il-76", "Su-24", "Mi-8"} <= types
    contrast = {k: np.median([o.contrast for c in chips for o in c.objects if o.cls == k]) for k in learned}
    assert contrast["large_aircraft"] > contrast["small_aircraft"] > contrast["vehicle"] > 0.005
    means = [float(c.bands[:3].mean()) for c in chips]
    assert np.ptp(means) > 0.1  # dark water/vegetation chips up to bright desert / cloudy ones


def _local_contrast(bands: np.ndarray, i: int, j: int) -> float:
    win = bands[:, i - 1:i + 2, j - 1:j + 2].reshape(4, -1)
    ring = np.concatenate([bands[:, i - 8, j - 8:j + 8], bands[:, i + 7, j - 8:j + 8],
                           bands[:, i - 8:i + 8, j - 8], bands[:, i - 8:i + 8, j + 7]], axis=1)
    return float(np.abs(win - np.median(ring, axis=1)[:, None]).max(axis=1).mean())


def test_large_aircraft_in_clear_chips_stand_out(chips):
    contrast, control = [], []
    rng = np.random.default_rng(0)
    for c in chips:
        for o in c.objects:
            if o.cls != "large_aircraft" or o.occluded:
                continue
            i, j = int(o.row), int(o.col)
            if 8 <= i < 120 and 8 <= j < 120:
                contrast.append(_local_contrast(c.bands, i, j))
        for _ in range(5):  # random spots of valid chip area, away from every object
            i, j = (int(v) for v in rng.integers(8, 120, 2))
            if c.valid[i - 8:i + 8, j - 8:j + 8].all() and all(np.hypot(o.row - i, o.col - j) > 10 for o in c.objects):
                control.append(_local_contrast(c.bands, i, j))
    assert len(contrast) >= 10 and len(control) >= 30
    assert np.median(contrast) > 0.05
    assert np.median(contrast) > 2 * np.median(control)


def test_occluded_flag_matches_valid_mask(chips):
    for c in chips:
        for o in c.objects:
            assert o.occluded == (not bool(c.valid[int(o.row), int(o.col)]))


def test_chip_rendering_is_fast():
    t0 = time.perf_counter()
    for seed in range(1000, 1010):
        render_chip(seed)
    assert (time.perf_counter() - t0) / 10 < 0.25  # ~0.03 s each here


def test_fighter_rows_add_hard_negatives_without_touching_other_chips():
    plain = render_chip(4242, 96)
    off = render_chip(4242, 96, ChipOptions(fighter_rows=0.0))
    assert np.array_equal(off.bands, plain.bands)  # off: byte-identical
    added = 0
    for seed in range(4242, 4252):
        base, rows = render_chip(seed, 96), render_chip(seed, 96, ChipOptions(fighter_rows=1.0))
        extra = Counter(o.cls for o in rows.objects) - Counter(o.cls for o in base.objects)
        assert set(extra) <= {"small_aircraft", "helicopter"}  # only negatives for large_aircraft are added
        added += sum(extra.values())
        if extra:
            assert not np.array_equal(rows.bands, base.bands)
    assert added >= 10  # rows of 3-8, a few places taken


def test_ground_relative_paint_sits_either_side_of_the_ground():
    from pipeline.simulate.chips import ground_relative_paint

    rng = np.random.default_rng(0)
    concrete = np.full((4, 40, 40), 0.25, np.float32)
    paints = np.array([ground_relative_paint(concrete, 20, 20, 3.5, rng) for _ in range(200)])
    diff = paints[:, :3].mean(axis=1) - 0.25
    assert (np.abs(diff) >= 0.05 * 0.85 - 1e-6).all() and (np.abs(diff) <= 0.22 * 1.15 + 1e-6).all()
    assert 60 < (diff > 0).sum() < 140  # brighter and darker about equally often
    asphalt = np.full((4, 40, 40), 0.05, np.float32)  # too dark to paint darker by 0.05
    assert all(ground_relative_paint(asphalt, 20, 20, 3.5, rng)[:3].mean() > 0.05 for _ in range(50))


def _placements(chip: Chip) -> list[tuple[str, float, float]]:
    return [(o.cls, o.row, o.col) for o in chip.objects]


def _with_option(option: str, seeds: range) -> list[tuple[Chip, Chip]]:
    """(default chip, chip with ``option`` at 1.0) per seed, after checking that the option at 0 changes nothing and
    that at 1 it repaints surfaces without moving any object."""
    off = render_chip(seeds[0], 96, ChipOptions(**{option: 0.0}))
    assert np.array_equal(off.bands, render_chip(seeds[0], 96).bands)
    pairs = [(render_chip(seed, 96), render_chip(seed, 96, ChipOptions(**{option: 1.0}))) for seed in seeds]
    assert all(_placements(varied) == _placements(base) for base, varied in pairs)
    return pairs


def test_relative_paint_repaints_aircraft_only_and_leaves_other_chips_alone():
    repainted = 0
    for base, rel in _with_option("relative_paint", range(4242, 4262)):
        aircraft = any(o.cls in ("large_aircraft", "small_aircraft", "helicopter") for o in base.objects)
        repainted += aircraft and not np.array_equal(rel.bands, base.bands)
    assert repainted >= 5


def test_bright_aprons_brighten_some_chips_and_leave_the_rest_alone():
    brighter = 0
    for base, bright in _with_option("bright_aprons", range(4242, 4252)):
        diff = bright.bands - base.bands
        brighter += bool((diff > 0.05).any()) and float(diff.mean()) > 0  # lighter surfaces, not noise
    assert brighter >= 3


def test_unpaved_track_takes_the_ground_colour_along_the_road():
    from pipeline.simulate.chips import unpaved_track

    sand = np.zeros((4, 50, 50), np.float32)
    sand[:] = np.array([0.16, 0.23, 0.31, 0.38], np.float32)[:, None, None]
    sand[:, :, 40:] = 0.05  # dark ground off the road's path does not count
    road = np.array([[-20.0, 10.0], [10.0, 10.0], [30.0, 20.0], [80.0, 20.0]])  # partly outside the chip
    rng = np.random.default_rng(1)
    for _ in range(20):
        ratio = unpaved_track(sand, road, rng) / np.array([0.16, 0.23, 0.31, 0.38])
        assert np.allclose(ratio, ratio[0], rtol=1e-5) and 0.95 <= ratio[0] <= 1.2


def test_sand_tracks_change_some_roads_and_leave_other_chips_alone():
    changed = 0
    for base, sand in _with_option("sand_tracks", range(4242, 4252)):  # same trucks in the same places
        changed += not np.array_equal(sand.bands, base.bands)
    assert changed >= 5


def test_slow_convoys_slow_the_same_trucks_down_and_leave_other_chips_alone():
    base_speeds, slow_speeds = [], []
    for base, slow in _with_option("slow_convoys", range(4242, 4262)):  # same trucks in the same places
        base_speeds += [o.speed_mps for o in base.objects if o.cls == "vehicle" and o.moving]
        slow_speeds += [o.speed_mps for o in slow.objects if o.cls == "vehicle" and o.moving]
    assert len(slow_speeds) == len(base_speeds) >= 10
    assert all(3.0 <= s <= 15.0 for s in slow_speeds)  # 6-12 m/s per group, each truck +-0.8 m/s about it
    assert max(base_speeds) > 15.0 or min(base_speeds) < 3.0  # the chips as always drive at 1-30 m/s


def test_matched_paint_hides_the_aircraft_body_in_its_ground_and_leaves_other_chips_alone():
    """Grey paint at the ground's brightness: the aircraft's centre barely differs from the ground around it, except
    for the shadow, which is longer than the chips' usual 2-9 m."""
    from pipeline.simulate.chips import ground_matched_paint, sun_shadow_m

    rng = np.random.default_rng(3)
    ground = np.zeros((4, 40, 40), np.float32)
    ground[:] = np.array([0.18, 0.22, 0.27, 0.33], np.float32)[:, None, None]  # reddish concrete
    paints = np.array([ground_matched_paint(ground, 20.0, 20.0, 4.0, rng) for _ in range(200)])
    visible = ground[:3, 0, 0].mean()
    assert np.all(np.abs(paints[:, :3].mean(axis=1) - visible) <= 0.05 * 1.03 + 0.01)
    assert np.all(paints.max(axis=1) / paints.min(axis=1) < 1.07)  # flat grey: any tilt is the ground's
    assert 15.0 < sun_shadow_m(69.1, 30.0, np.random.default_rng(1)) < 40.0  # an An-124 at 30 degrees
    centres = {True: [], False: []}
    for base, matched in _with_option("matched_paint", range(4242, 4272)):
        for o in matched.objects:
            r, c = int(o.row), int(o.col)
            if o.cls == "large_aircraft" and 3 <= r < 93 and 3 <= c < 93:
                for chip, key in ((base, False), (matched, True)):
                    centre = chip.bands[:3, r - 1:r + 2, c - 1:c + 2].mean()
                    around = np.median(chip.bands[:3, r - 3:r + 4, c - 3:c + 4])
                    centres[key].append(abs(centre - around))
    assert len(centres[True]) >= 10
    assert np.median(centres[True]) < np.median(centres[False])


def test_an_option_at_zero_draws_nothing_from_the_options_stream():
    """Slow convoys at 0 beside matched paint: the options' stream is left for the aircraft that follow, as it was
    before slow convoys existed (a 192 px chip lays out its trucks before its second set of aircraft)."""
    from pipeline.simulate.canvas import Canvas
    from pipeline.simulate.chips import _Layout, _option_drawn

    stream = np.random.default_rng(5)
    lay = _Layout(Canvas(np.zeros((4, 8, 8), np.float32)), np.random.default_rng(1), np.zeros((8, 8), int), 0.0, 45.0,
                  options=ChipOptions(matched_paint=0.5), options_rng=stream)
    untouched = np.random.default_rng(5).random()
    assert not _option_drawn(lay, lay.options.slow_convoys)
    assert stream.random() == untouched  # nothing drawn for the option that is off
    drawn = [_option_drawn(lay, 0.5) for _ in range(200)]
    assert 60 < sum(drawn) < 140  # an option that is on applies to about its share
    assert ChipOptions().layout_options_on is False and ChipOptions(fighter_rows=1.0).layout_options_on is False


def test_roof_tanks_put_blue_specks_in_towns_and_leave_other_chips_alone():
    blue_specks = 0  # _with_option checks that no object moved
    for base, tanks in _with_option("roof_tanks", range(410_000_000, 410_000_012)):
        if np.array_equal(tanks.bands, base.bands):
            continue  # not a built-up chip, or its draw said no
        diff = tanks.bands - base.bands
        changed = np.abs(diff).sum(axis=0) > 0.02
        blue_specks += bool(changed.any()) and float(diff[0][changed].mean()) > float(diff[2][changed].mean())
    assert blue_specks >= 2
    with_others = ChipOptions(sand_tracks=0.3, slow_convoys=0.2)
    assert np.array_equal(render_chip(410_000_001, 96, with_others).bands,
                          render_chip(410_000_001, 96, ChipOptions(sand_tracks=0.3, slow_convoys=0.2,
                                                                   roof_tanks=0.0)).bands)
