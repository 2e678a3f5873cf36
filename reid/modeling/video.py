"""Tracklets through any meta-architecture: every frame embedded as an image, then pooled over time.

The meta-architecture stays an image model; :class:`TrackletModel` (what the trainer calls on (B, T, 3, H, W)
clips) runs it on the B x T frames and pools each of its outputs over a tracklet's frames: the test embedding in
eval, the pair-loss features and the logits in training (each frame's logits are computed with its tracklet's pid,
for margin classifiers). Pooling is a weighted mean whose weights are a softmax of per-frame scores:

- ``avg`` (MODEL.TEMPORAL_POOL): equal weights, temporal average pooling (Gao & Nevatia, "Revisiting Temporal
  Modeling for Video-based Person ReID", 2018), no parameters. torchreid instead trains each frame on its own and
  averages only at test time.
- ``attention``: a small CNN scores each frame from its pixels (the quality-aware aggregation of Liu et al., QAN,
  CVPR 2017), the last layer zero-initialised so training starts from the average. It is attached to the model as
  ``temporal_pool`` (saved and loaded with it), so the same weights pool at test time, where
  ``reid.evaluation.extract`` embeds a tracklet's frames in chunks and pools them with an online softmax.

An image model (no ``temporal_pool``) tested on a video set is pooled by ``avg`` the same way.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
from torch import nn

from ..registry import TEMPORAL_POOL_REGISTRY


@TEMPORAL_POOL_REGISTRY.register("avg")
def average_pool(cfg) -> None:
    """Equal frame weights: no scoring module."""
    return None


@TEMPORAL_POOL_REGISTRY.register("attention")
class FrameQuality(nn.Module):
    """Frames (N, 3, H, W) -> scores (N,): three strided conv-BN-ReLU layers on a 64 x 32 copy of the frame, global
    average pooling and a linear score (zero-initialised: equal weights until training moves it)."""

    SIZE = (64, 32)

    def __init__(self, cfg=None, width: int = 32) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        channels = 3
        for out in (width // 4, width // 2, width):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            channels = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.score = nn.Linear(channels, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        small = nn.functional.interpolate(frames, size=self.SIZE, mode="bilinear", align_corners=False)
        return self.score(self.body(small)).squeeze(1)


def build_temporal_pool(cfg) -> Optional[nn.Module]:
    """The frame-scoring module of ``MODEL.TEMPORAL_POOL`` (None: equal weights)."""
    return TEMPORAL_POOL_REGISTRY.get(cfg.MODEL.TEMPORAL_POOL)(cfg)


def frame_scores(model: nn.Module, frames: torch.Tensor) -> Optional[torch.Tensor]:
    """(N,) float32 scores of frames (N, 3, H, W) by ``model``'s ``temporal_pool``; None for equal weights."""
    pool = getattr(model, "temporal_pool", None)
    return None if pool is None else pool(frames).float()


def pool_frames(x: torch.Tensor, scores: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, T, ...) -> (B, ...): the mean over T weighted by ``softmax(scores)`` ((B, T); None: plain mean)."""
    if scores is None:
        return x.mean(1)
    weights = torch.softmax(scores, dim=1).to(x.dtype)
    return (x * weights.view(*weights.shape, *([1] * (x.dim() - 2)))).sum(1)


Outputs = Union[torch.Tensor, Dict[str, List[torch.Tensor]]]


class TrackletModel(nn.Module):
    """``model`` (a meta-architecture) applied to clips (B, T, 3, H, W): its outputs for the B x T frames pooled
    per tracklet (:func:`pool_frames`); images (B, 3, H, W) pass through unchanged. Holds no parameters of its own,
    so checkpoints keep ``model``'s keys; the trainer wraps the model in it (before DDP) for video sets."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, pids: Optional[torch.Tensor] = None,
                camids: Optional[torch.Tensor] = None) -> Outputs:
        if frames.dim() == 4:
            return self.model(frames, pids, camids=camids)
        b, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        per_frame = self.model(flat, _repeat(pids, t), camids=_repeat(camids, t))
        scores = frame_scores(self.model, flat)
        scores = None if scores is None else scores.view(b, t)
        if isinstance(per_frame, torch.Tensor):
            return pool_frames(per_frame.view(b, t, *per_frame.shape[1:]), scores)
        return {key: [pool_frames(v.view(b, t, *v.shape[1:]), scores) if isinstance(v, torch.Tensor) else v
                      for v in values] for key, values in per_frame.items()}  # (non-tensors: e.g. head weights)


def _repeat(ids: Optional[torch.Tensor], t: int) -> Optional[torch.Tensor]:
    return None if ids is None else ids.repeat_interleave(t)
