"""A second look at each moving vehicle's heading: a small CNN on a full-resolution crop around the detection.

Why a separate network: the detector reads a truck's heading from a 1x1 head on 20 m features shared with four
other outputs, and its scores carry the alert rules, so retraining it to improve headings moves counts and surges
(MODEL_CARD, stages 6-19). This network only sees a 15 x 15 px crop centred on a detection that has already been
made, at the sensor's 10 m, and answers one question: which way is the band-offset "rainbow" (B02 -> B03 -> B04)
running. Detections and scores stay exactly the detector's; only ``heading_deg`` of moving vehicles changes.

Input per crop: the four bands normalised by the crop's own per-band median and robust spread (so the ground the
truck drives on sets the polarity: darker or brighter than the truck), the three band differences, the valid mask,
and the detection's sub-pixel position in the centre pixel as two constant channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.centernet import BANDS
from models.crop_checkpoint import CropNetKind, load_crop_net, read_crop_blob, save_crop_net

HEADING_VERSION = "heading-crop-v1"
FORMAT = "basewatch-heading-1"
DIFF_PAIRS: tuple[tuple[int, int], ...] = ((2, 0), (1, 0), (2, 1))  # B04-B02, B03-B02, B04-B03


@dataclass(frozen=True)
class HeadingSpec:
    """What the crop network was built with; checked against the pipeline when loaded."""

    version: str = HEADING_VERSION
    bands: tuple[str, ...] = BANDS
    crop: int = 15
    width: int = 32
    hidden: int = 64
    norm_floor: float = 0.01
    norm_clip: float = 12.0

    @property
    def in_channels(self) -> int:
        return len(self.bands) + len(DIFF_PAIRS) + 1 + 2  # bands, differences, valid, sub-pixel offset

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bands"] = list(d["bands"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HeadingSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "bands" in known:
            known["bands"] = tuple(known["bands"])
        return cls(**known)


def crop_channels(crops: torch.Tensor, valid: torch.Tensor, floor: float, clip: float) -> torch.Tensor:
    """Bands normalised by each crop's own per-band median and robust spread (soft-clipped), their differences and
    the valid mask: (N, 4, S, S) + (N, S, S) -> (N, 8, S, S)."""
    n, c, _, _ = crops.shape
    flat = crops.reshape(n, c, -1)
    ok = valid.reshape(n, 1, -1).expand(-1, c, -1)
    med = masked_lower_median(flat, ok, empty=0.0)
    mad = masked_lower_median((flat - med[..., None]).abs(), ok, empty=1.0 / 1.4826) * 1.4826
    scale = mad.clamp_min(floor)
    z = (crops - med[..., None, None]) / scale[..., None, None]
    x = clip * torch.tanh(z / clip) * valid[:, None]
    diffs = [x[:, a : a + 1] - x[:, b : b + 1] for a, b in DIFF_PAIRS]
    return torch.cat([x, *diffs, valid[:, None].to(x.dtype)], dim=1)


def masked_lower_median(values: torch.Tensor, ok: torch.Tensor, empty: float) -> torch.Tensor:
    """Median over the last axis of the values where ``ok`` (the lower of the two middle ones, as
    ``torch.nanmedian``), ``empty`` where none is. Rows wholly ``ok`` (most crops) take ``torch.median``, the rest
    a sort and a gather: both several times faster than nanmedian on the CPU, which matters with thousands of crops
    per scene."""
    count = ok.sum(dim=-1, keepdim=True)
    partial = (count < values.shape[-1]).squeeze(-1)
    middle = _lower_median(values)
    if bool(partial.any()):
        some, some_ok, some_count = values[partial], ok[partial], count[partial]
        ordered = torch.where(some_ok, some, torch.full_like(some, float("inf"))).sort(dim=-1).values
        middle[partial] = ordered.gather(-1, ((some_count - 1).clamp_min(0) // 2)).squeeze(-1)
    return torch.where(count.squeeze(-1) > 0, middle, torch.full_like(middle, empty))


def _lower_median(values: torch.Tensor) -> torch.Tensor:
    """``values.median(dim=-1).values`` (the lower middle value; the bands hold no NaN). On the CPU numpy's
    partition finds the same element about four times faster than torch.median: the crop networks normalise
    thousands of crops per scene, and this was half of that work."""
    if values.device.type != "cpu" or values.shape[-1] == 0:
        return values.median(dim=-1).values
    k = (values.shape[-1] - 1) // 2
    array = values.detach().numpy()
    return torch.from_numpy(np.ascontiguousarray(np.partition(array, k, axis=-1)[..., k]))


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HeadingNet(nn.Module):
    """Crops (N, 4, S, S) reflectance + valid (N, S, S) + sub-pixel offsets (N, 2) -> (N, 2) heading (sin, cos)."""

    def __init__(self, spec: HeadingSpec | None = None):
        super().__init__()
        self.spec = spec or HeadingSpec()
        w, s = self.spec.width, self.spec.crop
        self.features = nn.Sequential(_cbr(self.spec.in_channels, w), _cbr(w, w), _cbr(w, w * 3 // 2, 2),
                                      _cbr(w * 3 // 2, w * 3 // 2))
        half = (s + 1) // 2
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(w * 3 // 2 * half * half, self.spec.hidden),
                                 nn.ReLU(inplace=True), nn.Linear(self.spec.hidden, 2))

    def inputs(self, crops: torch.Tensor, valid: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The network's input channels (see module docstring)."""
        s = crops.shape[-1]
        off = offsets[:, :, None, None].expand(-1, -1, s, s)
        return torch.cat([crop_channels(crops, valid, self.spec.norm_floor, self.spec.norm_clip), off], dim=1)

    def forward(self, crops: torch.Tensor, valid: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(self.inputs(crops, valid, offsets)))


