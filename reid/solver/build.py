"""Optimizer and the per-iteration learning-rate schedule: linear warm-up, then ``SOLVER.SCHED``.

Optimizers (``SOLVER.OPTIMIZER``), decay schedules (``SOLVER.SCHED``) and when the decay advances
(``SOLVER.SCHED_STEP``) are registered in ``reid.registry``. The schedule is one closed-form function of the
iteration per parameter group, so a resumed run (whose scheduler state is the iteration count) continues exactly.

``SCHED_STEP timm_epoch`` is TransReID's timm cosine, stepped once per epoch with the warm-up inside its epochs.
``SCHED_STEP epoch`` reproduces how fast-reid (its ``build_lr_scheduler`` and ``LRScheduler`` hook) and torchreid
(its engine) step torch's schedulers: warm-up per iteration, the decay scheduler once at the end of each epoch
after warm-up has ended and ``DELAY_EPOCHS`` have passed; MultiStepLR's milestones and CosineAnnealingLR's T_max
count those steps, and the cosine's floor ``ETA_MIN_LR`` is the same for every group (tests/engine/test_recipe_parity.py
compares every group's LR at every iteration with the peers' own schedulers).
"""
from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

from ..registry import LR_SCHEDULE_REGISTRY, OPTIMIZER_REGISTRY, SCHED_STEP_REGISTRY
from ..utils.errors import ConfigError

# Top-level modules SOLVER.HEADS_LR_FACTOR applies to: Baseline's head, MGN's heads and its concatenated classifier.
HEAD_MODULES = ("head", "heads", "classifier")
# Norm layers, whose weights get SOLVER.WEIGHT_DECAY_NORM (fast-reid's and detectron2's list; _NormBase covers batch
# and instance norms).
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@OPTIMIZER_REGISTRY.register("SGD")
def sgd(params: List[Dict], s, fused: bool) -> torch.optim.Optimizer:
    """SGD with momentum ``SOLVER.MOMENTUM``, Nesterov's unless ``SOLVER.NESTEROV`` is False."""
    return torch.optim.SGD(params, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV, fused=fused)


@OPTIMIZER_REGISTRY.register("Adam")
def adam(params: List[Dict], s, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=s.BASE_LR, fused=fused)


@OPTIMIZER_REGISTRY.register("AMSGrad")
def amsgrad(params: List[Dict], s, fused: bool) -> torch.optim.Optimizer:
    """Adam with AMSGrad's running maximum of the second moment (Reddi et al. 2018; torchreid's ``amsgrad``, with
    the betas (0.9, 0.999) of its default config)."""
    return torch.optim.Adam(params, lr=s.BASE_LR, amsgrad=True, fused=fused)


@OPTIMIZER_REGISTRY.register("AdamW")
def adamw(params: List[Dict], s, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=s.BASE_LR, fused=fused)


