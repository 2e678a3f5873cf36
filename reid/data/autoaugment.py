"""AutoAugment's ImageNet policy (Cubuk et al., CVPR 2019) as fast-reid's SBS recipe applies it (INPUT.AUTOAUG).

fast-reid uses the "original" ImageNet policy of timm's implementation (Wightman; fast-reid's
``data/transforms/autoaugment.py``): with probability INPUT.AUTOAUG.PROB, one of 25 sub-policies chosen uniformly
is applied to the decoded PIL image before the resize; each of its two operations runs with its own probability at
a fixed magnitude (0 .. 10), rotations and shears in a random direction with a random resampling filter
(bilinear or bicubic), filled with grey (128, 128, 128). The operations are PIL's, so given the same random
parameters the pixels are the peer's exactly (tests/engine/test_recipe_parity.py).

Random parameters are drawn for a batch from an explicit ``torch.Generator`` (``draw``) as one int64 row per
image, ``[applied, sub-policy, (applied, negated, bicubic) of operation 1, ... of operation 2]``, and applied by
``apply`` image by image; no global random state is read. AutoAugment works on the image at its decoded size, so
only the workers pipeline runs it (the gpu pipeline's cache holds resized images; ``validate`` refuses the pair).
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import torch
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0  # magnitudes are given on 0 .. 10 (Cubuk et al.)
FILL = (128, 128, 128)  # grey where rotations and shears leave no pixel (timm's default hparams)
RESAMPLE = (Image.BILINEAR, Image.BICUBIC)  # drawn per operation (timm's default)
COLUMNS = 8  # width of a parameter row: applied, sub-policy, then 3 per operation

# The ImageNet policy of the AutoAugment paper (its appendix, "policy found on reduced ImageNet"), as timm names it
# "original": (operation, probability, magnitude) twice per sub-policy.
POLICY: Tuple[Tuple[Tuple[str, float, int], Tuple[str, float, int]], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)


def _enhance(kind: Callable) -> Callable:
    """ImageEnhance operations: factor 0.1 .. 1.9 over the magnitudes (1 = the image itself)."""
    return lambda img, level, negate, resample: kind(img).enhance(level / MAX_LEVEL * 1.8 + 0.1)


def _signed(value: float, negate: bool) -> float:
    return -value if negate else value


# name -> op(image, magnitude, negate, resample): the magnitude-to-argument maps of timm's "original" policy.
OPERATIONS: Dict[str, Callable[[Image.Image, float, bool, int], Image.Image]] = {
    "AutoContrast": lambda img, level, negate, resample: ImageOps.autocontrast(img),
    "Equalize": lambda img, level, negate, resample: ImageOps.equalize(img),
    "Invert": lambda img, level, negate, resample: ImageOps.invert(img),
    # keep 4 .. 8 bits (the paper's posterize; an 8-bit image is returned as it is)
    "Posterize": lambda img, level, negate, resample: (
        img if int(level / MAX_LEVEL * 4) + 4 >= 8 else ImageOps.posterize(img, int(level / MAX_LEVEL * 4) + 4)),
    # invert the pixels at or above a threshold of 256 .. 0
    "Solarize": lambda img, level, negate, resample: ImageOps.solarize(img, int(level / MAX_LEVEL * 256)),
    "Color": _enhance(ImageEnhance.Color),
    "Contrast": _enhance(ImageEnhance.Contrast),
    "Sharpness": _enhance(ImageEnhance.Sharpness),
    # up to 30 degrees, either way
    "Rotate": lambda img, level, negate, resample: img.rotate(
        _signed(level / MAX_LEVEL * 30.0, negate), resample=resample, fillcolor=FILL),
    # x -> x + f y with f up to 0.3, either way
    "ShearX": lambda img, level, negate, resample: img.transform(
        img.size, Image.AFFINE, (1, _signed(level / MAX_LEVEL * 0.3, negate), 0, 0, 1, 0), resample=resample,
        fillcolor=FILL),
}
_OP_PROBS = torch.tensor([[p for _, p, _ in sub] for sub in POLICY], dtype=torch.float64)


def draw(n: int, prob: float, generator: torch.Generator) -> torch.Tensor:
    """The parameters of ``n`` images, (n, COLUMNS) int64: applied with ``prob``, a uniform sub-policy, each of its
    operations applied with its own probability, negated with probability 1/2, bicubic with probability 1/2."""
    applied = torch.rand(n, generator=generator, dtype=torch.float64) < prob
    policy = torch.randint(0, len(POLICY), (n,), generator=generator)
    op_applied = torch.rand((n, 2), generator=generator, dtype=torch.float64) < _OP_PROBS[policy]
    negate = torch.rand((n, 2), generator=generator) < 0.5
    bicubic = torch.rand((n, 2), generator=generator) < 0.5
    per_op = torch.stack([op_applied, negate, bicubic], dim=2).reshape(n, 6)
    return torch.cat([applied[:, None], policy[:, None], per_op], dim=1).long()


def apply(img: Image.Image, row: Sequence[int]) -> Image.Image:
    """One PIL image and its parameter row (see ``draw``) -> the augmented image (the image itself when not
    applied)."""
    if not row[0]:
        return img
    for (name, _, level), (op_applied, negate, bicubic) in zip(POLICY[row[1]], (row[2:5], row[5:8])):
        if op_applied:
            img = OPERATIONS[name](img, float(level), bool(negate), RESAMPLE[bicubic])
    return img
