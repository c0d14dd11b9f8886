"""Training targets and losses for the CenterNet head, and decoding of its output into pixel-space detections.

Encoding (output stride s = 2): an object at continuous pixel position (row, col) (pixel (0, 0) spans [0, 1), so
its centre is (0.5, 0.5)) falls in cell (floor(row / s), floor(col / s)); the regression channels at that cell hold
the sub-cell offset, log length/width (metres), heading as sin/cos (0 = north, clockwise) and log speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.centernet import REG_CHANNELS

OFF, LOGLEN, SINH, LOGSPD = 0, 2, 4, 6  # indices into REG_CHANNELS


@dataclass(frozen=True)
class TargetObject:
    """One object the network must find (parked trucks, small aircraft etc. are simply absent = background)."""

    cls_index: int
    row: float
    col: float
    length_m: float | None = None
    width_m: float | None = None
    heading_deg: float | None = None
    speed_mps: float | None = None


@dataclass
class Targets:
    """Dense targets for one chip, shapes (K, h, w) heatmap and (R, h, w) regression + per-channel masks."""

    heatmap: np.ndarray
    reg: np.ndarray
    reg_mask: np.ndarray

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.heatmap), torch.from_numpy(self.reg), torch.from_numpy(self.reg_mask)


def gaussian_sigma(cls_index: int, length_m: float | None, stride: int, pixel_m: float = 10.0) -> float:
    """Heatmap spread in cells: tight for point-like objects, wider for big aircraft (less peak ambiguity)."""
    size_cells = (length_m or 0.0) / (pixel_m * stride)
    return max(0.6, 0.25 * size_cells)


def encode(objects: list[TargetObject], height: int, width: int, num_classes: int, stride: int = 2,
           heading_weight: dict[int, float] | None = None) -> Targets:
    """Dense CenterNet targets for a chip of ``height`` x ``width`` pixels."""
    h, w = height // stride, width // stride
    heat = np.zeros((num_classes, h, w), np.float32)
    reg = np.zeros((len(REG_CHANNELS), h, w), np.float32)
    mask = np.zeros((len(REG_CHANNELS), h, w), np.float32)
    heading_weight = heading_weight or {}
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for ob in objects:
        u, v = ob.row / stride, ob.col / stride
        i, j = int(math.floor(u)), int(math.floor(v))
        if not (0 <= i < h and 0 <= j < w):
            continue
        sig = gaussian_sigma(ob.cls_index, ob.length_m, stride)
        r = int(math.ceil(3 * sig))
        i0, i1, j0, j1 = max(0, i - r), min(h, i + r + 1), max(0, j - r), min(w, j + r + 1)
        g = np.exp(-((yy[i0:i1, j0:j1] - i) ** 2 + (xx[i0:i1, j0:j1] - j) ** 2) / (2 * sig * sig))
        np.maximum(heat[ob.cls_index, i0:i1, j0:j1], g, out=heat[ob.cls_index, i0:i1, j0:j1])
        heat[ob.cls_index, i, j] = 1.0
        reg[OFF, i, j], reg[OFF + 1, i, j] = u - i, v - j
        mask[OFF : OFF + 2, i, j] = 1.0
        if ob.length_m and ob.width_m:
            reg[LOGLEN, i, j], reg[LOGLEN + 1, i, j] = math.log(ob.length_m), math.log(ob.width_m)
            mask[LOGLEN : LOGLEN + 2, i, j] = 1.0
        if ob.heading_deg is not None:
            hr = math.radians(ob.heading_deg)
            reg[SINH, i, j], reg[SINH + 1, i, j] = math.sin(hr), math.cos(hr)
            mask[SINH : SINH + 2, i, j] = heading_weight.get(ob.cls_index, 1.0)
        if ob.speed_mps is not None and ob.speed_mps > 0:
            reg[LOGSPD, i, j] = math.log(ob.speed_mps)
            mask[LOGSPD, i, j] = 1.0
    return Targets(heat, reg, mask)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, alpha: float = 2.0,
               beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss over Gaussian heatmaps, normalised by the number of objects.

    torchvision's ``sigmoid_focal_loss`` assumes hard 0/1 targets; with Gaussian targets the negatives near a
    centre must be down-weighted by (1 - y)^beta, which it cannot express, so this one is written out.
    """
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    neg = 1.0 - pos if weight is None else (1.0 - pos) * weight
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p**alpha * (1 - target) ** beta * neg
    n = pos.sum().clamp_min(1.0)
    return (pos_loss.sum() + neg_loss.sum()) / n


def regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    heading_raw: bool = False) -> dict[str, torch.Tensor]:
    """Masked L1 on offsets (through a sigmoid: offsets live in [0, 1)), log sizes, heading sin/cos, log speed.

    Heading: by default the (sin, cos) output is normalised before the L1; ``heading_raw`` applies the L1 to the raw
    output instead, whose gradient still points at the target when the prediction is reversed (180 deg off), where
    the normalised loss sits on a saddle. Decoding uses atan2, so both read the same way.
    """
    out = {}
    groups = {"offset": slice(OFF, OFF + 2), "size": slice(LOGLEN, LOGLEN + 2), "heading": slice(SINH, SINH + 2),
              "speed": slice(LOGSPD, LOGSPD + 1)}
    for name, sl in groups.items():
        p, t, m = pred[:, sl], target[:, sl], mask[:, sl]
        if name == "offset":
            p = torch.sigmoid(p)
        elif name == "heading" and not heading_raw:
            p = F.normalize(p, dim=1, eps=1e-6)
        out[name] = (F.l1_loss(p, t, reduction="none") * m).sum() / m.sum().clamp_min(1.0)
    return out


LOSS_WEIGHTS = {"heatmap": 1.0, "offset": 1.0, "size": 0.2, "heading": 0.5, "speed": 0.2}


