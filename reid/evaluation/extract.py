"""Feature extraction: run a model over a loader, optionally averaging each image with its mirror image."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn
from tqdm import tqdm


@dataclass
class Features:
    """Embeddings (on the model's device) with their identities, cameras and file paths, in loader order."""

    feats: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor
    paths: List[str]

    def split(self, n: int) -> "tuple[Features, Features]":
        """(first n, rest): query and gallery of a test loader."""
        return (Features(self.feats[:n], self.pids[:n], self.camids[:n], self.paths[:n]),
                Features(self.feats[n:], self.pids[n:], self.camids[n:], self.paths[n:]))


def embed_batch(model: nn.Module, images: torch.Tensor, flip: bool,
                camids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The float32 (B, D) test embeddings of a normalised batch; with ``flip`` the mean of the image's and its
    mirror image's embeddings. ``camids`` (0-based cameras) reach models with camera embeddings (SIE).

    The mean is taken before any normalisation (cosine distance normalises once, later), unlike peers that
    normalise the flipped embedding twice. Plain tensor operations, so exports can trace it (``flip`` is fixed).
    """
    kw = {} if camids is None else {"camids": camids}
    emb = model(images, **kw).float()
    if flip:
        emb = (emb + model(images.flip(3), **kw).float()) / 2
    return emb


@torch.inference_mode()
def extract_features(model: nn.Module, loader, device: torch.device, flip: bool = False,
                     desc: str = "features") -> Features:
    """Embed every batch of ``loader`` with ``embed_batch`` (``flip``: averaged with the mirror image)."""
    was_training = model.training
    model.eval()
    feats, pids, camids, paths = [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        images = batch["images"].to(device, non_blocking=True)
        feats.append(embed_batch(model, images, flip, batch["camids"].to(device)))
        pids.append(batch["pids"])
        camids.append(batch["camids"])
        paths.extend(batch["paths"])
    model.train(was_training)
    if not feats:
        raise ValueError("extract_features got an empty loader")
    return Features(torch.cat(feats), torch.cat(pids), torch.cat(camids), paths)
