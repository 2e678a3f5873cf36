"""Global pooling layers: average, max and generalised-mean (GeM, Radenovic et al. 2018).

Written as reductions over the spatial dimensions (``mean`` / ``amax``), not adaptive pooling to 1 x 1: the same
values, but CUDA's adaptive pooling backward accumulates with atomics (nondeterministic, refused by
``torch.use_deterministic_algorithms``), which would break DETERMINISTIC training's exact resume on a GPU."""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from ...registry import POOLING_REGISTRY


@POOLING_REGISTRY.register("gem")
class GeM(nn.Module):
    """Generalised mean pooling with exponent p (p=1: average, p->inf: max), learnable unless ``learn=False``
    (fast-reid's GeneralizedMeanPoolingP and GeneralizedMeanPooling)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p))) if learn else float(p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3), keepdim=True).pow(1.0 / self.p)


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1) mean (``nn.AdaptiveAvgPool2d(1)`` with a deterministic backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class GlobalMaxPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1) maximum (``nn.AdaptiveMaxPool2d(1)`` with a deterministic backward; the
    gradient of tied maxima is shared between them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax((2, 3), keepdim=True)


@POOLING_REGISTRY.register("avg")
def average_pooling(p: float, learn: bool = True) -> nn.Module:
    return GlobalAvgPool()


@POOLING_REGISTRY.register("max")
def max_pooling(p: float, learn: bool = True) -> nn.Module:
    return GlobalMaxPool()


def build_pooling(name: str, gem_p: float = 3.0, gem_learn: bool = True) -> nn.Module:
    """``MODEL.HEADS.POOL`` -> pooling module producing (B, C, 1, 1)."""
    return POOLING_REGISTRY.get(name, "MODEL.HEADS.POOL")(gem_p, learn=gem_learn)


def horizontal_stripes(fmap: torch.Tensor, n: int) -> List[torch.Tensor]:
    """Split (B, C, H, W) into ``n`` horizontal stripes with adaptive pooling's bin edges (rows
    floor(i H / n) .. ceil((i + 1) H / n)), so any height works: stripes overlap by a row when n does not divide H."""
    h = fmap.shape[2]
    # Non-negative operands only: exporters trace // as truncating division, which differs for negative numbers.
    return [fmap[:, :, (i * h) // n:((i + 1) * h + n - 1) // n] for i in range(n)]
