"""Building blocks that published re-ID backbones add to a ResNet: IBN-a normalisation and non-local blocks.

Attribute names follow the publishers' (``IN`` / ``BN`` inside IBN as in Pan et al.'s code, which fast-reid and
torchreid keep; ``g`` / ``theta`` / ``phi`` / ``W`` in the non-local block as fast-reid names them), so their
checkpoints and ImageNet files map onto these modules name for name.
"""
from __future__ import annotations

import torch
from torch import nn


class IBN(nn.Module):
    """IBN-a normalisation (Pan et al., ECCV 2018): InstanceNorm on the first ``int(planes * ratio)`` channels,
    BatchNorm on the rest. Instance statistics remove appearance (colour, contrast) that varies between cameras."""

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), dim=1)


class NonLocal(nn.Module):
    """Dot-product non-local block (Wang et al., CVPR 2018) in fast-reid's form (AGW, SBS): theta / phi / g are
    1x1 convolutions to ``inter`` channels, the affinity theta^T phi is divided by the number of positions, and
    ``W`` (1x1 conv + BN) maps the aggregated features back before the residual sum. ``W``'s BN starts at zero,
    so a new block is the identity and ImageNet weights keep their meaning."""

    def __init__(self, channels: int, inter: int) -> None:
        super().__init__()
        self.inter = inter
        self.g = nn.Conv2d(channels, inter, kernel_size=1)
        self.theta = nn.Conv2d(channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter, kernel_size=1)
        self.W = nn.Sequential(nn.Conv2d(inter, channels, kernel_size=1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, N, inter)
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, inter)
        phi = self.phi(x).flatten(2)  # (B, inter, N)
        affinity = torch.matmul(theta, phi)
        y = torch.matmul(affinity / affinity.shape[-1], g)  # (B, N, inter)
        y = y.transpose(1, 2).reshape(b, self.inter, x.shape[2], x.shape[3])
        return self.W(y) + x
