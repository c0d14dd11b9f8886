"""Saving and loading detector checkpoints with the metadata the pipeline checks before trusting them.

A checkpoint is a plain dict (loadable with ``torch.load(..., weights_only=True)``): ``spec`` (version, classes,
bands, derived channels, widths, normalisation), ``state_dict`` and ``meta`` (training provenance, thresholds).
Training checkpoints add ``train_state`` (optimizer, step, RNG) so a killed run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.centernet import BANDS, CLASSES, MODEL_VERSION, OPTIONAL_CLASSES, CenterNet, ModelSpec, supported_classes
from pipeline.atomic import atomic_write
from pipeline.errors import ModelError

FORMAT = "basewatch-checkpoint-1"


def save_checkpoint(path: str | Path, model: CenterNet, meta: dict | None = None,
                    train_state: dict | None = None) -> Path:
    """Write atomically (temp + rename): a killed save never leaves a truncated checkpoint behind."""
    path = Path(path)
    blob = {
        "format": FORMAT,
        "spec": model.spec.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        blob["train_state"] = train_state
    with atomic_write(path) as tmp:
        torch.save(blob, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ModelError(
            f"checkpoint {path} not found; train one with `basewatch train --config configs/train.yaml` "
            "or set detector.weights (or choose detector.name: classical)"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is not a usable checkpoint
        raise ModelError(f"checkpoint {path} is not a readable basewatch checkpoint ({exc}); re-train or re-download "
                         "it") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"checkpoint {path} is not in format {FORMAT!r}; it was not written by basewatch train")
    return blob


def check_spec(spec: ModelSpec, path: str | Path, classes: tuple[str, ...] | None = None,
               bands: tuple[str, ...] = BANDS, version: str = MODEL_VERSION) -> None:
    """Refuse a checkpoint whose classes, bands or version differ from what the pipeline expects. ``classes``
    None accepts CLASSES plus any of OPTIONAL_CLASSES (in order); a tuple demands exactly those."""
    problems = []
    if spec.version != version:
        problems.append(f"version {spec.version!r} (expected {version!r})")
    if classes is None and not supported_classes(tuple(spec.classes)):
        problems.append(f"classes {list(spec.classes)} (expected {list(CLASSES)} optionally followed by "
                        f"{list(OPTIONAL_CLASSES)})")
    elif classes is not None and tuple(spec.classes) != tuple(classes):
        problems.append(f"classes {list(spec.classes)} (expected {list(classes)})")
    if tuple(spec.bands) != tuple(bands):
        problems.append(f"bands {list(spec.bands)} (expected {list(bands)})")
    if problems:
        raise ModelError(
            f"checkpoint {path} does not match this basewatch: " + "; ".join(problems)
            + ". Re-train with `basewatch train --config configs/train.yaml` or point detector.weights at a "
            "matching checkpoint"
        )


def load_model(path: str | Path, classes: tuple[str, ...] | None = None, bands: tuple[str, ...] = BANDS,
               version: str = MODEL_VERSION) -> tuple[CenterNet, dict]:
    """Load a checkpoint into an eval-mode CenterNet after checking its metadata; returns (model, meta)."""
    blob = read_checkpoint(path)
    spec = ModelSpec.from_dict(blob.get("spec") or {})
    check_spec(spec, path, classes, bands, version)
    model = CenterNet(spec)
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"checkpoint {path}: weights do not fit the declared architecture ({exc}); re-train it") \
            from None
    model.eval()
    return model, dict(blob.get("meta") or {})
