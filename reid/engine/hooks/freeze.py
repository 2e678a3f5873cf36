"""Layer freezing at the start of training (MODEL.FREEZE_LAYERS for SOLVER.FREEZE_ITERS / FREEZE_EPOCHS).

fast-reid's SBS and MGN recipes train the new heads alone for their first 1000 iterations (its optimizer wrapper
drops the gradients of the FREEZE_LAYERS parameter groups, its ``LayerFreeze`` hook puts those modules in eval
mode); torchreid's OSNet recipe does the same for its first 10 epochs with everything but the classifier
(``fixbase_epoch`` / ``open_layers``). Here: while the freeze lasts, the parameters of MODEL.FREEZE_LAYERS and
MODEL.FREEZE_PARAMS_ONLY get no update (their gradients are dropped just before each optimizer step, so neither
the step nor weight decay touches them and their optimizer state starts when they are released, as in both peers)
and the FREEZE_LAYERS modules run in eval mode (their BatchNorm statistics are not updated). Gradients are still
computed, as in fast-reid: under DistributedDataParallel every parameter keeps receiving its (all-reduced)
gradient, so the set of parameters with gradients never changes mid-run.

The freeze is a function of the iteration (epoch x iterations per epoch + iteration), so the hook has no state and
a resumed run freezes exactly as an uninterrupted one.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

from torch import nn

from ...utils.errors import ConfigError
from .base import PRIORITY_HIGH, HookBase

logger = logging.getLogger("reid")


class LayerFreeze(HookBase):
    """Freezes ``layers`` (no update, eval mode) and ``params_only`` (no update) for the first ``iters`` iterations,
    or ``epochs`` epochs."""

    priority = PRIORITY_HIGH

    def __init__(self, layers: Sequence[str], params_only: Sequence[str] = (), iters: int = 0,
                 epochs: int = 0) -> None:
        if iters < 0 or epochs < 0 or (iters and epochs):
            raise ConfigError(f"Give the freeze length as SOLVER.FREEZE_ITERS or SOLVER.FREEZE_EPOCHS (>= 0, not "
                              f"both); got {iters} and {epochs}.")
        for key, names in (("MODEL.FREEZE_LAYERS", layers), ("MODEL.FREEZE_PARAMS_ONLY", params_only)):
            if not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"{key} must list module names such as 'backbone'; got {list(names)!r}.")
        if not layers and not params_only:
            raise ConfigError(f"SOLVER.FREEZE_ITERS / FREEZE_EPOCHS ({iters or epochs}) need the modules to freeze "
                              f"in MODEL.FREEZE_LAYERS (e.g. ['backbone']).")
        self.layers, self.params_only = list(layers), list(params_only)
        self.iters, self.epochs = iters, epochs
        self._eval_modules: List[nn.Module] = []
        self._params: List[nn.Parameter] = []
        self._handle = None
        self._frozen = False

    @classmethod
    def from_cfg(cls, cfg) -> Optional["LayerFreeze"]:
        """The hook for SOLVER.FREEZE_ITERS / FREEZE_EPOCHS, or None when neither is set."""
        s = cfg.SOLVER
        if not s.FREEZE_ITERS and not s.FREEZE_EPOCHS:
            return None
        return cls(cfg.MODEL.FREEZE_LAYERS, cfg.MODEL.FREEZE_PARAMS_ONLY, s.FREEZE_ITERS, s.FREEZE_EPOCHS)

    @property
    def length(self) -> int:
        """The freeze in iterations."""
        return self.iters or self.epochs * self.trainer.iters_per_epoch

    def _iteration(self) -> int:
        return self.trainer.epoch * self.trainer.iters_per_epoch + self.trainer.iter

    def before_train(self) -> None:
        model = self.trainer.model
        modules: Dict[str, nn.Module] = dict(model.named_modules())
        unknown = [n for n in self.layers + self.params_only if n not in modules]
        if unknown:
            top = ", ".join(name for name, _ in model.named_children())
            raise ConfigError(f"MODEL.FREEZE_LAYERS / FREEZE_PARAMS_ONLY name modules this model lacks: {unknown}; "
                              f"its modules are dotted paths from {top} (e.g. 'backbone', 'head.reduction').")
        self._eval_modules = [modules[n] for n in self.layers]
        seen = set()
        for name in self.layers + self.params_only:
            for p in modules[name].parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    self._params.append(p)
        self._handle = self.trainer.optimizer.register_step_pre_hook(self._drop_frozen_gradients)
        if self._iteration() < self.length:
            logger.info("Freezing %s for the first %d iterations", ", ".join(self.layers + self.params_only),
                        self.length)

    def _drop_frozen_gradients(self, optimizer, args, kwargs) -> None:
        if self._iteration() < self.length:
            for p in self._params:
                p.grad = None

    def before_epoch(self) -> None:
        # The loop has just put the whole model in train mode.
        self._frozen = self.trainer.epoch * self.trainer.iters_per_epoch < self.length
        for module in self._eval_modules if self._frozen else ():
            module.eval()

    def after_step(self) -> None:
        if self._frozen and self._iteration() + 1 >= self.length:  # the next iteration trains them
            for module in self._eval_modules:
                module.train()
            self._frozen = False
            logger.info("Released %s after %d iterations", ", ".join(self.layers + self.params_only), self.length)

    def after_train(self) -> None:
        if self._handle is not None:
            self._handle.remove()
