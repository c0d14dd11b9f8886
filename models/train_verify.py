"""Training of the verifier (models/verify_net.py): deterministic given the seed, checkpointed, resumable.

The samples are the committed detector's candidates in labelled simulated scenes (models/verify_data.py), built
once and cached beside the data, so a resumed run does not detect them again. The last ``val_scenes`` scenes are
held out: the probability threshold is chosen there (best F1 of the kept candidates against every true object of
those scenes the detector found at its floor) and written into the checkpoint with the validation figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import platform
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from models.crop_training import train_steps
from models.dataset import CANONICAL
from models.verify_data import SampleSet, build_samples, chip_samples
from models.verify_net import VERIFY_KIND, VerifyNet, VerifySpec, logit_over_symmetries, save_verify_net
from pipeline.config import Strict, _load_model, resolve_path
from pipeline.heap import retain_freed_memory
from pipeline.simulate.chips import ChipOptions
from pipeline.simulate.physics import derive_seed

log = logging.getLogger(__name__)



class VerifyTrainConfig(Strict):
    seed: int = Field(default=0, description="Master seed: initial weights, batches and symmetries.")
    cls: str = Field(default="large_aircraft", description="Detector class the verifier checks.")
    floor: float = Field(default=0.2, ge=0, le=1, description="Lowest detector score shown to the verifier, in "
                                                               "training and at inference.")
    scenes: list[str] = Field(default_factory=list, description="Folders of labelled scene-renderer scenes "
                              "(never the evaluation or validation seeds, nor the detector's training scenes).")
    val_scenes: int = Field(default=60, ge=0, description="The last N scenes are held out for the threshold.")
    chips: int = Field(default=0, ge=0, description="render_chip chips whose candidates are added to training "
                       "(never to validation): the chip renderer's paints, grey aircraft with shadows, fighter rows.")
    chip_seed_base: int = Field(default=400_000_000, description="Chips are render_chip seeds base + i (no other "
                                "training or evaluation draws from this range).")
    chip_size: int = Field(default=192, ge=64, le=1024, description="Chip side in pixels.")
    fighter_rows: float = Field(default=0.3, ge=0, le=1, description="ChipOptions.fighter_rows of the chips.")
    relative_paint: float = Field(default=0.3, ge=0, le=1, description="ChipOptions.relative_paint of the chips.")
    bright_aprons: float = Field(default=0.3, ge=0, le=1, description="ChipOptions.bright_aprons of the chips.")
    matched_paint: float = Field(default=0.3, ge=0, le=1, description="ChipOptions.matched_paint of the chips.")
    sand_tracks: float = Field(default=0.0, ge=0, le=1, description="ChipOptions.sand_tracks of the chips.")
    slow_convoys: float = Field(default=0.0, ge=0, le=1, description="ChipOptions.slow_convoys of the chips.")
    roof_tanks: float = Field(default=0.0, ge=0, le=1, description="ChipOptions.roof_tanks of the chips (blue "
                              "rooftop tanks in towns: hard negatives for moving vehicles).")
    workers: int = Field(default=2, ge=1, le=16, description="Processes detecting in the chips.")
    crop: int = Field(default=25, ge=9, le=63, description="Crop side in pixels (odd: centred on a pixel).")
    steps: int = Field(default=3000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(default=128, ge=8, le=4096, description="Crops per step (half positive).")
    lr: float = Field(default=2e-3, gt=0, description="Peak learning rate (AdamW, one-cycle).")
    weight_decay: float = Field(default=1e-3, ge=0, description="AdamW weight decay.")
    width: int = Field(default=24, ge=8, le=128, description="Channels of the first convolutions.")
    hidden: int = Field(default=64, ge=8, le=512, description="Hidden units of the final layers.")
    weights: str = Field(default="models/weights/basewatch_centernet.pt",
                         description="Detector whose candidates are verified.")
    out: str = Field(default="models/weights/basewatch_verifier.pt", description="Weights to write.")


def load_verify_config(path: str | Path) -> VerifyTrainConfig:
    return _load_model(Path(path), VerifyTrainConfig)


def _sample_cache(cfg: VerifyTrainConfig) -> Path:
    weights = resolve_path(cfg.weights)
    key = json.dumps([cfg.cls, cfg.floor, cfg.crop, cfg.scenes, hashlib.sha256(weights.read_bytes()).hexdigest(),
                      cfg.chips, cfg.chip_seed_base, cfg.chip_size,
                      {k: v for k, v in _chip_options(cfg).__dict__.items() if k != "roof_tanks" or v}],
                     sort_keys=True)  # an option added later, at 0, keeps the earlier caches
    return resolve_path("basewatch-data") / f"verify_samples_{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def _chip_options(cfg: VerifyTrainConfig) -> ChipOptions:
    return ChipOptions(fighter_rows=cfg.fighter_rows, relative_paint=cfg.relative_paint,
                       bright_aprons=cfg.bright_aprons, matched_paint=cfg.matched_paint,
                       sand_tracks=cfg.sand_tracks, slow_convoys=cfg.slow_convoys, roof_tanks=cfg.roof_tanks)


def candidate_detector(weights: str, cls: str, floor: float, threads: int = 0):
    """The detector as the verifier sees it at inference: single view, every peak of ``cls`` down to ``floor``.
    ``threads``: torch's thread count, which this sets for the whole process (0 = every core)."""
    from pipeline.config import DetectorConfig
    from pipeline.detect import LearnedDetector

    detector = LearnedDetector(DetectorConfig(weights=weights, heading_weights=None, heading_views=1, threads=threads,
                                              column_candidate_score=None, class_thresholds=None))
    detector.thresholds = [floor if c == cls else 1.01 for c in detector.classes]
    return detector


