"""Training of the heading network (models/heading_net.py): deterministic given the seed, checkpointed, resumable.

The crops are built once from the config (chip seeds, scene folders) and cached beside the output, so a second run
or a resumed one does not render them again. Each step draws its batch and its symmetry of the square from an RNG
seeded by (seed, step): a killed run restarted with the same config continues at its last checkpoint and ends
where an uninterrupted one would (up to multi-threaded float rounding).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from models.crop_training import train_steps
from models.dataset import CANONICAL
from models.heading_data import JITTER_CLIP_PX, JITTER_PX, CropSet, Jitter, build_crop_set, dihedral_crops
from models.heading_net import (
    HEADING_KIND,
    HeadingNet,
    HeadingSpec,
    angle_error,
    angular_loss,
    heading_from_output,
    save_heading_net,
)
from pipeline.config import Strict, _load_model, resolve_path
from pipeline.heap import retain_freed_memory
from pipeline.simulate.chips import ChipOptions
from pipeline.simulate.physics import derive_seed

log = logging.getLogger(__name__)



class HeadingTrainConfig(Strict):
    seed: int = Field(default=0, description="Master seed: initial weights, batches and symmetries.")
    chip_seed_base: int = Field(default=61_000_000, description="Training chips are render_chip seeds base + i.")
    chips: int = Field(default=6000, ge=0, description="Chips rendered for training crops.")
    val_chips: int = Field(default=400, ge=0, description="Further chips (seeds after the training ones) whose "
                                                          "crops are only scored, never trained on.")
    chip_size: int = Field(default=128, ge=32, le=1024, description="Chip side in pixels.")
    crop: int = Field(default=15, ge=7, le=63, description="Crop side in pixels (odd: centred on a pixel).")
    copies: int = Field(default=2, ge=1, le=16, description="Jittered crops per chip truck.")
    scenes: list[str] = Field(default_factory=list, description="Folders of scene-renderer scenes with truth "
                                                                "(never the evaluation seeds).")
    sand_tracks: float = Field(default=0.0, ge=0, le=1, description="Share of chip roads left unpaved (desert "
                                                                    "tracks: dark trucks on bright sand).")
    slow_convoys: float = Field(default=0.0, ge=0, le=1, description="Share of chip truck groups at 6-12 m/s.")
    jitter_px: float = Field(default=JITTER_PX, ge=0, le=4, description="Training crops' centres move by a normal of "
                             "this many pixels per axis: the detector's localisation error, which the network must "
                             "read through (a centre 1 px behind a truck reversed the network trained at 0.4).")
    jitter_clip_px: float = Field(default=JITTER_CLIP_PX, ge=0, le=6, description="Largest centre move per axis.")
    scene_copies: int = Field(default=4, ge=1, le=16, description="Jittered crops per scene truck.")
    steps: int = Field(default=6000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(default=256, ge=8, le=4096, description="Crops per step.")
    lr: float = Field(default=2e-3, gt=0, description="Peak learning rate (AdamW, one-cycle).")
    weight_decay: float = Field(default=1e-4, ge=0, description="AdamW weight decay.")
    width: int = Field(default=32, ge=8, le=128, description="Channels of the first convolutions.")
    hidden: int = Field(default=64, ge=8, le=512, description="Hidden units of the final MLP.")
    workers: int = Field(default=2, ge=1, le=16, description="Processes rendering the chips.")
    out: str = Field(default="models/weights/basewatch_heading.pt", description="Weights to write.")


def load_heading_config(path: str | Path) -> HeadingTrainConfig:
    return _load_model(Path(path), HeadingTrainConfig)


def _crop_cache(cfg: HeadingTrainConfig, first: int, chips: int, scenes: list[str]) -> Path:
    key = json.dumps([first, chips, cfg.chip_size, cfg.crop, cfg.copies, scenes, cfg.scene_copies,
                      cfg.sand_tracks, cfg.slow_convoys, cfg.jitter_px, cfg.jitter_clip_px], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return resolve_path("basewatch-data") / f"heading_crops_{digest}.npz"


def crop_set(cfg: HeadingTrainConfig, first: int, chips: int, scenes: list[str], progress=None) -> CropSet:
    """Build (or read from the cache) the crops of ``chips`` chips from seed ``first`` and of ``scenes``."""
    cache = _crop_cache(cfg, first, chips, scenes)
    if cache.exists():
        return CropSet.load(cache)
    crops = build_crop_set(first, chips, cfg.chip_size, cfg.crop, cfg.copies,
                           [resolve_path(s) for s in scenes], cfg.scene_copies, cfg.workers,
                           ChipOptions(sand_tracks=cfg.sand_tracks, slow_convoys=cfg.slow_convoys), progress,
                           Jitter(cfg.jitter_px, cfg.jitter_clip_px))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    crops.save(tmp)
    tmp.replace(cache)
    return crops


def score(net: HeadingNet, crops: CropSet, batch: int = 1024) -> dict:
    """Heading error of ``net`` on ``crops``: share within 30 degrees, share reversed (> 150), median error."""
    net.eval()
    preds = []
    with torch.inference_mode():
        for k in range(0, len(crops), batch):
            out = net(torch.from_numpy(crops.crops[k : k + batch]), torch.from_numpy(crops.valid[k : k + batch]),
                      torch.from_numpy(crops.offsets[k : k + batch]))
            preds.append(heading_from_output(out).numpy())
    err = angle_error(np.concatenate(preds) if preds else np.zeros(0), crops.heading)
    n = len(err)
    return {"n": n, "within_30": float((err <= 30).mean()) if n else None,
            "reversed": float((err > 150).mean()) if n else None,
            "median_error_deg": float(np.median(err)) if n else None}


def _batch(crops: CropSet, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, ...]:
    idx = rng.integers(0, len(crops), size)
    transpose, vflip, hflip = CANONICAL[int(rng.integers(8))]
    c, v, o, h = dihedral_crops(crops.crops[idx], crops.valid[idx], crops.offsets[idx], crops.heading[idx],
                                transpose, vflip, hflip)
    return torch.from_numpy(c), torch.from_numpy(v), torch.from_numpy(o), torch.from_numpy(h)


def train_heading(cfg: HeadingTrainConfig, stop_after: int | None = None, progress=None) -> Path:
    """Train (or resume) and write the weights to ``cfg.out``; returns the path written."""
    retain_freed_memory()
    out = resolve_path(cfg.out)
    partial = out.with_name(out.stem + ".partial.pt")
    train = crop_set(cfg, cfg.chip_seed_base, cfg.chips, cfg.scenes)
    val = crop_set(cfg, cfg.chip_seed_base + cfg.chips, cfg.val_chips, [])
    log.info("heading crops: %d training, %d validation", len(train), len(val))
    if not len(train):
        raise ValueError("no training crops: no chip or scene held a learnable moving truck")
    torch.manual_seed(cfg.seed)
    net = HeadingNet(HeadingSpec(crop=cfg.crop, width=cfg.width, hidden=cfg.hidden))

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng(derive_seed("heading-batch", cfg.seed, step))
        crops, valid, offsets, heading = _batch(train, rng, cfg.batch_size)
        return angular_loss(net(crops, valid, offsets), heading)

    loop = train_steps(net, HEADING_KIND, partial, lr=cfg.lr, weight_decay=cfg.weight_decay, steps=cfg.steps,
                       stop_after=stop_after, loss_at=loss_at, progress=progress)
    if loop.step < cfg.steps:
        return partial
    meta = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg.model_dump(),
        "train_crops": len(train),
        "loop_seconds": round(loop.seconds, 1),
        "hardware": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}".strip(),
        "validation_chips": score(net, val),
        "final_loss": loop.running_loss,
    }
    meta["weights_id"] = hashlib.sha256(json.dumps(meta["config"], sort_keys=True).encode()).hexdigest()[:12]
    net.eval()
    save_heading_net(out, net, meta)
    partial.unlink(missing_ok=True)
    return out
