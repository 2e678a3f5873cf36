"""Pooling -> optional reduction -> neck -> classifier: the head shared by Baseline and every MGN branch.

The reduction layouts are those of the published models (``MODEL.HEADS.REDUCTION``): the MGN paper's 1x1 conv +
BN + ReLU, fast-reid's bare 1x1 conv (followed by its BNNeck), torchreid's fc (Linear + BN + ReLU).
``MODEL.HEADS.NECK_FEAT`` picks the feature the pair losses see and ``MODEL.HEADS.TEST_FEAT`` the test embedding,
each before or after the neck.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn

from ...utils.errors import ConfigError
from ..losses import build_classifier
from .pooling import build_pooling


def _bnneck(dim: int) -> nn.Module:
    """BatchNorm1d without a learnable shift (Luo et al. 2019): the BN feature is the test embedding."""
    bn = nn.BatchNorm1d(dim)
    bn.bias.requires_grad_(False)
    return bn


def _conv_bn_relu(cin: int, dim: int) -> nn.Module:
    seq = nn.Sequential(nn.Conv2d(cin, dim, kernel_size=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
    nn.init.kaiming_normal_(seq[0].weight, mode="fan_out", nonlinearity="relu")
    return seq


def _conv(cin: int, dim: int) -> nn.Module:
    seq = nn.Sequential(nn.Conv2d(cin, dim, kernel_size=1, bias=False))
    nn.init.kaiming_normal_(seq[0].weight, mode="fan_out", nonlinearity="relu")
    return seq


def _linear_bn_relu(cin: int, dim: int) -> nn.Module:
    seq = nn.Sequential(nn.Flatten(), nn.Linear(cin, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True))
    nn.init.normal_(seq[1].weight, std=0.01)  # torchreid's fc initialisation
    nn.init.zeros_(seq[1].bias)
    return seq


_NECKS: Dict[str, Callable[[int], nn.Module]] = {"bnneck": _bnneck, "none": lambda dim: nn.Identity()}
_REDUCTIONS: Dict[str, Callable[[int, int], nn.Module]] = {
    "conv_bn_relu": _conv_bn_relu, "conv": _conv, "linear_bn_relu": _linear_bn_relu,
}
_SIDES = ("before", "after")


def _choice(heads, key: str, choices) -> str:
    value = heads[key]
    if value not in choices:
        raise ConfigError(f"MODEL.HEADS.{key} must be one of {sorted(choices)}, got {value!r}.")
    return value


class EmbeddingHead(nn.Module):
    """Maps a feature map to (pair-loss feature, classifier logits) or, in eval, the test embedding."""

    def __init__(self, cfg, in_channels: int, num_classes: int, embedding_dim: Optional[int] = None,
                 classifier: bool = True) -> None:
        """``embedding_dim`` overrides ``MODEL.HEADS.EMBEDDING_DIM`` (MGN always reduces its eight features);
        ``classifier=False`` leaves the classifier to the caller (MGN's one classifier on all features)."""
        super().__init__()
        heads = cfg.MODEL.HEADS
        neck = _choice(heads, "NECK", _NECKS)
        reduction = _choice(heads, "REDUCTION", _REDUCTIONS)
        self.pair_after = _choice(heads, "NECK_FEAT", _SIDES) == "after"
        self.test_after = _choice(heads, "TEST_FEAT", _SIDES) == "after"
        self.pool = build_pooling(heads.POOL, heads.GEM_P, heads.GEM_LEARN)
        reduce_to = heads.EMBEDDING_DIM if embedding_dim is None else embedding_dim
        dim = reduce_to or in_channels
        self.reduction: nn.Module = _REDUCTIONS[reduction](in_channels, dim) if reduce_to else nn.Identity()
        self.neck = _NECKS[neck](dim)
        self.classifier = build_classifier(cfg, dim, num_classes) if classifier else None
        self.out_dim = dim

    def features(self, fmap: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(feature before the neck, feature after it), each (B, D)."""
        before = self.reduction(self.pool(fmap)).flatten(1)
        return before, self.neck(before)

    def test_feature(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return after if self.test_after else before

    def pair_feature(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return after if self.pair_after else before

    def forward(
        self, fmap: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        before, after = self.features(fmap)
        if not self.training:
            return self.test_feature(before, after)
        return self.pair_feature(before, after), self.classifier(after, labels)
