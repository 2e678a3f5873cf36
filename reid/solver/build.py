"""Optimizer and the per-iteration learning-rate schedule: linear warm-up, then ``SOLVER.SCHED``.

Optimizers (``SOLVER.OPTIMIZER``) and schedules (``SOLVER.SCHED``) are registered in ``reid.registry``.
"""
from __future__ import annotations

import bisect
import math
from typing import Dict, List

import torch
from torch import nn

from ..registry import LR_SCHEDULE_REGISTRY, OPTIMIZER_REGISTRY


@OPTIMIZER_REGISTRY.register("SGD")
def sgd(params: List[Dict], s, fused: bool) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum ``SOLVER.MOMENTUM``."""
    return torch.optim.SGD(params, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=True, fused=fused)


@OPTIMIZER_REGISTRY.register("Adam")
def adam(params: List[Dict], s, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=s.BASE_LR, fused=fused)


@OPTIMIZER_REGISTRY.register("AdamW")
def adamw(params: List[Dict], s, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=s.BASE_LR, fused=fused)


@LR_SCHEDULE_REGISTRY.register("multistep")
def multistep(s, epoch: float) -> float:
    """Multiply by ``GAMMA`` at each epoch of ``STEPS`` (counted from the start of training)."""
    return s.GAMMA ** bisect.bisect_right(sorted(s.STEPS), int(epoch))


@LR_SCHEDULE_REGISTRY.register("cosine")
def cosine(s, epoch: float) -> float:
    """Half a cosine from 1 after warm-up down to ``ETA_MIN_LR / BASE_LR`` at ``MAX_EPOCHS``."""
    span = max(s.MAX_EPOCHS - s.WARMUP_EPOCHS, 1e-8)
    floor = s.ETA_MIN_LR / s.BASE_LR
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min((epoch - s.WARMUP_EPOCHS) / span, 1.0)))


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` over two groups: weights, and biases/norm parameters (own LR factor and decay)."""
    s = cfg.SOLVER
    decay: List[nn.Parameter] = []
    no_decay: List[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups: List[Dict] = [
        {"params": decay, "weight_decay": s.WEIGHT_DECAY},
        {"params": no_decay, "weight_decay": s.WEIGHT_DECAY_BIAS, "lr_factor": s.BIAS_LR_FACTOR},
    ]
    # SOLVER.FUSED: one kernel updates every parameter instead of a loop of small ones (CUDA tensors only).
    fused = s.FUSED and all(p.is_cuda for p in decay + no_decay)
    opt = OPTIMIZER_REGISTRY.get(s.OPTIMIZER)([g for g in groups if g["params"]], s, fused)
    for g in opt.param_groups:
        g["lr"] = s.BASE_LR * g.get("lr_factor", 1.0)
        g["initial_lr"] = g["lr"]
    return opt


def lr_factor(cfg, epoch: float) -> float:
    """LR multiplier at a fractional epoch: warm-up from WARMUP_FACTOR to 1, then the configured decay."""
    s = cfg.SOLVER
    if epoch < s.WARMUP_EPOCHS:
        return s.WARMUP_FACTOR + (1.0 - s.WARMUP_FACTOR) * epoch / s.WARMUP_EPOCHS
    return LR_SCHEDULE_REGISTRY.get(s.SCHED)(s, epoch)


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
    """A LambdaLR stepped once per iteration; its state (the iteration count) resumes exactly."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(cfg, it / max(iters_per_epoch, 1)))
