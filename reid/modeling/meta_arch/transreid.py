"""TransReID (He et al., ICCV 2021): a ViT whose last block is copied into a global and a jigsaw-patch branch.

The ViT (``MODEL.BACKBONE.NAME vit``, with SIE cameras when ``MODEL.VIT.SIE_CAMERAS``) runs all blocks but the
last; like MGN's branches, each branch of :data:`BRANCHES` owns a copy of the last block and of the final norm:

- ``global``: the whole token sequence, whose class token is the global feature;
- ``jpm`` (jigsaw patch module): the patch tokens are shifted by ``MODEL.JPM.SHIFT`` and shuffled across
  ``MODEL.JPM.GROUPS`` groups (``MODEL.JPM.REARRANGE``), cut into ``MODEL.JPM.PARTS`` equal runs, and each run
  goes through the branch with the class token; the K class tokens are the local features.

Every feature has its own head (BNNeck + classifier). Losses weigh the global feature as much as all local ones
together (TransReID: 0.5 x global + 0.5 x mean of the locals, for the classification and the triplet term). Test
embedding: the global feature and the local ones divided by K, concatenated ((1 + K) x 768 = 3840-d for ViT-B, K 4),
taken before or after the BNNeck by ``MODEL.HEADS.TEST_FEAT`` (TransReID's TEST.NECK_FEAT).
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ...utils.errors import ConfigError
from ..backbones import build_backbone
from ..backbones.vit import VisionTransformer
from ..heads import EmbeddingHead
from ..losses import trains_classifier
from .registry import META_ARCH_REGISTRY


def jigsaw_parts(tokens: torch.Tensor, parts: int, shift: int, groups: int, rearrange: bool) -> List[torch.Tensor]:
    """TransReID's JPM input: ``parts`` runs of the patch tokens (B, N // parts, D), each led by the class token.

    With ``rearrange`` the patches are first shifted (the first ``shift - 1`` move to the end) and shuffled by
    reading them in ``groups`` interleaved groups; when N does not divide by ``groups`` the second-to-last shifted
    token is repeated to fill the last group, as TransReID does.
    """
    cls, patches = tokens[:, :1], tokens[:, 1:]
    n = patches.shape[1]
    if rearrange:
        x = torch.cat([tokens[:, shift:], tokens[:, 1:shift]], dim=1)
        missing = (groups - n % groups) % groups
        if missing:
            x = torch.cat([x] + [x[:, -2:-1]] * missing, dim=1)
        b, m, d = x.shape
        patches = x.reshape(b, groups, m // groups, d).transpose(1, 2).reshape(b, m, d)
    length = n // parts
    return [torch.cat([cls, patches[:, i * length:(i + 1) * length]], dim=1) for i in range(parts)]


def _whole(tokens: torch.Tensor, jpm: Dict[str, object]) -> List[torch.Tensor]:
    return [tokens]


def _jigsaw(tokens: torch.Tensor, jpm: Dict[str, object]) -> List[torch.Tensor]:
    return jigsaw_parts(tokens, **jpm)


# (branch name, token sequences it reads): each sequence gives one feature, its class token after the branch.
BRANCHES: Tuple[Tuple[str, Callable[[torch.Tensor, Dict[str, object]], List[torch.Tensor]]], ...] = (
    ("global", _whole),
    ("jpm", _jigsaw),
)


def _check(cfg, base: nn.Module) -> None:
    if not isinstance(base, VisionTransformer):
        raise ConfigError(f"TransReID is built from a ViT; MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME!r} gives a "
                          f"{type(base).__name__}. Use MODEL.BACKBONE.NAME vit.")
    j = cfg.MODEL.JPM
    if len(base.blocks) < 2 or j.PARTS < 1 or j.GROUPS < 1 or j.SHIFT < 1:
        raise ConfigError("TransReID needs MODEL.VIT.DEPTH >= 2 and MODEL.JPM.PARTS, GROUPS, SHIFT >= 1.")
    n = base.grid[0] * base.grid[1]
    if n < j.PARTS or (j.REARRANGE and j.SHIFT > n):
        raise ConfigError(f"MODEL.JPM: {n} patches at INPUT.SIZE_TRAIN cannot be cut into {j.PARTS} parts after a "
                          f"shift of {j.SHIFT}.")


@META_ARCH_REGISTRY.register("TransReID")
class TransReID(nn.Module):
    """Eval: images, camids -> (B, (1 + K) x D). Train: images, pids, camids -> {"logits": [1 + K], "features":
    [1 + K], "head_weights": [0.5, 0.5 / K, ...]}."""

    def __init__(self, cfg, num_classes: int) -> None:
        super().__init__()
        base = build_backbone(cfg)  # ImageNet weights (when configured) are loaded before the last block is copied
        _check(cfg, base)
        last, norm = base.blocks[-1], base.norm
        base.blocks = base.blocks[:-1]
        base.norm = nn.Identity()
        self.backbone = base
        self.branches = nn.ModuleList(nn.Sequential(copy.deepcopy(last), copy.deepcopy(norm)) for _ in BRANCHES)
        self.readers = [reader for _, reader in BRANCHES]
        j = cfg.MODEL.JPM
        self.jpm = dict(parts=j.PARTS, shift=j.SHIFT, groups=j.GROUPS, rearrange=j.REARRANGE)
        parts = j.PARTS
        self.scales = [1.0] + [1.0 / parts] * parts  # test embedding: locals divided by K (TransReID)
        self.weights = [0.5] + [0.5 / parts] * parts  # losses: global as much as all locals together
        classes = trains_classifier(cfg)
        self.heads = nn.ModuleList(EmbeddingHead(cfg, base.out_channels, num_classes, classifier=classes)
                                   for _ in self.scales)
        self.num_classes = num_classes
        self.embedding_dim = sum(h.out_dim for h in self.heads)

    def forward(self, images: torch.Tensor, pids: Optional[torch.Tensor] = None,
                camids: Optional[torch.Tensor] = None) -> Union[torch.Tensor, Dict[str, list]]:
        tokens = self.backbone.tokens(images, camids)
        feats = [branch(seq)[:, 0, :, None, None] for branch, reader in zip(self.branches, self.readers)
                 for seq in reader(tokens, self.jpm)]
        outputs = [head.features(f) for head, f in zip(self.heads, feats)]
        if not self.training:
            return torch.cat([s * head.test_feature(b, a) for s, head, (b, a) in zip(self.scales, self.heads, outputs)],
                             dim=1)
        logits = [head.classifier(a, pids) for head, (_, a) in zip(self.heads, outputs) if head.classifier is not None]
        return {"logits": logits, "features": [h.pair_feature(b, a) for h, (b, a) in zip(self.heads, outputs)],
                "head_weights": self.weights}
