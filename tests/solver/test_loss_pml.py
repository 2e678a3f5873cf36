"""Comparison with pytorch-metric-learning (a peer of requirements-peers.txt, not a dependency): same values and
gradients where the definitions agree, and the documented differences where they do not (README "Deliberate
differences"). Run with ``-s`` to see the max abs differences."""
from __future__ import annotations

import pytest
import torch

from tests.support.peer_models import require

pml = require("pytorch_metric_learning")
from pytorch_metric_learning import distances, losses, miners, reducers  # noqa: E402

from reid.modeling.losses import (ContrastiveLoss, CosFaceClassifier, CrossEntropyLoss,  # noqa: E402
                                  LiftedStructureLoss, MultiSimilarityLoss, PairwiseCircleLoss, TripletLoss,
                                  cosine_similarity, pair_masks)

LABELS = torch.arange(8).repeat_interleave(4)


def batch(seed: int = 0, n: int = 32, dim: int = 16, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(8, dim, generator=g, dtype=torch.float64)
    return 3.0 * (centers[LABELS[:n]] + spread * torch.randn(n, dim, generator=g, dtype=torch.float64))


def value_and_grad(fn, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def compare(name: str, ours, theirs, x: torch.Tensor, rtol: float = 1e-10):
    v1, g1 = value_and_grad(ours, x)
    v2, g2 = value_and_grad(theirs, x)
    dv, dg = (v1 - v2).abs().item(), (g1 - g2).abs().max().item()
    print(f"\n[pml] {name}: value {v1.item():.6f} vs {v2.item():.6f}, max |dvalue| {dv:.3g}, max |dgrad| {dg:.3g}")
    torch.testing.assert_close(v1, v2, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=rtol, atol=1e-12)


def test_circle_matches_pml_when_every_anchor_has_nonzero_loss():
    ours, theirs = PairwiseCircleLoss(m=0.25, gamma=128.0), losses.CircleLoss(m=0.25, gamma=128.0)
    compare("CircleLoss m=0.25 gamma=128", lambda x: ours(x, LABELS), lambda x: theirs(x, LABELS), batch())


def test_circle_differs_from_pml_on_anchors_with_zero_loss():
    """PML's AvgNonZeroReducer drops anchors whose loss is exactly 0; we average over every anchor with a
    positive and a negative. A per-anchor Circle loss is >= softplus(-2 gamma m^2 + ...), so this needs a loss
    that underflows: gamma = 1024, m = 0.4 in float32, seven collapsed identities (s_p = 1, s_n = 0) and one
    spread identity (positives at up to 1.5 rad)."""
    x = torch.zeros(32, 16)
    x[torch.arange(28), LABELS[:28]] = 1.0
    theta = torch.tensor([0.0, 0.5, 1.0, 1.5])
    x[28:, 7], x[28:, 8] = theta.cos(), theta.sin()
    ours, theirs = PairwiseCircleLoss(m=0.4, gamma=1024.0), losses.CircleLoss(m=0.4, gamma=1024.0)
    pos, neg = pair_masks(LABELS)
    per_anchor = ours.anchor_losses(cosine_similarity(x), pos, neg)
    nonzero = int((per_anchor > 0).sum())
    assert 0 < nonzero <= 4 and per_anchor[:28].eq(0).all()
    mine, pml_value = ours(x, LABELS).item(), theirs(x, LABELS).item()
    print(f"\n[pml] CircleLoss with {32 - nonzero}/32 zero-loss anchors: ours {mine:.4f} (mean over 32 valid "
          f"anchors), PML {pml_value:.4f} (mean over the {nonzero} non-zero ones), ratio {pml_value / mine:.4f}")
    assert pml_value / mine == pytest.approx(32 / nonzero, rel=1e-5)


def test_multi_similarity_matches_pml_loss_plus_miner():
    ours = MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, epsilon=0.1)
    loss, miner = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), miners.MultiSimilarityMiner(epsilon=0.1)
    compare("MultiSimilarityLoss + MultiSimilarityMiner eps=0.1", lambda x: ours(x, LABELS),
            lambda x: loss(x, LABELS, miner(x, LABELS)), batch(2))


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_triplet_matches_pml(normalize, soft):
    ours = TripletLoss(margin=0.3, soft_margin=soft, normalize=normalize)
    dist = distances.LpDistance(normalize_embeddings=normalize)
    miner = miners.BatchHardMiner(distance=dist)
    theirs = losses.TripletMarginLoss(margin=0.0 if soft else 0.3, smooth_loss=soft, distance=dist,
                                      reducer=reducers.MeanReducer())
    compare(f"TripletMarginLoss + BatchHardMiner (normalize={normalize}, soft={soft}, MeanReducer)",
            lambda x: ours(x, LABELS), lambda x: theirs(x, LABELS, miner(x, LABELS)), batch(3))


def test_pml_default_triplet_reducer_averages_over_nonzero_triplets_only():
    """Documented difference: PML's TripletMarginLoss defaults to AvgNonZeroReducer; we count every anchor."""
    x = batch(7, spread=0.8)
    dist = distances.LpDistance(normalize_embeddings=False)
    theirs = losses.TripletMarginLoss(margin=0.3, distance=dist)
    ours = TripletLoss(margin=0.3)
    hinge = theirs.compute_loss(x, LABELS, miners.BatchHardMiner(distance=dist)(x, LABELS), x, LABELS)
    nonzero = int((hinge["loss"]["losses"] > 0).sum())
    assert 0 < nonzero < 32
    ratio = theirs(x, LABELS, miners.BatchHardMiner(distance=dist)(x, LABELS)).item() / ours(x, LABELS).item()
    print(f"\n[pml] TripletMarginLoss default reducer: {nonzero}/32 anchors active, PML / ours = {ratio:.4f}")
    assert ratio == pytest.approx(32 / nonzero, rel=1e-10)


def test_contrastive_matches_pml_up_to_the_average():
    """PML averages positive and negative pair losses separately; GPW paper sums per anchor, 1/m over anchors."""
    ours = ContrastiveLoss(margin=0.5)
    theirs = losses.ContrastiveLoss(pos_margin=1.0, neg_margin=0.5, distance=distances.CosineSimilarity(),
                                    reducer=reducers.SumReducer())
    compare("ContrastiveLoss pos_margin=1 neg_margin=0.5 cosine (SumReducer / N)", lambda x: ours(x, LABELS),
            lambda x: theirs(x, LABELS) / len(LABELS), batch(4))


def test_lifted_matches_pml_generalized_lifted():
    ours = LiftedStructureLoss(margin=1.0)
    theirs = losses.GeneralizedLiftedStructureLoss(pos_margin=0.0, neg_margin=-1.0,
                                                   distance=distances.CosineSimilarity())
    compare("GeneralizedLiftedStructureLoss cosine pos_margin=0 neg_margin=-1", lambda x: ours(x, LABELS),
            lambda x: theirs(x, LABELS), batch(5))


def test_cosface_matches_pml():
    torch.manual_seed(0)
    cls = CosFaceClassifier(16, 8, scale=64.0, margin=0.35).double()
    theirs = losses.CosFaceLoss(num_classes=8, embedding_size=16, margin=0.35, scale=64)
    theirs.W.data = cls.weight.detach().t().clone()
    ce = CrossEntropyLoss(epsilon=0.0)
    compare("CosFaceLoss s=64 m=0.35", lambda x: ce(cls(x, LABELS), LABELS), lambda x: theirs(x, LABELS), batch(6))
