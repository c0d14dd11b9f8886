"""Where the network runs: the CPU, or a CUDA GPU when one is asked for or (``auto``) present."""

from __future__ import annotations

import torch

from pipeline.errors import ConfigError


def resolve_device(name: str, setting: str = "detector.device") -> torch.device:
    """``auto``: the first CUDA GPU when torch sees one, else the CPU; ``cuda`` without one is a clear error naming
    ``setting``. On a GPU, float32 convolutions stay full precision: TF32 would shift scores by ~1e-3 and move
    detections across thresholds calibrated on the CPU, and this network is too small for TF32 to buy anything."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"{setting} is cuda, but this torch sees no CUDA GPU; set {setting} to auto or cpu")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        return torch.device("cuda")
    if name not in ("auto", "cpu"):
        raise ConfigError(f"{setting} must be auto, cpu or cuda (got {name!r})")
    return torch.device("cpu")