def total_loss(out: torch.Tensor, heat: torch.Tensor, reg: torch.Tensor, mask: torch.Tensor, num_classes: int,
               weight: torch.Tensor | None = None, heading_raw: bool = False,
               weights: dict[str, float] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the heatmap focal loss and the masked regressions; ``weight`` zeroes ignored cells."""
    parts = {"heatmap": focal_loss(out[:, :num_classes], heat, weight)}
    parts.update(regression_loss(out[:, num_classes:], reg, mask, heading_raw))
    w = {**LOSS_WEIGHTS, **(weights or {})}
    loss = sum(w[k] * v for k, v in parts.items())
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, class_map: list[int],
                      hold: list[int] | None = None) -> torch.Tensor:
    """Hold the student to a teacher's outputs for the teacher's classes (``class_map[k]``: the student channel of
    teacher class k; ``hold``: only these teacher classes, default all) while it learns others: squared difference
    of heatmap probabilities, normalised by the teacher's confident cells (as the focal loss is by its positives),
    plus L1 on the regressions where the teacher sees an object of a held class. Why: the diff rules were tuned on
    the teacher's scores; a new class, or a better vehicle class, must not move the others'."""
    k = len(class_map)
    held = list(range(k)) if hold is None else list(hold)
    s_heat = torch.sigmoid(student[:, [class_map[i] for i in held]])
    t_heat = torch.sigmoid(teacher[:, held])
    heat = ((s_heat - t_heat) ** 2).sum() / (t_heat > 0.3).sum().clamp_min(1)
    seen = (t_heat.amax(dim=1, keepdim=True) > 0.1).float()
    s_reg, t_reg = student[:, student.shape[1] - len(REG_CHANNELS):], teacher[:, k:]
    reg = (F.l1_loss(s_reg, t_reg, reduction="none") * seen).sum() / (seen.sum() * len(REG_CHANNELS)).clamp_min(1)
    return heat + reg


@dataclass(frozen=True)
class RawDetection:
    """A decoded peak in window pixel coordinates (before georeferencing)."""

    cls_index: int
    score: float
    row: float
    col: float
    length_m: float
    width_m: float
    heading_deg: float
    speed_mps: float


def score_logit(score: float) -> float | None:
    """The heatmap logit whose sigmoid is ``score`` (peaks are compared on logits); None outside (0, 1): no floor."""
    return math.log(score / (1.0 - score)) if 0.0 < score < 1.0 else None


def _peaks(logits: torch.Tensor, floor: float | None) -> torch.Tensor:
    """(K, 4) indices (image, class, row, col) of the cells that are the maximum of their 3x3 neighbourhood and at
    least ``floor``, in row-major order. Why not max_pool2d over the whole map: the few cells above the floor are
    all that can be peaks, so only their neighbourhoods are compared (the same cells, several times faster)."""
    if floor is None:
        is_peak = F.max_pool2d(logits.contiguous(), 3, 1, 1) == logits
        return torch.nonzero(is_peak)
    cand = torch.nonzero(logits >= floor)
    if not cand.numel():
        return cand
    padded = F.pad(logits, (1, 1, 1, 1), value=-math.inf)  # as max_pool2d's implicit padding
    b, c, i, j = cand.unbind(1)
    centre = logits[b, c, i, j]
    is_peak = torch.ones_like(centre, dtype=torch.bool)
    for di in range(3):
        for dj in range(3):
            is_peak &= centre >= padded[b, c, i + di, j + dj]
    return cand[is_peak]


def decode(out: torch.Tensor, num_classes: int, threshold: float, stride: int = 2, max_per_image: int = 2000,
           valid: torch.Tensor | None = None) -> list[list[RawDetection]]:
    """Peaks of the heatmap (3x3 max) above ``threshold`` -> detections per image, in pixel coordinates.

    ``valid`` (N, H, W) bool drops peaks whose decoded centre pixel is invalid (clouds, nodata).
    """
    logits = out[:, :num_classes]
    peaks = _peaks(logits, score_logit(threshold))
    reg = out[:, num_classes:]
    results: list[list[RawDetection]] = []
    per_image = torch.bincount(peaks[:, 0], minlength=logits.shape[0]).tolist()
    for b, part in enumerate(torch.split(peaks, per_image)):
        cls, i, j = part[:, 1], part[:, 2], part[:, 3]
        if valid is not None and cls.numel():
            r0 = reg[b, OFF, i, j]
            c0 = reg[b, OFF + 1, i, j]
            pr = ((i.float() + torch.sigmoid(r0)) * stride).long().clamp(0, valid.shape[1] - 1)
            pc = ((j.float() + torch.sigmoid(c0)) * stride).long().clamp(0, valid.shape[2] - 1)
            ok = valid[b, pr, pc]
            if not bool(ok.all()):
                keep = torch.nonzero(ok).squeeze(1)
                cls, i, j = cls[keep], i[keep], j[keep]
        scores = torch.sigmoid(logits[b, cls, i, j])
        if cls.numel() > max_per_image:
            scores, order = torch.topk(scores, max_per_image)
            cls, i, j = cls[order], i[order], j[order]
        r = reg[b][:, i, j]
        rows = (i.float() + torch.sigmoid(r[OFF])) * stride
        cols = (j.float() + torch.sigmoid(r[OFF + 1])) * stride
        lens = torch.exp(r[LOGLEN].clamp(-3, 6))
        wids = torch.exp(r[LOGLEN + 1].clamp(-3, 6))
        head = torch.rad2deg(torch.atan2(r[SINH], r[SINH + 1])) % 360.0
        spd = torch.exp(r[LOGSPD].clamp(-3, 6))
        dets = [
            RawDetection(int(c), float(s), float(rr), float(cc), float(ln), float(wd), float(hd), float(sp))
            for c, s, rr, cc, ln, wd, hd, sp in zip(
                cls.tolist(), scores.tolist(), rows.tolist(), cols.tolist(), lens.tolist(), wids.tolist(),
                head.tolist(), spd.tolist(), strict=True,
            )
        ]
        results.append(dets)
    return results
