"""Pooling -> optional reduction -> neck -> classifier: the head shared by Baseline and every MGN branch.

The reduction layouts are those of the published models (``MODEL.HEADS.REDUCTION``): the MGN paper's 1x1 conv +
BN + ReLU, fast-reid's bare 1x1 conv (followed by its BNNeck), torchreid's fc (Linear + BN + ReLU).
``MODEL.HEADS.NECK_FEAT`` picks the feature the pair losses see and ``MODEL.HEADS.TEST_FEAT`` the test embedding,
each before or after the neck.

Without a classification loss in ``MODEL.LOSSES.NAME`` no classifier is built, and when the pair losses see the
feature before the neck, nothing trains the neck's scale: it is frozen (``requires_grad`` False) rather than left
without a gradient, which DistributedDataParallel refuses and single-process training ignores anyway.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import nn

from ...registry import NECK_REGISTRY, NECK_SIDE_REGISTRY, REDUCTION_REGISTRY
from ..losses import build_classifier, trains_classifier
from .pooling import build_pooling


@NECK_REGISTRY.register("bnneck")
def bnneck(dim: int) -> nn.Module:
    """BatchNorm1d without a learnable shift (Luo et al. 2019): the BN feature is the test embedding."""
    bn = nn.BatchNorm1d(dim)
    bn.bias.requires_grad_(False)
    return bn


@NECK_REGISTRY.register("none")
def no_neck(dim: int) -> nn.Module:
    return nn.Identity()


@REDUCTION_REGISTRY.register("conv_bn_relu")
def conv_bn_relu(cin: int, dim: int) -> nn.Module:
    """1x1 conv + BN + ReLU (the MGN paper's reduction)."""
    seq = nn.Sequential(nn.Conv2d(cin, dim, kernel_size=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
    nn.init.kaiming_normal_(seq[0].weight, mode="fan_out", nonlinearity="relu")
    return seq


@REDUCTION_REGISTRY.register("conv")
def conv(cin: int, dim: int) -> nn.Module:
    """A bare 1x1 conv (fast-reid's EmbeddingHead with EMBEDDING_DIM, followed by its BNNeck)."""
    seq = nn.Sequential(nn.Conv2d(cin, dim, kernel_size=1, bias=False))
    nn.init.kaiming_normal_(seq[0].weight, mode="fan_out", nonlinearity="relu")
    return seq


@REDUCTION_REGISTRY.register("linear_bn_relu")
def linear_bn_relu(cin: int, dim: int) -> nn.Module:
    """Linear + BN + ReLU (torchreid's fc layer, e.g. resnet50_fc512)."""
    seq = nn.Sequential(nn.Flatten(), nn.Linear(cin, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True))
    nn.init.normal_(seq[1].weight, std=0.01)  # torchreid's fc initialisation
    nn.init.zeros_(seq[1].bias)
    return seq


@REDUCTION_REGISTRY.register("linear")
def linear(cin: int, dim: int) -> nn.Module:
    """A bare Linear (the MS-loss code's embedding layer after BN-Inception's global pooling), Kaiming-initialised
    as there (fan_out, zero bias)."""
    seq = nn.Sequential(nn.Flatten(), nn.Linear(cin, dim))
    nn.init.kaiming_normal_(seq[1].weight, mode="fan_out")
    nn.init.zeros_(seq[1].bias)
    return seq


NECK_SIDE_REGISTRY.register("before", False)  # the pooled (and reduced) feature
NECK_SIDE_REGISTRY.register("after", True)  # the neck's output (BNNeck: the BN-ed feature)


class EmbeddingHead(nn.Module):
    """Maps a feature map to (pair-loss feature, classifier logits) or, in eval, the test embedding."""

    def __init__(self, cfg, in_channels: int, num_classes: int, embedding_dim: Optional[int] = None,
                 classifier: bool = True) -> None:
        """``embedding_dim`` overrides ``MODEL.HEADS.EMBEDDING_DIM`` (MGN always reduces its eight features);
        ``classifier=False`` builds no classifier: the caller has its own (MGN's one classifier on all features)
        or no classification loss is configured."""
        super().__init__()
        heads = cfg.MODEL.HEADS
        neck = NECK_REGISTRY.get(heads.NECK)
        reduction = REDUCTION_REGISTRY.get(heads.REDUCTION)
        self.pair_after = NECK_SIDE_REGISTRY.get(heads.NECK_FEAT, "MODEL.HEADS.NECK_FEAT")
        self.test_after = NECK_SIDE_REGISTRY.get(heads.TEST_FEAT, "MODEL.HEADS.TEST_FEAT")
        self.pool = build_pooling(heads.POOL, heads.GEM_P, heads.GEM_LEARN)
        reduce_to = heads.EMBEDDING_DIM if embedding_dim is None else embedding_dim
        dim = reduce_to or in_channels
        self.reduction: nn.Module = reduction(in_channels, dim) if reduce_to else nn.Identity()
        self.neck = neck(dim)
        if not (trains_classifier(cfg) or self.pair_after):
            self.neck.requires_grad_(False)  # its output feeds only the test embedding: no loss trains it
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
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Eval: the test embedding. Train: (pair-loss feature, logits or None without a classifier)."""
        before, after = self.features(fmap)
        if not self.training:
            return self.test_feature(before, after)
        logits = self.classifier(after, labels) if self.classifier is not None else None
        return self.pair_feature(before, after), logits
