"""Test-time augmentation: the network run on flipped / transposed views of a batch, outputs mapped back and averaged.

Why: training showed the network all 8 symmetries of the square, so each view is an independent-ish look at the same
pixels; averaging the heatmap logits steadies marginal peaks (grey aircraft, faint trucks). The cost is one forward
pass per view, so it is an option (``detector.tta_views``) for reviews, not the scheduled default.

Mapping a view's output back (views are applied as transpose, then vertical flip, then horizontal flip, like the
training augmentation in models/dataset.py): undo them in reverse order, spatially and in what the regression
channels mean. Positions are continuous (pixel k spans [k, k+1)) and windows are whole cells, so a flip maps a
sub-cell offset f to 1 - f: its logit changes sign. Headings (0 = north, clockwise) become 360 - h under a
horizontal flip (sin negated), 180 - h under a vertical one (cos negated) and 270 - h under a transpose
((sin, cos) -> (-cos, -sin), with the row and column offsets swapped).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from models.targets import OFF, SINH

View = tuple[bool, bool, bool]  # (transpose, vertical flip, horizontal flip)
VIEWS: dict[int, tuple[View, ...]] = {
    1: ((False, False, False),),
    4: ((False, False, False), (False, False, True), (False, True, False), (False, True, True)),
    8: tuple((t, v, h) for t in (False, True) for v in (False, True) for h in (False, True)),
}


def add_views_argument(parser: argparse.ArgumentParser, what: str = "the learned detector averaged over") -> None:
    """``--tta-views`` for the benchmark scripts, one definition with the choices ``VIEWS`` has."""
    parser.add_argument("--tta-views", type=int, choices=tuple(VIEWS), default=1,
                        help=f"{what} this many flipped views (detector.tta_views)")


def add_heading_views_argument(parser: argparse.ArgumentParser) -> None:
    """``--heading-views``, ``--heading-weights``, the verifiers and ``--precision`` for the benchmark scripts
    (detector.heading_views / heading_weights / verifier_weights / vehicle_verifier_weights / precision).
    Defaults: the runs' config (configs/default.yaml), so a benchmark measures what ``basewatch run`` does unless
    told otherwise."""
    from pipeline.config import load_config, weights_or_none

    runs = load_config().detector
    off = "; 'none' = off"
    parser.add_argument("--heading-views", type=int, choices=tuple(VIEWS), default=runs.heading_views,
                        help="moving vehicles' headings read over this many flipped views when no heading network "
                             f"is set; detections and scores stay the single view's (detector.heading_views; "
                             f"default: the runs', {runs.heading_views})")
    parser.add_argument("--heading-weights", type=weights_or_none, default=runs.heading_weights,
                        help="heading network that re-reads moving vehicles' headings from crops around them "
                             f"(detector.heading_weights; default: the runs', {runs.heading_weights}{off})")
    parser.add_argument("--verifier-weights", type=weights_or_none, default=runs.verifier_weights,
                        help="aircraft verifier that re-scores each large-aircraft peak from a crop around it "
                             f"(detector.verifier_weights; default: the runs', {runs.verifier_weights}{off})")
    parser.add_argument("--vehicle-verifier-weights", type=weights_or_none, default=runs.vehicle_verifier_weights,
                        help="verifier that re-scores each moving-vehicle peak from a crop around it "
                             f"(detector.vehicle_verifier_weights; default: the runs', "
                             f"{runs.vehicle_verifier_weights}{off})")
    parser.add_argument("--vehicle-verifier-floor", type=_floor, default=runs.vehicle_verifier_floor,
                        help="lowest detector score shown to the vehicle verifier: a number, 'detector' (its own "
                             "threshold: a filter) or 'none' (the verifier's trained floor) "
                             f"(detector.vehicle_verifier_floor; default: the runs', {runs.vehicle_verifier_floor})")
    parser.add_argument("--vehicle-verifier-faint-floor", type=_faint_floor, default=runs.vehicle_verifier_faint_floor,
                        help="with the filter: peaks from this score up to the detector's threshold are shown to the "
                             "vehicle verifier too and kept at --vehicle-verifier-faint-threshold; 'none' = never "
                             f"(detector.vehicle_verifier_faint_floor; default: the runs', "
                             f"{runs.vehicle_verifier_faint_floor})")
    parser.add_argument("--vehicle-verifier-faint-threshold", type=float,
                        default=runs.vehicle_verifier_faint_threshold,
                        help="verifier probability that keeps such a fainter peak (detector."
                             f"vehicle_verifier_faint_threshold; default: the runs', "
                             f"{runs.vehicle_verifier_faint_threshold})")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default=runs.precision,
                        help="arithmetic of every network's convolutions (detector.precision; bfloat16 is two to "
                             "three times as fast on CPUs with AVX-512 BF16 or AMX; default: the runs', "
                             f"{runs.precision})")


def add_norm_neighbourhood_argument(parser: argparse.ArgumentParser) -> None:
    """``--norm-neighbourhood`` for the benchmark scripts that compare input normalisations
    (detector.norm_neighbourhood)."""
    parser.add_argument("--norm-neighbourhood", type=int, default=0,
                        help="learned detector's input normalised per pixel's neighbourhood of this side "
                             "(detector.norm_neighbourhood; 0 = per window)")


def _floor(text: str) -> float | str | None:
    text = text.lower()
    return None if text == "none" else text if text == "detector" else float(text)


def _faint_floor(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def cascade_options(args: argparse.Namespace) -> dict:
    """The DetectorConfig fields that ``add_heading_views_argument`` set, for the benchmark scripts."""
    return {k: getattr(args, k) for k in ("heading_views", "heading_weights", "verifier_weights",
                                          "vehicle_verifier_weights", "vehicle_verifier_floor",
                                          "vehicle_verifier_faint_floor", "vehicle_verifier_faint_threshold",
                                          "precision")}


def apply_view(t: torch.Tensor, view: View) -> torch.Tensor:
    """``view`` of a (..., H, W) tensor."""
    transpose, vflip, hflip = view
    if transpose:
        t = t.transpose(-2, -1)
    if vflip:
        t = t.flip(-2)
    if hflip:
        t = t.flip(-1)
    return t


def undo_view(out: torch.Tensor, view: View, num_classes: int) -> torch.Tensor:
    """A network output (N, classes + regression, H', W') computed on ``view`` of the input, in the input's frame
    (a new tensor: ``out`` is never written to; the identity view returns ``out`` itself)."""
    transpose, vflip, hflip = view
    if hflip:
        out = out.flip(-1)  # flips copy, so the sign changes below never reach the caller's tensor
        reg = out[:, num_classes:]
        reg[:, OFF + 1] = -reg[:, OFF + 1]
        reg[:, SINH] = -reg[:, SINH]
    if vflip:
        out = out.flip(-2)
        reg = out[:, num_classes:]
        reg[:, OFF] = -reg[:, OFF]
        reg[:, SINH + 1] = -reg[:, SINH + 1]
    if transpose:
        out = out.transpose(-2, -1).clone(memory_format=torch.contiguous_format)
        reg = out[:, num_classes:]
        reg[:, [OFF, OFF + 1]] = reg[:, [OFF + 1, OFF]]  # advanced indexing reads a copy first
        reg[:, [SINH, SINH + 1]] = -reg[:, [SINH + 1, SINH]]
    return out


def averaged_forward(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], bands: torch.Tensor,
                     valid: torch.Tensor, views: int, num_classes: int) -> torch.Tensor:
    """The mean of the network's outputs over ``views`` (1, 4 or 8) views of (bands, valid), in the input frame."""
    chosen = VIEWS[views]
    if len(chosen) == 1:
        return model(bands, valid)
    total = None
    for view in chosen:
        out = undo_view(model(apply_view(bands, view).contiguous(), apply_view(valid, view).contiguous()), view,
                        num_classes)
        total = out if total is None else total + out
    return total / len(chosen)


