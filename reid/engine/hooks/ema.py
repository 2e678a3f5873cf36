"""An exponential moving average of the weights (SOLVER.EMA), the model that is evaluated when it is on.

After every optimisation step ``n`` (0-based) each floating-point parameter and buffer (BN running statistics
included, as in timm's ModelEmaV2) is updated as ``ema = d_n * ema + (1 - d_n) * weight`` with
``d_n = min(DECAY, (1 + n) / (10 + n))``: the warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates)``,
so that the average forgets the initial (ImageNet) weights within a few hundred steps instead of ~1/(1 - DECAY).
Integer buffers (BN's ``num_batches_tracked``) are copied. The update is one ``torch._foreach_lerp_`` on the
device (the kernel behind ``torch.optim.swa_utils.get_ema_multi_avg_fn``), without a host sync.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ...utils.errors import ConfigError
from .base import HookBase


def ema_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates`` (0-based): ``min(decay, (1 + n) / (10 + n))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class EMAHook(HookBase):
    """Keeps ``model``, the moving average of ``trainer.model``'s weights (a copy made before the first step)."""

    name = "ema"

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"SOLVER.EMA.DECAY must be in (0, 1) (e.g. 0.9998 per iteration), got {decay}.")
        self.decay = decay
        self.updates = 0
        self._model: Optional[nn.Module] = None
        self._pairs: List[List[torch.Tensor]] = []  # [ema floats, model floats, ema others, model others]

    @property
    def model(self) -> nn.Module:
        """The averaged model (eval mode, no gradients)."""
        return self._ensure_model()

    def _ensure_model(self) -> nn.Module:
        """Copy the trainer's model on first use: before the first step, or when a checkpoint's state is loaded."""
        if self._model is None:
            source = self.trainer.model
            self._model = copy.deepcopy(source).eval().requires_grad_(False)
            mine, theirs = self._tensors(self._model), self._tensors(source)
            floats = [k for k, v in mine.items() if v.is_floating_point()]
            others = [k for k in mine if k not in floats]
            self._pairs = [[mine[k] for k in floats], [theirs[k].detach() for k in floats],
                           [mine[k] for k in others], [theirs[k].detach() for k in others]]
        return self._model

    @staticmethod
    def _tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
        return {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def before_train(self) -> None:
        self._ensure_model()  # the average starts from the weights training starts with

    @torch.no_grad()
    def after_step(self) -> None:
        self._ensure_model()  # made here when an epoch runs without before_train
        ema_floats, floats, ema_others, others = self._pairs
        torch._foreach_lerp_(ema_floats, floats, 1.0 - ema_decay(self.decay, self.updates))
        if others:
            torch._foreach_copy_(ema_others, others)
        self.updates += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