def _chip_block(args: tuple[VerifyTrainConfig, int, int]) -> SampleSet:
    cfg, first, count = args
    detector = candidate_detector(cfg.weights, cfg.cls, cfg.floor, threads=1)  # one per worker process
    return chip_samples(detector, range(first, first + count), cfg.chip_size, _chip_options(cfg), cfg.cls,
                        cfg.floor, cfg.crop)


def sample_set(cfg: VerifyTrainConfig, progress=None) -> SampleSet:
    """Build (or read from the cache) the candidates of every configured scene and chip."""
    cache = _sample_cache(cfg)
    if cache.exists():
        return SampleSet.load(cache)
    detector = candidate_detector(cfg.weights, cfg.cls, cfg.floor)
    scenes = build_samples(detector, [resolve_path(s) for s in cfg.scenes], cfg.cls, cfg.floor, cfg.crop, progress)
    block = 100
    jobs = [(cfg, cfg.chip_seed_base + k, min(block, cfg.chips - k)) for k in range(0, cfg.chips, block)]
    parts = [scenes]
    # ordered: the same set whatever the number of workers; spawned, not forked: a fork of a process whose torch
    # already ran multi-threaded hangs in OpenMP
    with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for k, part in enumerate(pool.map(_chip_block, jobs)):
            parts.append(part)
            if progress:
                progress(k + 1, len(jobs))
    samples = SampleSet.concat(parts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    samples.save(tmp)
    tmp.replace(cache)
    return samples


def split(samples: SampleSet, val_scenes: int) -> tuple[SampleSet, SampleSet]:
    """Training and validation samples, split by scene (never the same scene on both sides)."""
    first_val = int(samples.group.max(initial=-1)) + 1 - val_scenes
    held = samples.group >= first_val
    return samples.subset(~held), samples.subset(held)


def probabilities(net: VerifyNet, samples: SampleSet, views: int = 8, batch: int = 512) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for k in range(0, len(samples), batch):
            logit = logit_over_symmetries(net, torch.from_numpy(samples.crops[k : k + batch]),
                                          torch.from_numpy(samples.valid[k : k + batch]),
                                          torch.from_numpy(samples.score[k : k + batch]), views)
            out.append(torch.sigmoid(logit).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def best_threshold(prob: np.ndarray, label: np.ndarray) -> dict:
    """The probability threshold with the best F1 of kept candidates (ties: the higher threshold), and its
    figures. Recall is against the true objects among the candidates: objects the detector missed at its floor
    are beyond any verifier."""
    best = {"threshold": 0.5, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    positives = int(label.sum())
    for t in np.round(np.arange(0.05, 0.96, 0.025), 3):
        kept = prob >= t
        tp = int((kept & label).sum())
        fp = int((kept & ~label).sum())
        p = tp / max(tp + fp, 1)
        r = tp / max(positives, 1)
        f1 = 2 * p * r / max(p + r, 1e-9)
        if f1 >= best["f1"]:
            best = {"threshold": float(t), "f1": round(f1, 4), "precision": round(p, 4), "recall": round(r, 4),
                    "tp": tp, "fp": fp, "fn": positives - tp}
    return best


def _batch(samples: SampleSet, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, ...]:
    """Half positives, half negatives (the negatives outnumber them about 8 to 1), one symmetry per batch."""
    pos = np.flatnonzero(samples.label)
    neg = np.flatnonzero(~samples.label)
    idx = np.concatenate([rng.choice(pos, size // 2), rng.choice(neg, size - size // 2)])
    transpose, vflip, hflip = CANONICAL[int(rng.integers(8))]
    crops, valid = samples.crops[idx], samples.valid[idx]
    if transpose:
        crops, valid = crops.swapaxes(-2, -1), valid.swapaxes(-2, -1)
    if vflip:
        crops, valid = crops[..., ::-1, :], valid[..., ::-1, :]
    if hflip:
        crops, valid = crops[..., ::-1], valid[..., ::-1]
    gain = rng.uniform(0.85, 1.15, (len(idx), 1, 1, 1)).astype(np.float32)  # radiometric jitter, as the detector's
    crops = np.ascontiguousarray(crops) * gain
    return (torch.from_numpy(crops), torch.from_numpy(np.ascontiguousarray(valid)),
            torch.from_numpy(samples.score[idx]), torch.from_numpy(samples.label[idx].astype(np.float32)))


def train_verifier(cfg: VerifyTrainConfig, stop_after: int | None = None, progress=None,
                   samples: SampleSet | None = None) -> Path:
    """Train (or resume) and write the weights to ``cfg.out``; returns the path written. ``samples``: use these
    instead of the configured scenes' and chips' candidates (tests)."""
    retain_freed_memory()
    out = resolve_path(cfg.out)
    partial = out.with_name(out.stem + ".partial.pt")
    samples = sample_set(cfg) if samples is None else samples
    train, val = split(samples, cfg.val_scenes)
    log.info("verifier samples: %d training (%d true), %d validation (%d true)", len(train), int(train.label.sum()),
             len(val), int(val.label.sum()))
    if not train.label.any() or train.label.all():
        raise ValueError("the verifier needs true and false candidates; add labelled scenes with objects of "
                         f"class {cfg.cls}")
    torch.manual_seed(cfg.seed)
    net = VerifyNet(VerifySpec(cls=cfg.cls, crop=cfg.crop, width=cfg.width, hidden=cfg.hidden))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng(derive_seed("verify-batch", cfg.seed, step))
        crops, valid, scores, labels = _batch(train, rng, cfg.batch_size)
        torch.manual_seed(int(rng.integers(2**31)))  # dropout's draws: a resumed run repeats them exactly
        return loss_fn(net(crops, valid, scores), labels)

    loop = train_steps(net, VERIFY_KIND, partial, lr=cfg.lr, weight_decay=cfg.weight_decay, steps=cfg.steps,
                       stop_after=stop_after, loss_at=loss_at, progress=progress)
    if loop.step < cfg.steps:
        return partial
    calibration = best_threshold(probabilities(net, val), val.label) if len(val) else {"threshold": 0.5}
    meta = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg.model_dump(),
        "floor": cfg.floor,
        "threshold": calibration["threshold"],
        "validation": {**calibration, "candidates": len(val), "true_candidates": int(val.label.sum())},
        "train_samples": len(train),
        "train_true": int(train.label.sum()),
        "loop_seconds": round(loop.seconds, 1),
        "hardware": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}".strip(),
        "final_loss": loop.running_loss,
    }
    meta["weights_id"] = hashlib.sha256(json.dumps(meta["config"], sort_keys=True).encode()).hexdigest()[:12]
    net.eval()
    save_verify_net(out, net, meta)
    partial.unlink(missing_ok=True)
    return out