def heading_over_views(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], bands: torch.Tensor,
                       valid: torch.Tensor, views: int, num_classes: int, out: torch.Tensor,
                       images: list[int] | None = None) -> torch.Tensor:
    """``out`` (the identity view's output) with its heading channels replaced by their mean over ``views`` views,
    for the batch's ``images`` (default: all; the others keep the single view's headings).

    Why only the headings: averaging the heatmaps too moves scores across the thresholds the alert rules are tuned
    to (MODEL_CARD, "Test-time augmentation"), while the averaged heading is steadier, above all for dark trucks on
    bright ground. ``out`` is reused as the first view, so this costs ``views - 1`` extra passes over ``images``."""
    chosen = VIEWS[views]
    heading = slice(num_classes + SINH, num_classes + SINH + 2)
    rows = list(range(out.shape[0])) if images is None else list(images)
    if not rows:
        return out
    bands, valid = bands[rows], valid[rows]
    total = out[rows, heading].clone()
    for view in chosen[1:]:
        other = undo_view(model(apply_view(bands, view).contiguous(), apply_view(valid, view).contiguous()), view,
                          num_classes)
        total += other[:, heading]
    out = out.clone()
    out[rows, heading] = total / len(chosen)
    return out


__all__ = ["VIEWS", "add_heading_views_argument", "add_views_argument", "apply_view", "averaged_forward",
           "cascade_options",
           "heading_over_views", "undo_view"]
