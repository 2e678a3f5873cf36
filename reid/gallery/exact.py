"""reid's exact gallery search (``--index exact``): cosine distances a block of query rows at a time."""
from __future__ import annotations

from typing import Tuple

import torch

from ..evaluation.distance import iter_distance_blocks
from ..utils.errors import ConfigError


def search(query: torch.Tensor, gallery: torch.Tensor, topk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(cosine distances, gallery indices), each (Q, min(topk, G)), nearest first.

    Distances are computed a block of query rows at a time, so a large query x gallery matrix is never built.
    """
    if topk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}.")
    k = min(topk, gallery.shape[0])
    best = [torch.topk(block, k, dim=1, largest=False) for _, block in iter_distance_blocks(query, gallery, "cosine")]
    return torch.cat([b.values for b in best]), torch.cat([b.indices for b in best])
