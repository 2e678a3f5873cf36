"""Proof that a converted checkpoint computes what the peer computes: both models embed the same pixels.

The peer sees the images through its own test preprocessing (fast-reid: 0-255 pixels, normalised inside its
model; torchreid: its [0, 1] + ImageNet-normalisation transform); ours through reid's test transform
(``reid.data.transforms``), with the model loaded by ``load_for_inference`` like every tool loads it. The images
are drawn at the test size, so neither side's resize (which may differ in filter) enters the comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ...data.transforms import build_test_transform
from ..inference import load_for_inference


@dataclass
class PeerModel:
    """The peer's own model with the same weights, as an images -> (B, D) embeddings function."""

    name: str  # e.g. "torchreid 0.2.5 osnet_x1_0"
    parameters: int  # without its classifier
    embed: Callable[[Sequence[Image.Image]], torch.Tensor]


@dataclass(frozen=True)
class Verification:
    """Largest difference between the peer's and our embeddings, absolute and relative to the embedding scale."""

    peer: str
    images: int
    size: Tuple[int, int]
    max_abs_diff: float
    scale: float  # largest |embedding value| of the peer
    atol: float  # allowed max_abs_diff / scale
    parameters: Tuple[int, int]  # (ours, the peer's), classifiers excluded
    peer_finite: bool = True  # False: the peer's own embeddings hold NaN / inf, so nothing could be verified

    @property
    def relative(self) -> float:
        return self.max_abs_diff / self.scale if self.scale > 0 else self.max_abs_diff

    @property
    def ok(self) -> bool:
        return self.relative <= self.atol  # False for NaN too

    def line(self) -> str:
        ours, theirs = self.parameters
        if not self.peer_finite:
            return (f"verify against {self.peer}: {self.images} images at {self.size[0]}x{self.size[1]}: the peer's "
                    f"own model gives non-finite embeddings (NaN or inf), so the conversion cannot be verified on "
                    f"these images: NOT VERIFIED; parameters without classifiers: ours {ours:,}, peer {theirs:,}")
        return (f"verify against {self.peer}: {self.images} images at {self.size[0]}x{self.size[1]}: max abs diff "
                f"{self.max_abs_diff:.3e}, {self.relative:.3e} of the embedding scale {self.scale:.4g} "
                f"(atol {self.atol:g}): {'OK' if self.ok else 'MISMATCH'}; parameters without classifiers: ours "
                f"{ours:,}, peer {theirs:,}")


def random_images(n: int, size: Tuple[int, int], seed: int) -> List[Image.Image]:
    """``n`` RGB noise images of exactly ``size`` (height, width)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)) for _ in range(n)]


@torch.inference_mode()
def verify_checkpoint(path: str | Path, peer: PeerModel, parameters: int, atol: float = 1e-4, batches: int = 2,
                      batch_size: int = 3, seed: int = 0) -> Verification:
    """Embed ``batches`` batches of random images with the checkpoint at ``path`` and with ``peer``; compare."""
    model, cfg = load_for_inference(path, device="cpu", name="Converted checkpoint")
    transform = build_test_transform(cfg)
    size = tuple(cfg.INPUT.SIZE_TEST)
    diffs, scales, finite = [], [], True
    for b in range(batches):
        images = random_images(batch_size, size, seed + b)
        ours = model(torch.stack([transform(im) for im in images])).float()
        theirs = peer.embed(images).float()
        finite = finite and bool(torch.isfinite(theirs).all())
        if ours.shape != theirs.shape:
            diffs.append(math.nan)  # e.g. another embedding size: a failed check, never a pass
            break
        diffs.append((ours - theirs).abs().max().item())
        scales.append(theirs.abs().max().item())
    worst = math.nan if any(math.isnan(d) for d in diffs) else max(diffs)
    return Verification(peer.name, batches * batch_size, size, worst, max(scales, default=0.0), atol,
                        (parameters, peer.parameters), finite)
