"""Training loop of the CenterNet detector: deterministic given the seed, checkpointed, resumable.

The sample stream is indexed (see models/dataset.py), so the state of a run is just (model, EMA, optimizer,
scheduler, step): a killed run restarted with the same config continues at the last checkpoint and ends with the
same weights as an uninterrupted one (up to float non-associativity of multi-threaded CPU kernels).
The committed weights are the exponential moving average (EMA) of the parameters, which is smoother than the
last iterate on a small CPU budget.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
import time
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Sampler

from models.centernet import CLASSES, OPTIONAL_CLASSES, CenterNet, ModelSpec, supported_classes, transfer_weights
from models.checkpoint import load_model, read_checkpoint, save_checkpoint
from models.dataset import LabelledScenes, TrainingStream
from models.device import resolve_device
from models.targets import distillation_loss, total_loss
from pipeline.config import Strict, _load_model, resolve_path
from pipeline.errors import ModelError
from pipeline.heap import retain_freed_memory
from pipeline.simulate.chips import ChipOptions

log = logging.getLogger(__name__)

TRAIN_SEED_BASE = 1_000_000
"""Simulated training chips use render_chip seeds TRAIN_SEED_BASE + i; evaluation uses EVAL_SEED_BASE + i."""
EVAL_SEED_BASE = 900_000_000


class TrainConfig(Strict):
    seed: int = Field(default=0, description="Master seed: initial weights and augmentation.")
    steps: int = Field(default=3000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(default=16, ge=1, le=256, description="Chips per step.")
    chip_size: int = Field(default=128, ge=32, le=1024, description="Chip side in pixels (multiple of 8).")
    lr: float = Field(default=3e-3, gt=0, description="Peak learning rate (AdamW, one-cycle schedule).")
    weight_decay: float = Field(default=1e-4, ge=0, description="AdamW weight decay.")
    ema_decay: float = Field(default=0.998, ge=0, lt=1, description="EMA decay of the committed weights.")
    widths: tuple[int, int, int] = Field(default=(32, 48, 64), description="Channels of the three levels.")
    classes: tuple[str, ...] = Field(default=CLASSES, description="Heatmap classes: large_aircraft, vehicle, and "
                                     "optionally small_aircraft (fighters and helicopters, for parked-aircraft "
                                     "drawdown). A second stage may add a class to its init_from weights.")
    workers: int = Field(default=1, ge=0, le=16, description="Chip-rendering loader processes (0 = in-process).")
    threads: int = Field(default=0, ge=0, le=64, description="Torch threads for the training step; 0 = all cores.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where the training step runs: auto "
                                                   "= a CUDA GPU when torch sees one (chips are still rendered by "
                                                   "the loader workers on the CPU).")
    labels_every: int = Field(default=4, ge=1, description="With --labels, every n-th sample is a labelled crop.")
    checkpoint_dir: str = Field(default="basewatch-data/train", description="Resumable training state lives here.")
    checkpoint_every: int = Field(default=100, ge=1, description="Steps between resumable checkpoints.")
    out: str = Field(default="models/weights/basewatch_centernet.pt", description="Final (EMA) weights written here.")
    heading_loss: Literal["normalized", "raw"] = Field(default="normalized", description="L1 on the normalised "
                                                       "(sin, cos) output, or on the raw output (no saddle when the "
                                                       "prediction is reversed).")
    heading_weight: float = Field(default=0.5, ge=0, description="Weight of the heading loss.")
    ignore_faint: bool = Field(default=True, description="Leave objects fainter than the noise out of the loss "
                                                         "(models/dataset.py MIN_CONTRAST).")
    faint_limits: dict[str, float] | None = Field(default=None, description="Per-class peak reflectance change "
                                                  "below which a chip object is left out of the loss; None: "
                                                  "models/dataset.py MIN_CONTRAST.")
    polarity_flip: float = Field(default=0.0, ge=0, le=1, description="Probability that a sample is mirrored about "
                                 "its per-band median (dark objects become bright ones; models/dataset.py).")
    fighter_rows: float = Field(default=0.0, ge=0, le=1, description="Probability that a chip gets an extra row of "
                                "fighters/helicopters side by side (hard negatives for large_aircraft).")
    relative_paint: float = Field(default=0.0, ge=0, le=1, description="Share of chip aircraft painted 0.05-0.22 "
                                  "brighter or darker than their ground instead of a catalogue paint "
                                  "(pipeline/simulate/chips.py ground_relative_paint).")
    bright_aprons: float = Field(default=0.0, ge=0, le=1, description="Share of chip aprons made 1.2-1.8 x "
                                 "brighter (new or sun-bleached concrete; pipeline/simulate/chips.py).")
    sand_tracks: float = Field(default=0.0, ge=0, le=1, description="Share of chip roads left unpaved, in the "
                               "ground's own colour (desert tracks: trucks darker than the ground; "
                               "pipeline/simulate/chips.py unpaved_track).")
    slow_convoys: float = Field(default=0.0, ge=0, le=1, description="Share of chip truck groups driving at "
                                "6-12 m/s instead of 1-30 (convoys leaving a base: a one-pixel band offset; set-A "
                                "recall 0.49-0.56 there, against 0.77 at 15-20 m/s).")
    matched_paint: float = Field(default=0.0, ge=0, le=1, description="Share of chip aircraft painted flat grey at "
                                 "their ground's brightness with sun-length shadows, so that shadow and outline are "
                                 "the cue (the independent renderer's grey transports; pipeline/simulate/chips.py "
                                 "ground_matched_paint).")
    norm_jitter: float = Field(default=0.0, ge=0, le=1, description="Share of samples normalised as parts of a "
                               "larger window with other statistics (models/centernet.py _window_jitter): the "
                               "inference windows' regime, which 96 px chips never show.")
    train_only_classes: tuple[str, ...] | None = Field(default=None, description="Train only these classes' "
                                                       "heatmap rows; every other weight, the shared regressions "
                                                       "and the BatchNorm statistics stay as init_from has them, so "
                                                       "adding a class cannot move what the others output.")
    distill_from: str | None = Field(default=None, description="Teacher weights: their classes (and the "
                                     "regressions where they see an object) are held to the teacher's outputs "
                                     "while the network learns, e.g. a new class (models/targets.py "
                                     "distillation_loss).")
    distill_weight: float = Field(default=1.0, ge=0, description="Weight of the distillation loss.")
    distill_classes: tuple[str, ...] | None = Field(default=None, description="Hold only these of the teacher's "
                                                    "classes (default all): e.g. large_aircraft, whose scores the "
                                                    "surge rule was tuned on, while vehicles learn freely.")
    init_from: str | None = Field(default=None, description="Start from these weights (a second stage) instead of "
                                                            "random initialisation.")
    scenes: str | None = Field(default=None, description="Folder of simulated scenes + truth mixed in like --labels "
                                                         "(written by `basewatch simulate --held-out N --seed S`).")
    scene_count: int = Field(default=0, ge=0, description="If > 0, render this many scenes into `scenes` first "
                                                          "(when missing) with the scene renderer.")
    scene_seed: int = Field(default=777, description="Seed of those training scenes; evaluation scenes must use "
                                                     "another one.")

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not supported_classes(tuple(v)):
            raise ValueError(f"classes must be {list(CLASSES)} optionally followed by {list(OPTIONAL_CLASSES)}")
        return tuple(v)

    @model_validator(mode="after")
    def _trained_classes_exist(self) -> TrainConfig:
        unknown = [c for c in self.train_only_classes or () if c not in self.classes]
        if unknown:
            raise ValueError(f"train_only_classes {unknown} are not among classes {list(self.classes)}")
        if self.distill_classes and not self.distill_from:
            raise ValueError("distill_classes needs distill_from: the teacher whose outputs they are held to")
        if self.train_only_classes and not self.init_from:
            raise ValueError("train_only_classes needs init_from: the frozen rest of the network must come from "
                             "trained weights")
        return self

    @field_validator("chip_size")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError("chip_size must be a multiple of 8 (the network downsamples by 8)")
        return v

    def chip_options(self) -> ChipOptions:
        """The chip renderer's options this config sets (flat keys here, so configs stay one level deep)."""
        return ChipOptions(**{f.name: getattr(self, f.name) for f in fields(ChipOptions) if hasattr(self, f.name)})

    def fingerprint(self) -> str:
        """Hash of everything that changes the result (not where files go or how many threads run)."""
        d = self.model_dump(mode="json")
        for k in ("workers", "threads", "device", "checkpoint_dir", "checkpoint_every", "out"):
            d.pop(k)
        added_later = {"classes": list(CLASSES), "train_only_classes": None, "distill_from": None,
                       "distill_weight": 1.0, "distill_classes": None, "norm_jitter": 0.0, "slow_convoys": 0.0,
                       "matched_paint": 0.0}
        for k, default in added_later.items():  # at their defaults, options added later leave old fingerprints
            if d[k] == default:
                d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def load_train_config(path: str | Path | None) -> TrainConfig:
    if path is None:
        return TrainConfig()
    return _load_model(Path(path), TrainConfig)