def heading_from_output(out: torch.Tensor) -> torch.Tensor:
    """(N, 2) raw (sin, cos) -> degrees in [0, 360): 0 = north (up the raster), clockwise."""
    return torch.rad2deg(torch.atan2(out[:, 0], out[:, 1])) % 360.0


def angular_loss(out: torch.Tensor, heading_deg: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cos(error): smooth, bounded, and indifferent to the output vector's length."""
    h = torch.deg2rad(heading_deg)
    target = torch.stack([torch.sin(h), torch.cos(h)], dim=1)
    unit = out / out.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return (1.0 - (unit * target).sum(dim=1)).mean()


def extract_crops(bands: np.ndarray, valid: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops of ``size`` px centred on the pixels holding (rows, cols) (continuous coordinates: pixel i spans
    [i, i + 1)), zero and invalid beyond the raster; returns (crops (N, C, S, S), valid (N, S, S), offsets (N, 2)
    of each point from its pixel's centre, in [-0.5, 0.5))."""
    c, h, w = bands.shape
    half = size // 2
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    offsets = np.stack([rows - r0 - 0.5, cols - c0 - 0.5], axis=1).astype(np.float32)
    padded = np.zeros((c, h + 2 * half, w + 2 * half), np.float32)
    padded[:, half : half + h, half : half + w] = bands
    pvalid = np.zeros((h + 2 * half, w + 2 * half), bool)
    pvalid[half : half + h, half : half + w] = valid
    rr = np.clip(r0, 0, h - 1) + half  # a point off the raster (a jittered edge truck) takes the nearest pixel
    cc = np.clip(c0, 0, w - 1) + half
    crops = np.stack([padded[:, r - half : r + half + 1, q - half : q + half + 1] for r, q in zip(rr, cc, strict=True)])
    cvalid = np.stack([pvalid[r - half : r + half + 1, q - half : q + half + 1] for r, q in zip(rr, cc, strict=True)])
    return crops.reshape(len(rows), c, size, size), cvalid.reshape(len(rows), size, size), offsets


SYMMETRIES: tuple[tuple[bool, bool, bool], ...] = tuple((t, v, h) for t in (False, True) for v in (False, True)
                                                        for h in (False, True))
"""(transpose, vertical flip, horizontal flip), applied in that order: the 8 symmetries of the square."""


def _apply(t: torch.Tensor, view: tuple[bool, bool, bool]) -> torch.Tensor:
    transpose, vflip, hflip = view
    if transpose:
        t = t.transpose(-2, -1)
    if vflip:
        t = t.flip(-2)
    if hflip:
        t = t.flip(-1)
    return t


def _apply_vector(v: torch.Tensor, view: tuple[bool, bool, bool], undo: bool = False) -> torch.Tensor:
    """(N, 2) (row, col) vectors under ``view`` (or its inverse: the same steps in reverse order)."""
    transpose, vflip, hflip = view
    steps = [("t", transpose), ("v", vflip), ("h", hflip)]
    for name, on in (reversed(steps) if undo else steps):
        if on:
            v = v.flip(1) if name == "t" else v * (torch.tensor([-1.0, 1.0]) if name == "v" else
                                                       torch.tensor([1.0, -1.0])).to(v)
    return v


def heading_over_symmetries(net: HeadingNet, crops: torch.Tensor, valid: torch.Tensor, offsets: torch.Tensor,
                            views: int = 8) -> torch.Tensor:
    """Headings (degrees) as the mean direction over ``views`` symmetries of each crop (1 = as is). Why: the
    network is not exactly equivariant; averaging its reading of the mirrored crops steadies the faint ones. The
    crop's normalisation does not depend on which way it is turned, so it is computed once, and the views go
    through the network as one batch (in eval mode the same headings as one view at a time, several times
    faster)."""
    n, s = crops.shape[0], crops.shape[-1]
    x = crop_channels(crops, valid, net.spec.norm_floor, net.spec.norm_clip)
    chosen = SYMMETRIES[:views]
    turned = [torch.cat([_apply(x, view), _apply_vector(offsets, view)[:, :, None, None].expand(-1, -1, s, s)],
                        dim=1) for view in chosen]
    out = net.mlp(net.features(torch.cat(turned).contiguous(memory_format=torch.channels_last)))
    out = out.float().reshape(len(chosen), n, 2)
    total = torch.zeros(n, 2, dtype=torch.float32, device=crops.device)
    for view, view_out in zip(chosen, out, strict=True):
        unit = view_out / view_out.norm(dim=1, keepdim=True).clamp_min(1e-6)
        direction = torch.stack([-unit[:, 1], unit[:, 0]], dim=1)  # (sin, cos) -> (d_row, d_col)
        total += _apply_vector(direction, view, undo=True)
    return torch.rad2deg(torch.atan2(total[:, 1], -total[:, 0])) % 360.0


def fold_features_for_inference(net: nn.Module) -> nn.Module:
    """Every conv + BN pair of ``net.features`` folded into one conv, weights channels_last (inference only; the
    same outputs up to float rounding)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    for block in net.features:
        if isinstance(block[1], nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
    return net.to(memory_format=torch.channels_last)


class HeadingRefiner:
    """The loaded crop network, ready to re-read headings at detections (eval mode)."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", views: int = 8):
        self.views = views
        self.path = Path(path)
        net, self.meta = load_heading_net(self.path)
        self.net = fold_features_for_inference(net).to(device)
        self.device = torch.device(device)

    @property
    def model_id(self) -> str:
        return f"{self.net.spec.version}@{self.meta.get('weights_id', 'unknown')}"

    def headings(self, bands: np.ndarray, valid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Headings (degrees) of objects centred at (rows, cols) of one image ``bands`` (4, H, W) / ``valid``."""
        if len(rows) == 0:
            return np.zeros(0, np.float64)
        crops, cvalid, offsets = extract_crops(bands, valid, np.asarray(rows, np.float64),
                                               np.asarray(cols, np.float64), self.net.spec.crop)
        with torch.inference_mode():
            heading = heading_over_symmetries(self.net, torch.from_numpy(crops).to(self.device),
                                              torch.from_numpy(cvalid).to(self.device),
                                              torch.from_numpy(offsets).to(self.device), self.views)
        return heading.cpu().numpy().astype(np.float64)


HEADING_KIND = CropNetKind("heading weights", FORMAT, HEADING_VERSION, "train-heading", "detector.heading_weights",
                           "the detector's own headings")


def save_heading_net(path: str | Path, net: HeadingNet, meta: dict | None = None,
                     train_state: dict | None = None) -> Path:
    """Write atomically: a killed save never leaves a truncated file behind."""
    return save_crop_net(path, HEADING_KIND, net, meta, train_state)


def read_heading_blob(path: str | Path) -> dict:
    return read_crop_blob(path, HEADING_KIND)


def load_heading_net(path: str | Path) -> tuple[HeadingNet, dict]:
    """Load and check (version, bands) a heading checkpoint into an eval-mode HeadingNet; returns (net, meta)."""
    return load_crop_net(path, HEADING_KIND, HeadingSpec, HeadingNet)


def direction_of(heading_deg: np.ndarray) -> np.ndarray:
    """Unit (d_row, d_col) of travel for headings (0 = north = -row, clockwise)."""
    h = np.deg2rad(heading_deg)
    return np.stack([-np.cos(h), np.sin(h)], axis=-1)


def heading_of(direction: np.ndarray) -> np.ndarray:
    """Inverse of direction_of."""
    return np.rad2deg(np.arctan2(direction[..., 1], -direction[..., 0])) % 360.0


def angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of two headings, 0-180 degrees."""
    d = np.abs((np.asarray(a) - np.asarray(b)) % 360.0)
    return np.minimum(d, 360.0 - d)

