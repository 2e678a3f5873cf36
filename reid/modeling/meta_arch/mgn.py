"""Multiple Granularity Network (Wang et al., ACM MM 2018): one global and two striped part branches.

A ResNet is shared up to ``layer3[0]``; each branch owns a copy of the rest of ``layer3`` and of ``layer4``. The
global branch downsamples in ``layer4`` (stride 2, as in the paper; fast-reid keeps stride 1 there), the part
branches keep stride 1 and cut their map into 2 and 3 horizontal stripes. Every global or stripe feature goes
through its own head (pool -> 1x1 conv + BN + ReLU to 256-d -> BNNeck -> classifier), eight in all, built from
one branch table. ``MODEL.BACKBONE.LAST_STRIDE`` is not used: the strides are part of the architecture.

Train outputs: ``logits`` of all eight heads (classification loss on every 256-d feature) and ``features``: the
three global 256-d reduced, pre-BNNeck features, which the pair losses see (the paper's triplet loss is on the
reduced global features). Test embedding: the eight BN-ed 256-d features concatenated (2048-d).
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ...utils.errors import ConfigError
from ..backbones import ResNet, build_backbone, set_stage_stride
from ..heads import EmbeddingHead, horizontal_stripes
from .registry import META_ARCH_REGISTRY

# (branch name, stride of its layer4, stripe counts of its heads: 1 = the whole map, i.e. a global feature)
BRANCHES: Tuple[Tuple[str, int, Tuple[int, ...]], ...] = (
    ("global", 2, (1,)),
    ("part2", 1, (1, 2)),
    ("part3", 1, (1, 3)),
)
REDUCED_DIM = 256  # per-head feature size of the paper, used when MODEL.HEADS.EMBEDDING_DIM is 0


@META_ARCH_REGISTRY.register("MGN")
class MGN(nn.Module):
    """Eval: images -> (B, 8 x 256) embedding. Train: images, pids -> {"logits": [8 x (B, C)],
    "features": [3 x (B, 256)]}."""

    def __init__(self, cfg, num_classes: int) -> None:
        super().__init__()
        base = build_backbone(cfg)  # ImageNet weights (when configured) are loaded before the branches are copied
        if not isinstance(base, ResNet):
            raise ConfigError(f"MGN is built from a ResNet; MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME!r} gives a "
                              f"{type(base).__name__}. Use MODEL.BACKBONE.NAME resnet.")
        self.shared = nn.Sequential(OrderedDict(
            [(name, getattr(base, name)) for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")]
            + [("layer3", base.layer3[:1])]
        ))
        self.branches = nn.ModuleList()
        for _, stride, _ in BRANCHES:
            branch = nn.Sequential(OrderedDict(layer3=copy.deepcopy(base.layer3[1:]),
                                               layer4=copy.deepcopy(base.layer4)))
            set_stage_stride(branch.layer4, stride)
            self.branches.append(branch)
        dim = cfg.MODEL.HEADS.EMBEDDING_DIM or REDUCED_DIM
        self.splits = [splits for _, _, splits in BRANCHES]
        self.heads = nn.ModuleList(EmbeddingHead(cfg, base.out_channels, num_classes, embedding_dim=dim)
                                   for splits in self.splits for n in splits for _ in range(n))
        self.num_classes = num_classes
        self.embedding_dim = dim * len(self.heads)

    def forward(
        self, images: torch.Tensor, pids: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Dict[str, List[torch.Tensor]]]:
        shared = self.shared(images)
        heads = iter(self.heads)
        embeddings, logits, global_feats = [], [], []
        for branch, splits in zip(self.branches, self.splits):
            fmap = branch(shared)
            for n in splits:
                for stripe in horizontal_stripes(fmap, n):
                    out = next(heads)(stripe, pids)
                    if not self.training:
                        embeddings.append(out)
                        continue
                    feat, cls = out
                    logits.append(cls)
                    if n == 1:
                        global_feats.append(feat)
        if not self.training:
            return torch.cat(embeddings, dim=1)
        return {"logits": logits, "features": global_feats}