def freeze_except(model: CenterNet, classes: tuple[str, ...]) -> torch.Tensor:
    """Freeze everything but the head; returns the mask of head rows (those of ``classes``) that may learn. The
    caller zeroes the other rows' gradients (one tensor holds every row) and keeps BatchNorm in eval mode."""
    for p in model.parameters():
        p.requires_grad_(False)
    model.head.weight.requires_grad_(True)
    model.head.bias.requires_grad_(True)
    rows = torch.zeros(model.head.out_channels, dtype=torch.bool)
    for c in classes:
        rows[model.spec.classes.index(c)] = True
    return rows


class _FromIndex(Sampler[int]):
    """Sequential indices start, start+1, ...: the sample stream resumes exactly where it stopped."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))


def weights_id(model: torch.nn.Module) -> str:
    buf = io.BytesIO()
    for k, v in sorted(model.state_dict().items()):
        buf.write(k.encode())
        buf.write(v.detach().cpu().numpy().tobytes())
    return hashlib.sha256(buf.getvalue()).hexdigest()[:10]


def train(cfg: TrainConfig, labels: str | Path | None = None, progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Train (or resume) and write the EMA weights to ``cfg.out``; returns that path.

    ``stop_after`` stops after that many steps of *this call* leaving a resumable checkpoint (tests, time boxes).
    """
    threads = cfg.threads or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device, "the train config's device")
    if device.type == "cpu":
        retain_freed_memory()  # ~9 % faster steps on this VM; the numbers are the same
    _seed_all(cfg.seed)
    spec = ModelSpec(widths=tuple(cfg.widths), classes=tuple(cfg.classes))
    model = CenterNet(spec)
    if cfg.init_from:
        init, _ = load_model(resolve_path(cfg.init_from))
        try:
            transfer_weights(init, model)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"init_from {cfg.init_from} does not fit this config ({exc})") from None
    teacher, class_map, hold = None, [], None
    if cfg.distill_from:
        teacher, _ = load_model(resolve_path(cfg.distill_from))
        missing = [c for c in teacher.spec.classes if c not in spec.classes]
        if missing:
            raise ModelError(f"distill_from {cfg.distill_from}: this config lacks its classes {missing}")
        class_map = [spec.classes.index(c) for c in teacher.spec.classes]
        not_taught = [c for c in cfg.distill_classes or () if c not in teacher.spec.classes]
        if not_taught:
            raise ModelError(f"distill_classes {not_taught}: {cfg.distill_from} has no such classes")
        hold = [teacher.spec.classes.index(c) for c in cfg.distill_classes] if cfg.distill_classes else None
        teacher.to(device).requires_grad_(False)
    model.norm.jitter = cfg.norm_jitter
    trained_rows = None
    if cfg.train_only_classes:
        trained_rows = freeze_except(model, cfg.train_only_classes)
    model.to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # frozen head rows share a tensor with the trained ones: decoupled weight decay would shrink them, so none
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0 if trained_rows is not None else cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1,
                                                div_factor=10.0, final_div_factor=100.0)
    ckpt_dir = resolve_path(cfg.checkpoint_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state_path = ckpt_dir / "last.pt"
    labels_fp = str(Path(labels).resolve()) if labels else ""
    fingerprint = cfg.fingerprint() + (":" + hashlib.sha256(labels_fp.encode()).hexdigest()[:6] if labels else "")
    step, elapsed = 0, 0.0
    if state_path.exists():
        blob = read_checkpoint(state_path)
        ts = blob.get("train_state") or {}
        if ts.get("fingerprint") != fingerprint:
            raise ModelError(f"{state_path} belongs to a different training config (fingerprint "
                             f"{ts.get('fingerprint')} vs {fingerprint}); delete it or set checkpoint_dir elsewhere")
        model.load_state_dict(blob["state_dict"])
        ema.module.load_state_dict(ts["ema"])
        ema.n_averaged.fill_(int(ts["ema_n"]))
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["scheduler"])
        step, elapsed = int(ts["step"]), float(ts.get("elapsed_s", 0.0))
        torch.set_rng_state(ts["torch_rng"])
        log.info("resuming from %s at step %d", state_path, step)

    if cfg.scenes and cfg.scene_count:
        ensure_training_scenes(resolve_path(cfg.scenes), cfg.scene_count, cfg.scene_seed)
    folders = [resolve_path(f) for f in (cfg.scenes, labels) if f]
    labelled = LabelledScenes(*folders) if folders else None
    stream = TrainingStream(TRAIN_SEED_BASE + cfg.seed * 10_000_000, cfg.chip_size, spec.classes, spec.stride,
                            labelled=labelled, labels_every=cfg.labels_every, ignore_faint=cfg.ignore_faint,
                            chip_options=cfg.chip_options(), faint_limits=cfg.faint_limits,
                            polarity_flip=cfg.polarity_flip)
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    loader = DataLoader(stream, batch_size=cfg.batch_size, sampler=_FromIndex(step * cfg.batch_size,
                                                                                end * cfg.batch_size),
                        num_workers=cfg.workers, persistent_workers=False, prefetch_factor=4 if cfg.workers else None,
                        pin_memory=device.type == "cuda")
    log_path = ckpt_dir / "log.jsonl"

    def checkpoint(at: int) -> None:
        ts = {"fingerprint": fingerprint, "step": at, "elapsed_s": elapsed, "ema": ema.module.state_dict(),
              "ema_n": int(ema.n_averaged), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "torch_rng": torch.get_rng_state()}
        save_checkpoint(state_path, model, {"config": cfg.model_dump(mode="json")}, train_state=ts)

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    model.train()
    if trained_rows is not None:
        for module in model.modules():  # frozen statistics: the other classes' outputs must not move
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        trained_rows = trained_rows.to(device)
    running: dict[str, float] = {}
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, info="")
        t_last = time.perf_counter()
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            out = model(batch["bands"].contiguous(memory_format=torch.channels_last), batch["valid"])
            loss, parts = total_loss(out, batch["heat"], batch["reg"], batch["mask"], len(spec.classes),
                                     batch["weight"], heading_raw=cfg.heading_loss == "raw",
                                     weights={"heading": cfg.heading_weight})
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher(batch["bands"].contiguous(memory_format=torch.channels_last), batch["valid"])
                distill = distillation_loss(out, t_out, class_map, hold)
                loss = loss + cfg.distill_weight * distill
                parts["distill"] = float(distill.detach())
            if not torch.isfinite(loss):
                raise ModelError(f"training diverged at step {step} (loss {float(loss)}); lower lr in the config")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if trained_rows is not None:
                model.head.weight.grad[~trained_rows] = 0.0
                model.head.bias.grad[~trained_rows] = 0.0
            torch.nn.utils.clip_grad_norm_(trainable, 5.0)
            opt.step()
            sched.step()
            ema.update_parameters(model)
            step += 1
            now = time.perf_counter()
            elapsed += now - t_last
            t_last = now
            for k, v in {"loss": loss.item(), **parts}.items():
                running[k] = v if k not in running else 0.95 * running[k] + 0.05 * v
            bar.update(task, completed=step, info=f"loss {running['loss']:.3f} heat {running['heatmap']:.3f}")
            if step % 20 == 0 or step == end:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": step, "elapsed_s": round(elapsed, 1),
                                        "lr": sched.get_last_lr()[0], **{k: round(v, 5) for k, v in
                                                                         running.items()}}) + "\n")
            if step % cfg.checkpoint_every == 0 or step == end:
                checkpoint(step)
    if step < cfg.steps:
        log.info("stopped at step %d of %d; re-run to continue", step, cfg.steps)
        return state_path
    final = ema.module
    final.eval()
    meta = {
        "weights_id": weights_id(final),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "steps": cfg.steps,
        "chips_seen": cfg.steps * cfg.batch_size,
        "train_seconds": round(elapsed, 1),
        "hardware": (f"{platform.processor() or platform.machine()}, {threads} torch threads, "
                     + (torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU")),
        "config": cfg.model_dump(mode="json"),
        "labels": labels_fp or None,
        "scenes": cfg.scenes,
        "init_from": cfg.init_from,
        "heading_classes": ["vehicle"],
        "chip_seed_base": TRAIN_SEED_BASE + cfg.seed * 10_000_000,
    }
    out = resolve_path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, final, meta)
    log.info("wrote %s (%s)", out, meta["weights_id"])
    return out


def ensure_training_scenes(folder: Path, count: int, seed: int) -> None:
    """Render the scene-renderer part of the training data once (deterministic given the seed)."""
    if len(list(folder.glob("*.truth.geojson"))) >= count:
        return
    from pipeline.simulate.command import simulate_held_out

    log.info("rendering %d training scenes (seed %d) into %s", count, seed, folder)
    folder.mkdir(parents=True, exist_ok=True)
    simulate_held_out(count, folder, seed=seed, size=512)
