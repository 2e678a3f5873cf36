"""Feature extraction: run a model over a loader, optionally averaging each image with its mirror image."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn
from tqdm import tqdm

from ..modeling.video import frame_scores


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
    """Embed every batch of ``loader`` with ``embed_batch`` (``flip``: averaged with the mirror image).

    Batches of tracklet frames (``reid.data.video.TrackletFrames``: a ``tracklets`` index per frame) give one
    embedding per tracklet: its frames' embeddings pooled over time (:class:`TrackletPool`), however the frames
    fall into batches; pids, cameras and paths are then those of each tracklet's first frame."""
    was_training = model.training
    model.eval()
    feats, pids, camids, paths = [], [], [], []
    pool = TrackletPool(loader.dataset.num_tracklets) if hasattr(loader.dataset, "num_tracklets") else None
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        images = batch["images"].to(device, non_blocking=True)
        emb = embed_batch(model, images, flip, batch["camids"].to(device))
        if pool is not None:
            pool.add(batch["tracklets"].to(device), emb, frame_scores(model, images))
        feats.append(emb if pool is None else emb[:0])
        pids.append(batch["pids"])
        camids.append(batch["camids"])
        paths.extend(batch["paths"])
    model.train(was_training)
    if not feats:
        raise ValueError("extract_features got an empty loader")
    pids, camids = torch.cat(pids), torch.cat(camids)
    if pool is None:
        return Features(torch.cat(feats), pids, camids, paths)
    first = pool.first_frames
    return Features(pool.result(), pids[first], camids[first], [paths[i] for i in first.tolist()])


class TrackletPool:
    """Per-tracklet weighted means of frame embeddings that arrive in any number of chunks: weights
    ``softmax(scores)`` over each tracklet's frames (equal without scores), accumulated with an online softmax
    (running maximum, rescaled sums), so no tracklet's frames are ever held together."""

    def __init__(self, num_tracklets: int) -> None:
        self.num_tracklets = num_tracklets
        self.max: Optional[torch.Tensor] = None
        self.norm: Optional[torch.Tensor] = None
        self.sum: Optional[torch.Tensor] = None
        self._first: Optional[torch.Tensor] = None  # (tracklets,) position of each tracklet's first frame
        self._seen = 0

    def add(self, tracklets: torch.Tensor, emb: torch.Tensor, scores: Optional[torch.Tensor] = None) -> None:
        """Frames of tracklets ``tracklets`` (N,) with embeddings ``emb`` (N, D) and scores (N,) or None."""
        n = self.num_tracklets
        if self.sum is None:
            self.max = torch.full((n,), float("-inf"), device=emb.device)
            self.norm = torch.zeros(n, device=emb.device)
            self.sum = torch.zeros(n, emb.shape[1], device=emb.device)
            self._first = torch.full((n,), -1, dtype=torch.int64, device=emb.device)
        scores = torch.zeros(len(tracklets), device=emb.device) if scores is None else scores.to(emb.device)
        new_max = self.max.scatter_reduce(0, tracklets, scores, reduce="amax")
        touched = torch.unique(tracklets)
        rescale = torch.exp(self.max[touched] - new_max[touched])  # exp(-inf) = 0 for a tracklet's first chunk
        self.norm[touched] *= rescale
        self.sum[touched] *= rescale[:, None]
        weight = torch.exp(scores - new_max[tracklets])
        self.norm.index_add_(0, tracklets, weight)
        self.sum.index_add_(0, tracklets, weight[:, None] * emb.float())
        self.max = new_max
        positions = torch.arange(self._seen, self._seen + len(tracklets), device=emb.device)
        fresh = self._first[tracklets] < 0
        self._first[tracklets[fresh].flip(0)] = positions[fresh].flip(0)  # the earliest position wins
        self._seen += len(tracklets)

    @property
    def first_frames(self) -> torch.Tensor:
        """(tracklets,) the position of each tracklet's first frame among all frames added (on the CPU)."""
        return self._first.cpu()

    def result(self) -> torch.Tensor:
        """(tracklets, D) pooled embeddings; every tracklet must have had a frame."""
        if self.sum is None or bool((self.norm == 0).any()):
            missing = int((self.norm == 0).sum()) if self.norm is not None else self.num_tracklets
            raise ValueError(f"{missing} of {self.num_tracklets} tracklets had no frame to embed")
        return self.sum / self.norm[:, None]
