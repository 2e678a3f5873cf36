"""Hooks of every optimisation step: the per-iteration LR schedule and the guard against non-finite losses."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch

from ...utils.distributed import all_reduce_sum, dist_info
from ...utils.errors import ReIDError
from .base import PRIORITY_HIGH, HookBase

# torch warns when a schedule's first step() finds optimizer.step() never called; the fp16 GradScaler skips the
# first optimizer steps on purpose while it lowers its initial (too large) loss scale.
_SKIPPED_FIRST_STEP = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"


class LRScheduler(HookBase):
    """Steps ``trainer.scheduler`` after every optimisation step: the LR is a function of the iteration, also for
    the iterations whose update the fp16 GradScaler skipped (overflowing gradients)."""

    priority = PRIORITY_HIGH

    def __init__(self) -> None:
        self._stepped = False

    def after_step(self) -> None:
        scheduler = self.trainer.scheduler
        if self._stepped:
            scheduler.step()
            return
        # Only a fresh schedule's first step can warn, and only when GradScaler skipped that optimizer step: the
        # schedule must still advance, so the warning does not apply here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SKIPPED_FIRST_STEP, category=UserWarning)
            scheduler.step()
        self._stepped = True


class NonFiniteGuard(HookBase):
    """Stops training when a loss becomes NaN or infinite, naming the first bad iteration and its terms.

    The first bad step is recorded on the device every iteration (no sync); it is read back every ``period``
    iterations (SOLVER.LOG_PERIOD) and at the end of each epoch, before anything is logged or saved, so weights
    trained on a non-finite loss are never checkpointed. ``last_good`` is the checkpoint named in the error.
    Under DDP each check sums every rank's first bad iteration (one small all-reduce), so all ranks stop together:
    a rank raising alone would leave the others waiting in their next collective until the NCCL timeout.
    """

    priority = PRIORITY_HIGH

    def __init__(self, period: int, last_good: Path) -> None:
        self.period, self.last_good = period, last_good
        self._step: Optional[torch.Tensor] = None
        self._first_bad: Optional[torch.Tensor] = None  # [iteration, term values...] of the first bad step, or -1s

    def before_epoch(self) -> None:
        self._step = self._first_bad = None

    def after_step(self) -> None:
        values = self.trainer.losses.last
        if self._first_bad is None:
            self._step = torch.zeros(1, device=values.device)
            self._first_bad = torch.full((1 + len(values),), -1.0, device=values.device)
        new_bad = ~torch.isfinite(values.sum()) & (self._first_bad[0] < 0)
        self._first_bad = torch.where(new_bad, torch.cat([self._step, values]), self._first_bad)
        self._step += 1
        if (self.trainer.iter + 1) % self.period == 0:
            self.check()

    def after_epoch(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise (a device sync) if any loss of this epoch so far was not finite, on this rank or another."""
        if self._first_bad is None:
            return
        rank, world = dist_info()
        bad_at = torch.zeros(world, device=self._first_bad.device)  # per rank: first bad iteration + 1, or 0
        bad_at[rank] = self._first_bad[0] + 1
        bad_at = all_reduce_sum(bad_at)
        (it, *values), bad_at = self._first_bad.tolist(), bad_at.tolist()
        epoch = self.trainer.epoch + 1
        where = f" on rank {rank} of {world}" if world > 1 else ""
        if it >= 0:
            names = self.trainer.losses.names
            raise ReIDError(
                f"The loss became {sum(values)}{where} at epoch {epoch}, iteration {int(it) + 1} "
                f"({', '.join(f'{k}={v:.4g}' for k, v in zip(names, values))}). Training stopped; the last "
                f"good checkpoint is {self.last_good}. Lower SOLVER.BASE_LR or check the loss settings."
            )
        bad = [(r, int(i)) for r, i in enumerate(bad_at) if i > 0]
        if bad:
            ranks = ", ".join(f"rank {r} at iteration {i}" for r, i in bad)
            raise ReIDError(
                f"The loss became non-finite at epoch {epoch} on {ranks} (that rank's log names the loss terms); "
                f"training stopped on every rank. The last good checkpoint is {self.last_good}. Lower "
                f"SOLVER.BASE_LR or check the loss settings."
            )
