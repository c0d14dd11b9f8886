"""Checkpoints of the small crop networks (heading network, verifier): one format of file, one set of checks.

Each network names its own format, version, training command and the config key that switches it off; everything
else (atomic writes, weights-only loading, the version and band checks, the error texts) is shared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.centernet import BANDS
from pipeline.atomic import atomic_write
from pipeline.errors import ModelError


@dataclass(frozen=True)
class CropNetKind:
    """What a kind of crop-network checkpoint is called and how it is made (for checks and error texts)."""

    what: str  # "heading weights"
    format: str  # written into the file
    version: str  # the network version this code builds
    train_command: str  # "train-heading"
    null_setting: str  # "detector.heading_weights"
    without: str  # what the pipeline does without it, e.g. "the detector's own headings"


def save_crop_net(path: str | Path, kind: CropNetKind, net: nn.Module, meta: dict | None = None,
                  train_state: dict | None = None) -> Path:
    """Write atomically: a killed save never leaves a truncated file behind."""
    blob = {"format": kind.format, "spec": net.spec.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "meta": dict(meta or {})}
    if train_state is not None:
        blob["train_state"] = train_state
    with atomic_write(Path(path)) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def read_crop_blob(path: str | Path, kind: CropNetKind) -> dict:
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{kind.what} {path} not found; train them with `basewatch {kind.train_command}` or set "
                         f"{kind.null_setting} to null ({kind.without})")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise ModelError(f"{kind.what} {path} are not readable ({exc}); re-train them") from None
    if not isinstance(blob, dict) or blob.get("format") != kind.format:
        raise ModelError(f"{kind.what} {path} are not in format {kind.format!r}; they were not written by "
                         f"basewatch {kind.train_command}")
    return blob


def load_crop_net(path: str | Path, kind: CropNetKind, spec_type, net_type) -> tuple[nn.Module, dict]:
    """Load and check (version, bands) a checkpoint into an eval-mode ``net_type``; returns (net, meta)."""
    blob = read_crop_blob(path, kind)
    spec = spec_type.from_dict(blob.get("spec") or {})
    problems = []
    if spec.version != kind.version:
        problems.append(f"version {spec.version!r} (expected {kind.version!r})")
    if tuple(spec.bands) != BANDS:
        problems.append(f"bands {list(spec.bands)} (expected {list(BANDS)})")
    if problems:
        raise ModelError(f"{kind.what} {path} do not match this basewatch: " + "; ".join(problems))
    net = net_type(spec)
    try:
        net.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"{kind.what} {path} do not fit the declared network ({exc}); re-train them") from None
    net.eval()
    return net, dict(blob.get("meta") or {})
