"""Multiple Granularity Network (Wang et al., ACM MM 2018): one global and two striped part branches.

A ResNet (IBN variants included) is shared up to ``layer3[0]``; each branch owns a copy of the rest of ``layer3``
and of ``layer4``. The global branch downsamples in ``layer4`` with ``MODEL.MGN.GLOBAL_STRIDE`` (2 as in the
paper; fast-reid keeps 1), the part branches keep stride 1 and cut their map into 2 and 3 horizontal stripes.
Every global or stripe feature goes through its own head (pool -> reduction to 256-d -> BNNeck), eight in all,
built from one branch table. ``MODEL.BACKBONE.LAST_STRIDE`` is not used: the strides are part of the architecture.

Classifiers: one per head (``MODEL.MGN.CLASSIFIER heads``, the MGN paper) or one on the concatenation of the eight
BN-ed features (``concat``, the Circle loss paper's MGN, Sec. 4.1); none without a classification loss in
``MODEL.LOSSES.NAME``, and then the five stripe heads, which only classifiers train, are frozen (they still give
their part of the test embedding; DistributedDataParallel refuses parameters without gradients). Train outputs:
those ``logits`` and ``features``, the three global features the pair losses see (the paper's triplet loss is on
the reduced global features); with ``MODEL.MGN.PAIR_FEATURES global_and_stripes`` also each part branch's stripe
features concatenated (fast-reid's five triplet terms, b1, b2, b3, b21+b22 and b31+b32+b33). Test embedding: the eight 256-d features concatenated (2048-d), the three global ones
first and then the stripes, branch by branch (fast-reid's order: b1, b2, b3, b21, b22, b31, b32, b33).
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ...registry import MGN_CLASSIFIER_REGISTRY, MGN_PAIR_REGISTRY
from ...utils.errors import ConfigError
from ..backbones import ResNet, build_backbone, set_stage_stride
from ..heads import EmbeddingHead, horizontal_stripes
from ..losses import build_classifier, trains_classifier
from .registry import META_ARCH_REGISTRY

# (branch name, stripe counts of its heads: 1 = the whole map, i.e. a global feature). A branch with only a global
# feature downsamples in layer4 (MODEL.MGN.GLOBAL_STRIDE); the part branches keep stride 1.
BRANCHES: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("global", (1,)),
    ("part2", (1, 2)),
    ("part3", (1, 3)),
)
REDUCED_DIM = 256  # per-head feature size of the paper, used when MODEL.HEADS.EMBEDDING_DIM is 0
MGN_CLASSIFIER_REGISTRY.register("heads", True)  # one classifier per feature (the MGN paper)
MGN_CLASSIFIER_REGISTRY.register("concat", False)  # one on the concatenated 2048-d feature (Circle loss, Sec. 4.1)
MGN_PAIR_REGISTRY.register("global", False)  # the three global features (the MGN paper)
MGN_PAIR_REGISTRY.register("global_and_stripes", True)  # and each part branch's stripes concatenated (fast-reid)


def _check(cfg, base: nn.Module) -> None:
    mgn = cfg.MODEL.MGN
    if not isinstance(base, ResNet):
        raise ConfigError(f"MGN is built from a ResNet; MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME!r} gives a "
                          f"{type(base).__name__}. Use MODEL.BACKBONE.NAME resnet.")
    if base.non_local:
        raise ConfigError("MGN copies the ResNet's stages into its branches without non-local blocks (as fast-reid "
                          "does); set MODEL.BACKBONE.WITH_NL False.")
    if mgn.GLOBAL_STRIDE not in (1, 2):
        raise ConfigError(f"MODEL.MGN.GLOBAL_STRIDE must be 1 or 2, got {mgn.GLOBAL_STRIDE}.")
    MGN_CLASSIFIER_REGISTRY.check(mgn.CLASSIFIER)


@META_ARCH_REGISTRY.register("MGN")
class MGN(nn.Module):
    """Eval: images -> (B, 8 x 256) embedding. Train: images, pids -> {"logits": [8 or 1 x (B, C)],
    "features": [3 x (B, 256)], then with PAIR_FEATURES global_and_stripes (B, 512) and (B, 768)}."""

    def __init__(self, cfg, num_classes: int) -> None:
        super().__init__()
        base = build_backbone(cfg)  # ImageNet weights (when configured) are loaded before the branches are copied
        _check(cfg, base)
        self.shared = nn.Sequential(OrderedDict(
            [(name, getattr(base, name)) for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")]
            + [("layer3", base.layer3[:1])]
        ))
        self.branches = nn.ModuleList()
        self.splits = [splits for _, splits in BRANCHES]
        for splits in self.splits:
            branch = nn.Sequential(OrderedDict(layer3=copy.deepcopy(base.layer3[1:]),
                                               layer4=copy.deepcopy(base.layer4)))
            set_stage_stride(branch.layer4, cfg.MODEL.MGN.GLOBAL_STRIDE if splits == (1,) else 1)
            self.branches.append(branch)
        dim = cfg.MODEL.HEADS.EMBEDDING_DIM or REDUCED_DIM
        classes = trains_classifier(cfg)
        per_head = MGN_CLASSIFIER_REGISTRY.get(cfg.MODEL.MGN.CLASSIFIER)
        layout = [n for splits in self.splits for n in splits for _ in range(n)]  # each head's stripe count
        self.heads = nn.ModuleList(EmbeddingHead(cfg, base.out_channels, num_classes, embedding_dim=dim,
                                                 classifier=per_head and classes) for _ in layout)
        self.pair_stripes = MGN_PAIR_REGISTRY.get(cfg.MODEL.MGN.PAIR_FEATURES)
        if not classes and not self.pair_stripes:
            for head, n in zip(self.heads, layout):
                if n > 1:
                    head.requires_grad_(False)  # a stripe feature feeds only classifiers and the test embedding
        self.classifier = build_classifier(cfg, dim * len(self.heads), num_classes) if classes and not per_head \
            else None
        self.num_classes = num_classes
        self.embedding_dim = dim * len(self.heads)

    def forward(
        self, images: torch.Tensor, pids: Optional[torch.Tensor] = None, camids: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Dict[str, List[torch.Tensor]]]:
        """``camids`` are accepted like every meta-architecture's and ignored (a ResNet has no camera input)."""
        shared = self.shared(images)
        heads = iter(self.heads)
        outputs: Dict[bool, List[Tuple[EmbeddingHead, torch.Tensor, torch.Tensor]]] = {True: [], False: []}
        stripe_pairs: List[torch.Tensor] = []  # per part branch: its stripes' pair features, concatenated
        for branch, splits in zip(self.branches, self.splits):
            fmap = branch(shared)
            for n in splits:
                for stripe in horizontal_stripes(fmap, n):
                    head = next(heads)
                    outputs[n == 1].append((head, *head.features(stripe)))
                if n > 1 and self.training and self.pair_stripes:
                    stripe_pairs.append(torch.cat([h.pair_feature(b, a) for h, b, a in outputs[False][-n:]], dim=1))
        ordered = outputs[True] + outputs[False]  # global features first, then the stripes
        if not self.training:
            return torch.cat([head.test_feature(before, after) for head, before, after in ordered], dim=1)
        if self.classifier is not None:
            logits = [self.classifier(torch.cat([after for _, _, after in ordered], dim=1), pids)]
        else:  # per-head classifiers, or none without a classification loss
            logits = [head.classifier(after, pids) for head, _, after in ordered if head.classifier is not None]
        features = [head.pair_feature(b, a) for head, b, a in outputs[True]]
        return {"logits": logits, "features": features + stripe_pairs}
