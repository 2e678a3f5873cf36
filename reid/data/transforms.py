"""Deterministic image transforms: the PIL resize (workers path, gpu cache, test time) and the test transform.

The training augmentation (flip, pad + crop, random erasing) is ``reid.data.augment``: its random parameters are
drawn per batch from an explicit generator, which a per-image torchvision transform cannot take.
"""
from __future__ import annotations

from typing import Sequence

import torchvision.transforms as T
from torchvision.transforms import InterpolationMode
from yacs.config import CfgNode

from ..registry import INTERPOLATION_REGISTRY, TRAIN_INTERPOLATION_REGISTRY

FILTERS = {"bicubic": InterpolationMode.BICUBIC,  # fast-reid's resize
           "bilinear": InterpolationMode.BILINEAR}  # torchvision's default
for _name, _mode in FILTERS.items():
    INTERPOLATION_REGISTRY.register(_name, _mode)
    TRAIN_INTERPOLATION_REGISTRY.register(_name, _mode)


def train_interpolation(cfg: CfgNode) -> str:
    """The resize filter of training images: ``INPUT.INTERPOLATION_TRAIN``, or ``INPUT.INTERPOLATION`` when it is
    "" (TransReID trains on bicubic resizes and tests on bilinear ones)."""
    return cfg.INPUT.INTERPOLATION_TRAIN or cfg.INPUT.INTERPOLATION


def build_resize(cfg: CfgNode, size: Sequence[int], train: bool = False) -> T.Resize:
    """PIL image -> PIL image of ``size`` (height, width), with ``INPUT.INTERPOLATION``'s filter (``train``: the
    training images' filter, ``train_interpolation``)."""
    name = train_interpolation(cfg) if train else cfg.INPUT.INTERPOLATION
    return T.Resize(list(size), interpolation=INTERPOLATION_REGISTRY.get(name))


def build_test_transform(cfg: CfgNode) -> T.Compose:
    """PIL image -> normalised float tensor (3, H, W) at ``INPUT.SIZE_TEST``."""
    inp = cfg.INPUT
    return T.Compose([build_resize(cfg, inp.SIZE_TEST), T.ToTensor(),
                      T.Normalize(mean=list(inp.PIXEL_MEAN), std=list(inp.PIXEL_STD))])
