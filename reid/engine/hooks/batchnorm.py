"""``MODEL.FREEZE_BN``: every BatchNorm layer in eval mode for the whole run (research-ms-loss's ``set_bn_eval``).

The metric learning papers fine-tune BN-Inception with batches of 80 images of 16-20 classes; research-ms-loss keeps
every BatchNorm layer on the ImageNet statistics (its note: +2 % Recall@1 on CUB-200, no effect elsewhere). The
layers normalise with their running statistics and never update them; their affine weights still train. The
training loop puts the model in train mode at the start of every epoch, and ``LayerFreeze`` puts the modules it
releases back in train mode after a step, so the hook sets the layers back after both.
"""
from __future__ import annotations

from typing import List

from torch.nn.modules.batchnorm import _BatchNorm

from .base import PRIORITY_HIGH, HookBase


class FreezeBatchNorm(HookBase):
    """Keeps the trained model's BatchNorm layers (SyncBatchNorm included) in eval mode, their running statistics
    unchanged, before every step of the run."""

    priority = PRIORITY_HIGH  # registered after LayerFreeze: runs after its release in the same after_step

    def __init__(self) -> None:
        self._layers: List[_BatchNorm] = []

    def before_train(self) -> None:
        self._layers = [m for m in self.trainer.model.modules() if isinstance(m, _BatchNorm)]

    def _eval(self) -> None:
        for layer in self._layers:
            if layer.training:
                layer.eval()

    def before_epoch(self) -> None:
        self._eval()

    def after_step(self) -> None:
        self._eval()