def _group_key(s, module_name: str, module: nn.Module, param_name: str) -> Tuple[float, float]:
    """(LR factor, weight decay) of one parameter, by fast-reid's rules: biases get BIAS_LR_FACTOR and
    WEIGHT_DECAY_BIAS (norm-layer biases too), norm-layer weights WEIGHT_DECAY_NORM, everything else WEIGHT_DECAY;
    the heads' parameters HEADS_LR_FACTOR on top."""
    bias = param_name == "bias"
    decay = s.WEIGHT_DECAY_BIAS if bias else s.WEIGHT_DECAY_NORM if isinstance(module, NORM_TYPES) else s.WEIGHT_DECAY
    factor = (s.BIAS_LR_FACTOR if bias else 1.0) * \
        (s.HEADS_LR_FACTOR if module_name.split(".")[0] in HEAD_MODULES else 1.0)
    return factor, decay


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` over the trainable parameters, one group per (LR factor, weight decay) pair."""
    s = cfg.SOLVER
    groups: "OrderedDict[Tuple[float, float], List[nn.Parameter]]" = OrderedDict()
    seen = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                groups.setdefault(_group_key(s, module_name, module, name), []).append(p)
    params = [p for ps in groups.values() for p in ps]
    # SOLVER.FUSED: one kernel updates every parameter instead of a loop of small ones (CUDA tensors only).
    fused = s.FUSED and bool(params) and all(p.is_cuda for p in params)
    opt = OPTIMIZER_REGISTRY.get(s.OPTIMIZER)(
        [{"params": ps, "weight_decay": decay, "lr_factor": factor} for (factor, decay), ps in groups.items()],
        s, fused)
    for g in opt.param_groups:
        g["lr"] = s.BASE_LR * g["lr_factor"]
        g["initial_lr"] = g["lr"]
    return opt


# -- the schedule -------------------------------------------------------------------------------------------------
def warmup_factor(iteration: float, warmup_iters: float, start: float) -> float:
    """Linear warm-up from ``start`` at iteration 0 to 1 at ``warmup_iters`` (Goyal et al. 2017; fast-reid's
    WarmupLR "linear"), 1 after it. The one warm-up of every recipe, in iterations or epochs."""
    if iteration >= warmup_iters:
        return 1.0
    alpha = iteration / warmup_iters
    return start * (1.0 - alpha) + alpha


@dataclass(frozen=True)
class DecayClock:
    """Where the decay schedule stands at an iteration: ``epoch``, the epoch count SOLVER.STEPS are compared with,
    and ``progress``, the share of the cosine done (0 .. 1)."""

    epoch: float
    progress: float


@dataclass(frozen=True)
class Schedule:
    """What the LR of every iteration depends on: the config's SOLVER node and the epoch length."""

    s: object  # cfg.SOLVER
    iters_per_epoch: int

    @property
    def warmup_iters(self) -> float:
        """SOLVER.WARMUP_ITERS, or SOLVER.WARMUP_EPOCHS in iterations."""
        return self.s.WARMUP_ITERS or self.s.WARMUP_EPOCHS * self.iters_per_epoch

    def lr(self, iteration: int, base_lr: float) -> float:
        """The LR of a group whose LR after warm-up is ``base_lr``, at ``iteration`` (0-based): SOLVER.SCHED_STEP
        decides how warm-up and decay advance."""
        return SCHED_STEP_REGISTRY.get(self.s.SCHED_STEP)(self, iteration, base_lr)

    def decay(self, clock: DecayClock, base_lr: float) -> float:
        """SOLVER.SCHED at ``clock``."""
        return LR_SCHEDULE_REGISTRY.get(self.s.SCHED)(self.s, clock, base_lr)

    def warmed(self, iteration: int, base_lr: float, clock: Callable[["Schedule", int], DecayClock]) -> float:
        """Linear warm-up per iteration, then the decay at ``clock(self, iteration)``."""
        if iteration < self.warmup_iters:
            return base_lr * warmup_factor(iteration, self.warmup_iters, self.s.WARMUP_FACTOR)
        return self.decay(clock(self, iteration), base_lr)


@SCHED_STEP_REGISTRY.register("iteration")
def per_iteration(schedule: Schedule, iteration: int, base_lr: float) -> float:
    """reid's own: warm-up per iteration, then the decay follows the fractional epoch; STEPS count from the start of
    training, the cosine runs from the end of warm-up to MAX_EPOCHS."""
    return schedule.warmed(iteration, base_lr, iteration_clock)


def iteration_clock(schedule: Schedule, iteration: int) -> DecayClock:
    s, epoch = schedule.s, iteration / max(schedule.iters_per_epoch, 1)
    start = schedule.warmup_iters / max(schedule.iters_per_epoch, 1)
    span = max(s.MAX_EPOCHS - start, 1e-8)
    return DecayClock(epoch, min(max(epoch - start, 0.0) / span, 1.0))


def epoch_steps(schedule: Schedule) -> Tuple[int, int]:
    """(epochs before the decay scheduler's first step, its length T_max) under SCHED_STEP epoch, as fast-reid
    computes them: the scheduler steps at the end of every epoch that ends at or after the end of warm-up and
    after DELAY_EPOCHS epochs; T_max = MAX_EPOCHS - max(ceil(warm-up iterations / epoch length), DELAY_EPOCHS)."""
    s, ipe = schedule.s, max(schedule.iters_per_epoch, 1)
    warmup_epochs = math.ceil(schedule.warmup_iters / ipe)
    return max(warmup_epochs - 1, s.DELAY_EPOCHS), s.MAX_EPOCHS - max(warmup_epochs, s.DELAY_EPOCHS)


@SCHED_STEP_REGISTRY.register("epoch")
def per_epoch(schedule: Schedule, iteration: int, base_lr: float) -> float:
    """fast-reid's LRScheduler hook and torchreid's engine: warm-up per iteration; the decay scheduler has stepped
    once at the end of each finished epoch after the first ``epoch_steps`` ones; STEPS and the cosine count those
    steps."""
    return schedule.warmed(iteration, base_lr, epoch_clock)


def epoch_clock(schedule: Schedule, iteration: int) -> DecayClock:
    before, length = epoch_steps(schedule)
    steps = max(iteration // max(schedule.iters_per_epoch, 1) - before, 0)
    return DecayClock(float(steps), min(steps / max(length, 1), 1.0))


@SCHED_STEP_REGISTRY.register("timm_epoch")
def timm_epoch(schedule: Schedule, iteration: int, base_lr: float) -> float:
    """TransReID's (and CLIP-ReID's) timm ``CosineLRScheduler`` stepped with the 1-based epoch ``t`` before each
    epoch: the LR is constant within an epoch; for ``t < WARMUP_EPOCHS`` it is ``w + t (base - w) / WARMUP_EPOCHS``
    with ``w = WARMUP_FACTOR x BASE_LR`` for every group (timm's scalar ``warmup_lr_init``), after it the decay at
    epoch ``t`` with the cosine over all MAX_EPOCHS (``cos(pi t / MAX_EPOCHS)``: the warm-up epochs count)."""
    s = schedule.s
    t = iteration // max(schedule.iters_per_epoch, 1) + 1
    if t < s.WARMUP_EPOCHS:
        start = s.WARMUP_FACTOR * s.BASE_LR
        return start + t * (base_lr - start) / s.WARMUP_EPOCHS
    return schedule.decay(DecayClock(float(t), min(t / max(s.MAX_EPOCHS, 1), 1.0)), base_lr)


@LR_SCHEDULE_REGISTRY.register("multistep")
def multistep(s, clock: DecayClock, base_lr: float) -> float:
    """Multiply by ``GAMMA`` at each epoch of ``STEPS`` (torch's MultiStepLR)."""
    return base_lr * s.GAMMA ** bisect.bisect_right(sorted(s.STEPS), int(clock.epoch))


@LR_SCHEDULE_REGISTRY.register("cosine")
def cosine(s, clock: DecayClock, base_lr: float) -> float:
    """Half a cosine from the group's LR down to ``ETA_MIN_LR`` (torch's CosineAnnealingLR: the same floor for every
    group)."""
    return s.ETA_MIN_LR + (base_lr - s.ETA_MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * clock.progress))


def lr_factor(cfg, epoch: float, iters_per_epoch: int = 1000) -> float:
    """LR multiplier of a group with LR factor 1 at a fractional epoch (``iters_per_epoch`` sets the resolution)."""
    schedule = Schedule(cfg.SOLVER, iters_per_epoch)
    return schedule.lr(round(epoch * iters_per_epoch), cfg.SOLVER.BASE_LR) / cfg.SOLVER.BASE_LR


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
    """A LambdaLR stepped once per iteration, one function per parameter group; its state (the iteration count)
    resumes exactly."""
    schedule = Schedule(cfg.SOLVER, iters_per_epoch)
    if cfg.SOLVER.SCHED_STEP == "epoch" and cfg.SOLVER.SCHED == "cosine" and epoch_steps(schedule)[1] < 1:
        raise ConfigError(f"SOLVER.MAX_EPOCHS {cfg.SOLVER.MAX_EPOCHS} leaves no epoch for the cosine decay after "
                          f"warm-up ({schedule.warmup_iters:g} iterations of {iters_per_epoch} an epoch) and "
                          f"SOLVER.DELAY_EPOCHS {cfg.SOLVER.DELAY_EPOCHS}; raise SOLVER.MAX_EPOCHS.")

    def group_lambda(base_lr: float) -> Callable[[int], float]:
        return lambda it: schedule.lr(it, base_lr) / base_lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [group_lambda(g["initial_lr"]) for g in optimizer.param_groups])
