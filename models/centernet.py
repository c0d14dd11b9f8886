"""A small CenterNet-style keypoint detector for 1-8 pixel objects in 10 m Sentinel-2 bands.

Why this shape: at 10 m an An-124 is ~7x7 pixels and a truck is a sub-pixel smear whose only strong cue is the
B02->B04 "rainbow" displacement, so the network works at output stride 2 (20 m cells, sub-cell offsets regressed)
and sees every input pixel through a lossless space-to-depth stem (``pixel_unshuffle``) instead of a strided conv.
A 3-level encoder with additive top-down fusion gives ~40 px of context for aircraft while staying cheap enough for
> 5 Mpx/s on two CPU cores (channels_last; at inference BN and the band differences folded into the convs).

Input normalisation lives in the model (``InputNorm``) so training, inference and the checkpoint agree on it:
per band, subtract the median and divide by a robust spread (1.4826 x MAD, floored), computed over valid pixels
only. That removes haze offsets and radiometric scale differences between sources. Training chips are 96 px, so
their statistics are local; an inference window is 512 px, and with one median per window a patch of ground much
brighter than the window's usual (desert beside fields, a city beside an airfield) sat far out on the soft clip,
where objects on it all but vanished. ``InputNorm.neighbourhood`` (``detector.norm_neighbourhood``) therefore
takes the statistics of the neighbourhood around each pixel in larger windows (a grid every half neighbourhood,
blended bilinearly).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MODEL_VERSION = "centernet-s2-v1"
"""Bumped whenever the architecture or the meaning of an output channel changes; checkpoints must match it."""

CLASSES: tuple[str, ...] = ("large_aircraft", "vehicle")
OPTIONAL_CLASSES: tuple[str, ...] = ("small_aircraft",)
"""Classes a checkpoint may add after CLASSES (in this order). ``small_aircraft`` covers fighters *and* helicopters:
at 10 m both are the same 2x2 px blob on an apron, so the network is not asked to tell them apart."""
CLASS_ALIASES: dict[str, str] = {"helicopter": "small_aircraft"}
"""Truth classes learned (and scored) as another model class when the model has that class."""

BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
DERIVED: tuple[str, ...] = ("B04-B02", "B03-B02", "B04-B03", "valid")
"""Derived input channels: band differences expose the inter-band displacement of moving objects."""

# Regression channels after the per-class heatmaps.
REG_CHANNELS: tuple[str, ...] = ("off_row", "off_col", "log_len", "log_wid", "sin_h", "cos_h", "log_speed")


def model_class(truth_cls: str, classes: tuple[str, ...]) -> str:
    """The model class a truth object of ``truth_cls`` is learned as (itself unless aliased into a class the model
    has, e.g. a helicopter into small_aircraft)."""
    alias = CLASS_ALIASES.get(truth_cls)
    return alias if alias in classes and truth_cls not in classes else truth_cls


def supported_classes(classes: tuple[str, ...]) -> bool:
    """Whether ``classes`` is CLASSES followed by any of OPTIONAL_CLASSES, in their order (what the pipeline reads)."""
    extra = tuple(classes[len(CLASSES):])
    return tuple(classes[: len(CLASSES)]) == CLASSES and extra == tuple(c for c in OPTIONAL_CLASSES if c in extra)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network and to check a checkpoint against the pipeline."""

    version: str = MODEL_VERSION
    classes: tuple[str, ...] = CLASSES
    bands: tuple[str, ...] = BANDS
    derived: tuple[str, ...] = DERIVED
    stride: int = 2
    widths: tuple[int, int, int] = (32, 48, 64)
    norm_floor: float = 0.01
    norm_clip: float = 12.0
    norm_subsample: int = 4
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("classes", "bands", "derived", "widths"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for k in ("classes", "bands", "derived", "widths"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)

    @property
    def in_channels(self) -> int:
        return len(self.bands) + len(self.derived)

    @property
    def out_channels(self) -> int:
        return len(self.classes) + len(REG_CHANNELS)


class InputNorm(nn.Module):
    """Robust per-window, per-band normalisation plus derived difference channels and the valid mask."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.floor = spec.norm_floor
        self.clip = spec.norm_clip
        self.sub = max(1, spec.norm_subsample)
        self.neighbourhood = 0  # 0: one median/spread per window; else local ones, over neighbourhoods of this side
        self.derive = True  # False once fold_derived has moved the band differences into the stem's weights
        self.jitter = 0.0  # training only: share of samples normalised as parts of a larger, different window
        names = list(spec.bands)
        self.pairs = []
        for d in spec.derived:
            if d == "valid":
                continue
            a, b = d.split("-")
            self.pairs.append((names.index(a), names.index(b)))

    def forward(self, bands: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """bands (N, C, H, W) reflectance; valid (N, H, W) bool -> (N, C + derived, H, W) float."""
        n, c = bands.shape[:2]
        h, w = bands.shape[-2:]
        s = self.sub
        sub_bands, sub_valid = bands[:, :, ::s, ::s], valid[:, ::s, ::s]
        med, scale = _robust_stats(sub_bands, sub_valid, self.floor)
        if self.training and self.jitter > 0:
            med, scale = _window_jitter(med, scale, self.jitter)
        side = self.neighbourhood
        if side and max(h, w) > 1.5 * side:  # local statistics: what a training chip of that size sees
            med_map, scale_map = _local_stats(sub_bands, sub_valid, side // s, self.floor, med, scale, (h, w))
            inv = 1.0 / (scale_map * self.clip)
            shift = -med_map * inv
        else:
            inv = (1.0 / (scale * self.clip))[..., None, None]
            shift = (-med[..., None, None]) * inv
        # written straight into one channels_last output (no torch.cat copy; the stem conv wants this layout)
        pairs = self.pairs if self.derive else []
        out = torch.empty((n, c + len(pairs) + 1, h, w), dtype=bands.dtype, device=bands.device,
                          memory_format=torch.channels_last)
        x = out[:, :c]
        # clip * tanh(z) as 2 clip sigmoid(2z) - clip: the same function, and torch's sigmoid is ~6x faster than its
        # tanh on CPU. On a dense tensor, then one strided write (straight into the strided view is ~3x slower).
        dense = torch.addcmul(2.0 * shift, bands, 2.0 * inv)
        torch.sigmoid(dense, out=dense)
        torch.sub(dense.mul_(2.0 * self.clip), self.clip, out=x)
        vf = out[:, -1:]
        vf.copy_(valid[:, None])
        if not bool(valid.all()):
            x.mul_(vf)
        for k, (a, b) in enumerate(pairs):
            torch.sub(x[:, a : a + 1], x[:, b : b + 1], out=out[:, c + k : c + k + 1])
        return out


def _window_jitter(med: torch.Tensor, scale: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Statistics of an imagined larger window around a ``share`` of the chips: its median up to 20 of the chip's
    spreads away (per band, mostly together) and its spread 0.5-2 x. Why: inference normalises 512 px windows, where
    ground unlike the window's usual (desert beside fields) sits far out on the soft clip; 96 px chips never do."""
    n, c = med.shape
    pick = (torch.rand(n, 1, device=med.device) < share).to(med.dtype)
    reach = 20.0 * torch.rand(n, 1, device=med.device)
    offset = reach * (0.8 * (2 * torch.rand(n, 1, device=med.device) - 1)
                      + 0.2 * (2 * torch.rand(n, c, device=med.device) - 1))
    factor = torch.exp(math.log(2.0) * (2 * torch.rand(n, 1, device=med.device) - 1))
    return med + pick * offset * scale, scale * (1 + pick * (factor - 1))


def _median_spread(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and 1.4826 x MAD over the last dimension, NaNs (invalid pixels) left out; NaN where all are."""
    med = torch.nanmedian(values, dim=-1).values
    return med, torch.nanmedian((values - med[..., None]).abs(), dim=-1).values * 1.4826


def _robust_stats(sample: torch.Tensor, valid: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and band: median and 1.4826 x MAD (floored) over the valid pixels of ``sample`` (N, C, H, W)."""
    n, c = sample.shape[:2]
    flat = sample.reshape(n, c, -1)
    ok = valid.reshape(n, 1, -1).expand(-1, c, -1)
    med, mad = _median_spread(torch.where(ok, flat, torch.full_like(flat, float("nan"))))
    return torch.nan_to_num(med, nan=0.0), torch.nan_to_num(mad, nan=1.0).clamp_min(floor)


def _local_stats(sample: torch.Tensor, valid: torch.Tensor, side: int, floor: float, med: torch.Tensor,
                 scale: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and spread of the ``side``-pixel neighbourhood centred on each point of a grid (every side/2
    subsampled pixels), bilinearly interpolated to ``size``: each pixel is normalised as if it sat in the middle
    of a training chip of that side. Neighbourhoods with few valid pixels (clouds) take the window's statistics."""
    n, c = sample.shape[:2]
    k = max(2, side)
    step = max(1, k // 2)
    half = k // 2
    nan = float("nan")
    padded = F.pad(torch.where(valid[:, None], sample, torch.full_like(sample, nan)), (half, half, half, half),
                   value=nan)
    patches = padded.unfold(2, k, step).unfold(3, k, step)  # (N, C, gh, gw, k, k)
    flat = patches.reshape(*patches.shape[:4], k * k)
    m, mad = _median_spread(flat)
    few = (~torch.isnan(flat[:, :1])).sum(dim=4) < max(16, k * k // 8)  # (N, 1, gh, gw)
    m = torch.where(few | torch.isnan(m), med[..., None, None], m)
    mad = torch.where(few | torch.isnan(mad), scale[..., None, None], mad.clamp_min(floor))
    # grid point i sits at subsampled pixel i * step: corner-aligned interpolation puts it back there
    return (F.interpolate(m, size=size, mode="bilinear", align_corners=True),
            F.interpolate(mad, size=size, mode="bilinear", align_corners=True))


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CenterNet(nn.Module):
    """Heatmap (one channel per class) + offset, log size, heading sin/cos, log speed at output stride 2."""

    def __init__(self, spec: ModelSpec | None = None):
        super().__init__()
        self.spec = spec or ModelSpec()
        if self.spec.stride != 2:
            raise ValueError("only output stride 2 is implemented")
        w1, w2, w3 = self.spec.widths
        self.norm = InputNorm(self.spec)
        self.level1 = nn.Sequential(_cbr(self.spec.in_channels * 4, w1), _cbr(w1, w1))
        self.level2 = nn.Sequential(_cbr(w1, w2, 2), _cbr(w2, w2))
        self.level3 = nn.Sequential(_cbr(w2, w3, 2), _cbr(w3, w3))
        self.lat3 = nn.Conv2d(w3, w2, 1)
        self.lat2 = nn.Conv2d(w2, w1, 1)
        self.fuse = _cbr(w1, w1)
        self.head = nn.Conv2d(w1, self.spec.out_channels, 1)
        with torch.no_grad():  # CenterNet prior: start with a near-empty heatmap (p = 0.01)
            self.head.bias.zero_()
            self.head.bias[: len(self.spec.classes)] = -4.6

    @property
    def num_classes(self) -> int:
        return len(self.spec.classes)

    def forward(self, bands: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """bands (N, 4, H, W) reflectance, H and W multiples of 8; returns raw logits/regressions (N, K, H/2, W/2)."""
        x = self.norm(bands, valid)
        if isinstance(self.level1[0][0], StemConv):  # inference: space-to-depth folded into a stride-2 6x6 conv
            a = self.level1(x.contiguous(memory_format=torch.channels_last))
        else:
            # channels_last: oneDNN's fast convolution layout on CPU (several times faster than NCHW here)
            a = self.level1(F.pixel_unshuffle(x, 2).contiguous(memory_format=torch.channels_last))
        b = self.level2(a)
        c = self.level3(b)
        b = _add_upsampled(b, self.lat3(c))
        a = _add_upsampled(a, self.lat2(b))
        return self.head(self.fuse(a))


def _add_upsampled(big: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
    """big + nearest-upsampled small. At inference, when big is exactly twice the size, the add is done in place
    through a broadcasting view: the same numbers without materialising the upsampled tensor (~8 % of a pass)."""
    n, c, h, w = big.shape
    if torch.is_grad_enabled() or (h, w) != (2 * small.shape[-2], 2 * small.shape[-1]):
        return big + F.interpolate(small, size=(h, w), mode="nearest")
    big.view(n, c, h // 2, 2, w // 2, 2).add_(small[:, :, :, None, :, None])
    return big


def fold_batchnorm(model: CenterNet) -> CenterNet:
    """Fold every Conv+BN pair into one conv (inference only): fewer passes over memory, same outputs."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential) and len(module) == 3 and isinstance(module[1], nn.BatchNorm2d):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return model


class StemConv(nn.Conv2d):
    """pixel_unshuffle(2) followed by a 3x3 conv, rewritten as one 6x6 stride-2 conv on the full-resolution input.

    Exactly the same function (half-resolution zero padding of 1 = full-resolution zero padding of 2), without
    materialising the rearranged input: the space-to-depth copy was ~20 % of inference time.
    """

    @classmethod
    def from_unshuffled(cls, conv: nn.Conv2d, r: int = 2) -> StemConv:
        cin = conv.in_channels // (r * r)
        k = conv.kernel_size[0]
        stem = cls(cin, conv.out_channels, k * r, stride=r, padding=conv.padding[0] * r, bias=conv.bias is not None)
        w = conv.weight.detach().reshape(conv.out_channels, cin, r, r, k, k)  # (o, c, i, j, ky, kx)
        stem.weight.data = w.permute(0, 1, 4, 2, 5, 3).reshape(conv.out_channels, cin, k * r, k * r).contiguous()
        if conv.bias is not None:
            stem.bias.data = conv.bias.detach().clone()
        return stem


def fold_stem(model: CenterNet) -> CenterNet:
    """Replace the space-to-depth + first conv by the equivalent StemConv (inference only, after fold_batchnorm)."""
    first = model.level1[0][0]
    if not isinstance(first, StemConv):
        model.level1[0][0] = StemConv.from_unshuffled(first)
    return model


def fold_derived(model: CenterNet) -> CenterNet:
    """Move the band-difference channels into the stem's weights (inference only, after fold_stem).

    The differences are linear in the normalised bands, so conv(w_d, x_a - x_b) = conv(w_d, x_a) - conv(w_d, x_b):
    the stem reads 5 channels (bands + valid) instead of 8, the same function up to float rounding (~1e-6), and
    InputNorm no longer writes the three difference maps. About a tenth of CPU inference time (MODEL_CARD)."""
    stem, norm = model.level1[0][0], model.norm
    if not isinstance(stem, StemConv):
        raise ValueError("fold_derived needs the folded stem: call fold_stem first")
    if not norm.derive:
        return model
    c = len(model.spec.bands)
    w = stem.weight.detach()
    kept = w[:, list(range(c)) + [w.shape[1] - 1]].clone()  # the bands and the valid mask
    for k, (a, b) in enumerate(norm.pairs):
        kept[:, a] += w[:, c + k]
        kept[:, b] -= w[:, c + k]
    folded = StemConv(c + 1, stem.out_channels, stem.kernel_size, stride=stem.stride, padding=stem.padding,
                      bias=stem.bias is not None)
    folded.weight.data = kept.contiguous()
    if stem.bias is not None:
        folded.bias.data = stem.bias.detach().clone()
    model.level1[0][0] = folded
    norm.derive = False
    return model


def transfer_weights(src: CenterNet, dst: CenterNet, new_class_from: str = "large_aircraft") -> None:
    """Copy ``src`` into ``dst`` where their classes differ only by classes ``dst`` adds (a second stage that
    learns a new class). The new class's head row starts as a copy of ``new_class_from`` (an aircraft-like
    detector is a closer start for fighters than a blank one); shared classes and regressions keep their rows."""
    s_cls, d_cls = tuple(src.spec.classes), tuple(dst.spec.classes)
    missing = [c for c in s_cls if c not in d_cls]
    if missing:
        raise ValueError(f"cannot transfer: the new model lacks classes {missing}")
    state = src.state_dict()
    rows = [s_cls.index(c) if c in s_cls else s_cls.index(new_class_from) for c in d_cls]
    rows += [len(s_cls) + i for i in range(len(REG_CHANNELS))]
    idx = torch.tensor(rows)
    state["head.weight"] = state["head.weight"][idx].clone()
    state["head.bias"] = state["head.bias"][idx].clone()
    dst.load_state_dict(state)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
