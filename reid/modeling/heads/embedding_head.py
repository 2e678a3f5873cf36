"""Pooling -> optional reduction -> BNNeck -> classifier: the head shared by Baseline and every MGN branch."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import nn

from ...registry import NECK_REGISTRY
from ..losses import build_classifier
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


class EmbeddingHead(nn.Module):
    """Maps a feature map to (pre-neck feature for pair losses, classifier logits) or, in eval, the embedding."""

    def __init__(self, cfg, in_channels: int, num_classes: int, embedding_dim: Optional[int] = None) -> None:
        """``embedding_dim`` overrides ``MODEL.HEADS.EMBEDDING_DIM`` (MGN always reduces its eight features)."""
        super().__init__()
        heads = cfg.MODEL.HEADS
        neck = NECK_REGISTRY.get(heads.NECK)
        self.pool = build_pooling(heads.POOL, heads.GEM_P)
        reduce_to = heads.EMBEDDING_DIM if embedding_dim is None else embedding_dim
        dim = reduce_to or in_channels
        self.reduction: nn.Module = nn.Identity()
        if reduce_to:
            self.reduction = nn.Sequential(
                nn.Conv2d(in_channels, dim, kernel_size=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True)
            )
            nn.init.kaiming_normal_(self.reduction[0].weight, mode="fan_out", nonlinearity="relu")
        self.neck = neck(dim)
        self.classifier = build_classifier(cfg, dim, num_classes)
        self.out_dim = dim

    def forward(
        self, fmap: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        feat = self.reduction(self.pool(fmap)).flatten(1)
        emb = self.neck(feat)
        if not self.training:
            return emb
        return feat, self.classifier(emb, labels)
