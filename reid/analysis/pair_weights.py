"""Theorem 3.1 of the GPW paper (Wang et al. 2019, "A Unified View of Deep Metric Learning via Gradient
Analysis"): a pair loss L(S) is gradient-equivalent to
sum_i [ sum_{k in N_i} w_ik s_ik - sum_{j in P_i} w_ij s_ij ] with w = |dL/ds|. We read w by autograd."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ..modeling.losses.frame import cosine_similarity, pair_masks
from ..utils.errors import ReIDError


def _check_pair_loss(loss: nn.Module) -> None:
    if getattr(loss, "kind", None) != "pair" or not hasattr(loss, "forward_sim"):
        raise ReIDError(f"pair_weights needs a pair loss with forward_sim(S, pos_mask, neg_mask); "
                        f"{type(loss).__name__} is not one (classification losses have no pair matrix).")
    if not getattr(loss, "uses_cosine", True):
        raise ReIDError(f"{loss!r} does not consume the cosine matrix S (e.g. a triplet on raw features); "
                        f"build it on normalised features (TripletLoss(normalize=True)) to read its pair weights.")


def sim_pair_weights(loss: nn.Module, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
    """W = |dL/dS| for the loss evaluated at the given similarity matrix (diagonal zero)."""
    _check_pair_loss(loss)
    with torch.enable_grad():
        leaf = sim.detach().clone().requires_grad_(True)
        value = loss.forward_sim(leaf, pos_mask, neg_mask)
        (grad,) = torch.autograd.grad(value, leaf, allow_unused=True)
    weights = torch.zeros_like(leaf) if grad is None else grad.abs()
    weights.fill_diagonal_(0.0)
    return weights.detach()


def pair_weights(loss: nn.Module, embeddings: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
    """(S, W): the N x N cosine-similarity matrix the loss consumes and W = |dL/dS| (diagonal zero).

    W[i, j] is the weight anchor i's term puts on its pair with j (rows are anchors, so W is not symmetric).
    """
    _check_pair_loss(loss)
    with torch.no_grad():
        sim = cosine_similarity(embeddings)
    pos_mask, neg_mask = pair_masks(labels)
    return sim, sim_pair_weights(loss, sim, pos_mask, neg_mask)
