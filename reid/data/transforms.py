"""Standard re-ID augmentation (bag of tricks): resize, flip, pad + crop, normalise, random erasing."""
from __future__ import annotations

import torchvision.transforms as T
from torchvision.transforms import InterpolationMode
from yacs.config import CfgNode

from ..registry import INTERPOLATION_REGISTRY

INTERPOLATION_REGISTRY.register("bicubic", InterpolationMode.BICUBIC)  # fast-reid's resize
INTERPOLATION_REGISTRY.register("bilinear", InterpolationMode.BILINEAR)  # torchvision's default


def build_transforms(cfg: CfgNode, is_train: bool) -> T.Compose:
    """PIL image -> normalised float tensor; training adds the random augmentations of ``cfg.INPUT``."""
    inp = cfg.INPUT
    size = list(inp.SIZE_TRAIN if is_train else inp.SIZE_TEST)
    steps = [T.Resize(size, interpolation=INTERPOLATION_REGISTRY.get(inp.INTERPOLATION))]
    if is_train:
        steps.append(T.RandomHorizontalFlip(inp.FLIP_PROB))
        if inp.PADDING > 0:
            steps += [T.Pad(inp.PADDING), T.RandomCrop(size)]
    steps += [T.ToTensor(), T.Normalize(mean=list(inp.PIXEL_MEAN), std=list(inp.PIXEL_STD))]
    if is_train and inp.REA.ENABLED:
        # Random values as in the random-erasing paper (Zhong et al. 2020).
        steps.append(T.RandomErasing(p=inp.REA.PROB, value="random"))
    return T.Compose(steps)
