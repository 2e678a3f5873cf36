"""Stability: gamma = 256 under bfloat16 autocast and with float16 inputs; degenerate batches (no positive, no
negative, nothing valid) give finite values and gradients, never NaN, and a zero that keeps its grad_fn."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reid.modeling.losses import (BinomialDevianceLoss, CircleClassifier, ContrastiveLoss, CosFaceClassifier,
                                  CrossEntropyLoss, LiftedStructureLoss, MultiSimilarityLoss, PairwiseCircleLoss,
                                  TripletLoss, cosine_similarity)

PAIR_LOSSES = {
    "circle256": lambda: PairwiseCircleLoss(m=0.25, gamma=256.0),
    "ms": lambda: MultiSimilarityLoss(),
    "ms_raw": lambda: MultiSimilarityLoss(epsilon=None),
    "triplet": lambda: TripletLoss(),
    "triplet_norm_soft": lambda: TripletLoss(normalize=True, soft_margin=True),
    "contrastive": lambda: ContrastiveLoss(),
    "lifted": lambda: LiftedStructureLoss(),
    "binomial": lambda: BinomialDevianceLoss(),
}
LABELS = torch.arange(8).repeat_interleave(4)


def embeddings(seed: int = 0, n: int = 32, dim: int = 64, scale: float = 10.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, dim, generator=g)


def finite_loss_and_grad(loss: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    value = loss(x, labels)
    assert value.dim() == 0 and torch.isfinite(value), value
    assert value.grad_fn is not None
    value.backward()
    assert torch.isfinite(x.grad).all()
    return value.detach()


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_bfloat16_autocast(name):
    """Embeddings from a bf16 linear layer (autocast on CPU): loss and gradients finite, close to float32."""
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    x = embeddings()
    loss = PAIR_LOSSES[name]()
    ref = loss(layer(x), LABELS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = layer(x)
        assert feats.dtype == torch.bfloat16
        value = loss(feats, LABELS)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    assert value.item() == pytest.approx(ref.item(), rel=0.05, abs=0.05)


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_float16_inputs(name):
    value = finite_loss_and_grad(PAIR_LOSSES[name](), embeddings().half(), LABELS)
    ref = PAIR_LOSSES[name]()(embeddings().half().float(), LABELS)
    assert value.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)


def test_circle_gamma_256_does_not_overflow():
    """Collapsed features: every negative at s = 1, exponent gamma (1 + m)(1 - m) = 240 > log(float32 max)
    (and > log(fp16 max) = 11); positives at s = 1 give -gamma m^2 = -16. L = 240 + log 28 - 16 + log 3."""
    x = torch.ones(32, 16).half()
    value = finite_loss_and_grad(PairwiseCircleLoss(m=0.25, gamma=256.0), x, LABELS)
    assert value.item() == pytest.approx(224.0 + math.log(28 * 3), rel=1e-6)


@pytest.mark.parametrize("cls", [CircleClassifier, CosFaceClassifier])
def test_classifier_logits_gamma_256(cls):
    torch.manual_seed(0)
    head = cls(64, 10, scale=256.0, margin=0.25)
    labels = torch.arange(32) % 10
    for feats in (embeddings().half(), embeddings()):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(feats.requires_grad_(True), labels)
            value = CrossEntropyLoss()(logits, labels)
        assert logits.dtype == torch.float32 and torch.isfinite(value)
        value.backward()
        assert torch.isfinite(feats.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_no_valid_anchor_gives_zero_with_grad_fn(name):
    """All-distinct labels: no anchor has a positive. Losses that need a positive (Circle, triplet, lifted,
    MS with mining) are exactly 0; contrastive, binomial and un-mined MS keep their documented negative terms."""
    value = finite_loss_and_grad(PAIR_LOSSES[name](), embeddings(), torch.arange(32))
    if name in ("circle256", "ms", "triplet", "triplet_norm_soft", "lifted"):
        assert value.item() == 0.0
    else:
        assert value.item() >= 0.0


@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_single_identity_and_single_sample(name):
    finite_loss_and_grad(PAIR_LOSSES[name](), embeddings(), torch.zeros(32, dtype=torch.long))
    assert finite_loss_and_grad(PAIR_LOSSES[name](), embeddings(n=1), torch.zeros(1, dtype=torch.long)).item() == 0


def test_zero_and_duplicate_embeddings():
    x = embeddings()
    x[0] = 0.0  # a dead feature: normalises to 0, cosine 0
    x[5] = x[4]  # an exact duplicate positive: distance 0
    for name, make in PAIR_LOSSES.items():
        finite_loss_and_grad(make(), x, LABELS)


def test_similarity_matrix_precision():
    x = embeddings().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sim = cosine_similarity(x)
    assert sim.dtype == torch.float32
    assert torch.allclose(sim.diagonal(), torch.ones(32), atol=1e-6)
