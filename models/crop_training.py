"""The optimisation loop shared by the crop networks (heading network, verifier): AdamW with a one-cycle schedule,
a checkpoint every CHECKPOINT_EVERY steps into ``partial``, and resumption from it.

Each caller supplies the loss of one step (it draws that step's batch from an RNG seeded by the step), so a killed
run restarted with the same config continues at its last checkpoint and ends where an uninterrupted one would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.crop_checkpoint import CropNetKind, read_crop_blob, save_crop_net

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 500


@dataclass(frozen=True)
class LoopOutcome:
    """Where the loop stopped: ``step`` < the configured steps means it was stopped early (``--stop-after``)."""

    step: int
    running_loss: float | None
    seconds: float


def train_steps(net: nn.Module, kind: CropNetKind, partial: Path, *, lr: float, weight_decay: float, steps: int,
                stop_after: int | None, loss_at: Callable[[int], torch.Tensor],
                progress: Callable[[int, int, float | None], None] | None = None) -> LoopOutcome:
    """Run (or resume from ``partial``) the optimisation of ``net`` up to ``steps``, or ``stop_after`` steps more."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    step = 0
    if partial.exists():
        blob = read_crop_blob(partial, kind)
        state = blob["train_state"]
        net.load_state_dict(blob["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        log.info("resuming from %s at step %d", partial, step)
    started = time.monotonic()
    net.train()
    running = None
    end = min(steps, step + (stop_after or steps))
    while step < end:
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if progress:
            progress(step, steps, running)
        if step % CHECKPOINT_EVERY == 0 or step == end:
            save_crop_net(partial, kind, net, train_state={"optimizer": opt.state_dict(),
                                                           "scheduler": sched.state_dict(), "step": step})
            net.train()
    return LoopOutcome(step, running, time.monotonic() - started)
