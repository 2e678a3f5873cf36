"""Standard re-ID augmentation (bag of tricks): resize, flip, pad + crop, normalise, random erasing."""
from __future__ import annotations

from typing import Dict

import torchvision.transforms as T
from torchvision.transforms import InterpolationMode
from yacs.config import CfgNode

from ..utils.errors import ConfigError

_INTERPOLATION: Dict[str, InterpolationMode] = {"bicubic": InterpolationMode.BICUBIC,
                                                "bilinear": InterpolationMode.BILINEAR}


def build_transforms(cfg: CfgNode, is_train: bool) -> T.Compose:
    """PIL image -> normalised float tensor; training adds the random augmentations of ``cfg.INPUT``."""
    inp = cfg.INPUT
    if inp.INTERPOLATION not in _INTERPOLATION:
        raise ConfigError(f"INPUT.INTERPOLATION must be one of {sorted(_INTERPOLATION)}, got {inp.INTERPOLATION!r}.")
    size = list(inp.SIZE_TRAIN if is_train else inp.SIZE_TEST)
    steps = [T.Resize(size, interpolation=_INTERPOLATION[inp.INTERPOLATION])]
    if is_train:
        steps.append(T.RandomHorizontalFlip(inp.FLIP_PROB))
        if inp.PADDING > 0:
            steps += [T.Pad(inp.PADDING), T.RandomCrop(size)]
    steps += [T.ToTensor(), T.Normalize(mean=list(inp.PIXEL_MEAN), std=list(inp.PIXEL_STD))]
    if is_train and inp.REA.ENABLED:
        # Random values as in the random-erasing paper (Zhong et al. 2020).
        steps.append(T.RandomErasing(p=inp.REA.PROB, value="random"))
    return T.Compose(steps)
