"""The shared pair-loss frame: one similarity matrix, one pair of masks, then mining, then weighting.

Every pair loss is written on the batch's cosine-similarity matrix ``S`` (N x N) and boolean ``pos_mask`` /
``neg_mask`` (same id without the diagonal / different id). ``PairLoss.forward(embeddings, labels)`` builds
them once and calls ``forward_sim(S, pos_mask, neg_mask)``; because that entry point takes ``S`` itself,
``reid.analysis.pair_weights`` can hand it a leaf ``S`` and read ``W = |dL/dS|`` by autograd (GPW paper,
Wang et al. 2019).

Numerics: the similarity and all loss arithmetic run in float32 (float64 stays float64) with autocast turned
off, and every exponential goes through a masked log-sum-exp, so gamma = 256 cannot overflow under fp16/bf16
training. Rows with nothing selected never produce inf/NaN, in the value or in the gradient.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DIST_EPS = 1e-12  # floor under squared distances: sqrt stays differentiable at coincident points


def work_dtype(t: Tensor) -> torch.dtype:
    """float64 stays float64 (tests, gradcheck); everything else is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


@contextmanager
def full_precision(t: Tensor) -> Iterator[None]:
    """Disable autocast for the loss arithmetic (a bf16 cosine is only good to ~4e-3; gamma multiplies it)."""
    with torch.autocast(device_type=t.device.type, enabled=False):
        yield


def cosine_similarity(embeddings: Tensor) -> Tensor:
    """S_ij = <x_i/|x_i|, x_j/|x_j|> in float32 (or float64)."""
    with full_precision(embeddings):
        x = F.normalize(embeddings.to(work_dtype(embeddings)), dim=1)
        return x @ x.t()


def euclidean_distance(embeddings: Tensor) -> Tensor:
    """d_ij = |x_i - x_j| on the raw (un-normalised) embeddings."""
    with full_precision(embeddings):
        x = embeddings.to(work_dtype(embeddings))
        sq = (x * x).sum(dim=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
        return d2.clamp_min(DIST_EPS).sqrt()


def sphere_distance(sim: Tensor) -> Tensor:
    """Euclidean distance of unit vectors from their cosine: d^2 = 2 - 2 s (so distance losses live on S)."""
    return (2.0 - 2.0 * sim).clamp_min(DIST_EPS).sqrt()


def pair_masks(labels: Tensor) -> Tuple[Tensor, Tensor]:
    """(pos_mask, neg_mask): same label without the diagonal, different label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def masked_logsumexp(x: Tensor, mask: Tensor, add_one: bool = False) -> Tensor:
    """Row-wise log(sum_{mask} exp x), or log(1 + sum_{mask} exp x) with ``add_one``.

    A row with nothing selected gives 0 (= log 1 with ``add_one``; callers without it must ignore such rows)
    and a zero gradient: empty rows are replaced by finite dummies before the reduction, because
    logsumexp over an all -inf row back-propagates NaN even when its output is discarded.
    """
    x = x.masked_fill(~mask, float("-inf"))
    if add_one:
        x = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
        return torch.logsumexp(x, dim=1)
    has_any = mask.any(dim=1)
    x = torch.where(has_any[:, None], x, torch.zeros_like(x))
    return torch.where(has_any, torch.logsumexp(x, dim=1), torch.zeros_like(x[:, 0]))


def masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    """Row-wise sum over the selected entries (0 for an empty row)."""
    return torch.where(mask, x, torch.zeros_like(x)).sum(dim=1)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Row-wise mean over the selected entries (0 for an empty row)."""
    return masked_sum(x, mask) / mask.sum(dim=1).clamp_min(1).to(x.dtype)


def average_anchors(per_anchor: Tensor, counted: Tensor) -> Tensor:
    """Mean of the counted anchors' losses; no counted anchor gives 0 that still carries a grad_fn."""
    total = torch.where(counted, per_anchor, torch.zeros_like(per_anchor)).sum()
    return total / counted.sum().clamp_min(1).to(per_anchor.dtype)


class PairMiner(nn.Module):
    """Decides which pairs a loss may use; sees a detached similarity matrix, returns narrowed masks."""

    def forward(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError


class PairLoss(nn.Module):
    """Base of every pair loss: ``forward(embeddings, labels)`` -> ``forward_sim(S, pos, neg)`` -> scalar.

    Subclasses implement ``anchor_losses(S, pos, neg) -> (N,)`` (the weighting) and set ``average``:
    ``"valid"`` averages over the anchors having at least one positive and one negative in the batch,
    ``"all"`` over every anchor (the papers' 1/m sum). Mining, if any, happens in between and never changes
    which anchors are counted.
    """

    kind = "pair"
    cfg_key = ""  # section under MODEL.LOSSES and the suffix of the criterion's term name
    average = "valid"
    uses_cosine = True  # False where the loss consumes something other than S (triplet on raw features)

    def __init__(self, miner: Optional[PairMiner] = None) -> None:
        super().__init__()
        self.miner = miner

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        check_batch(embeddings, labels)
        pos_mask, neg_mask = pair_masks(labels)
        return self.forward_sim(cosine_similarity(embeddings), pos_mask, neg_mask)

    def forward_sim(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        """The loss as a function of the similarity matrix (the entry point of ``pair_weights``)."""
        with full_precision(sim):
            sim = sim.to(work_dtype(sim))
            return self.reduce(sim, pos_mask, neg_mask, self.anchor_losses)

    def reduce(self, matrix: Tensor, pos_mask: Tensor, neg_mask: Tensor, weighting: Callable[..., Tensor],
               mining_sim: Optional[Tensor] = None) -> Tensor:
        """Count anchors, mine (on ``mining_sim`` or the detached matrix), weight, average."""
        if self.average == "valid":
            counted = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        else:
            counted = torch.ones(matrix.shape[0], dtype=torch.bool, device=matrix.device)
        if self.miner is not None:
            pos_mask, neg_mask = self.miner(matrix.detach() if mining_sim is None else mining_sim, pos_mask, neg_mask)
        return average_anchors(weighting(matrix, pos_mask, neg_mask), counted)

    def anchor_losses(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        raise NotImplementedError


def check_batch(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.dim() != 2 or labels.dim() != 1 or embeddings.shape[0] != labels.shape[0]:
        raise ValueError(f"pair losses take embeddings (N, D) and labels (N,), got {tuple(embeddings.shape)} and "
                         f"{tuple(labels.shape)}")
