"""Each loss against its paper formula written as plain Python loops in float64, and its gradient against
central finite differences of that formula (for Circle with the weights a_p, a_n frozen, as the paper treats
them; for hinge/mining losses at points checked to lie away from every kink)."""
from __future__ import annotations

import math
from typing import Callable, List, Sequence

import pytest
import torch
import torch.nn.functional as F

from reid.modeling.losses import (BinomialDevianceLoss, CircleClassifier, ContrastiveLoss, CosFaceClassifier,
                                  CrossEntropyLoss, LiftedStructureLoss, MultiSimilarityLoss, PairwiseCircleLoss,
                                  TripletLoss, circle_logits)

Matrix = List[List[float]]
LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3]  # P x K plus an identity with one image (an anchor with no positive)
KINK = 1e-4  # minimum distance from a hinge / mining / argmax switch for finite differences to be valid


# ---- plain-Python float64 references ------------------------------------------------------------------------------
def lse(xs: Sequence[float]) -> float:
    top = max(xs)
    return top + math.log(sum(math.exp(x - top) for x in xs))


def log1p_sum_exp(xs: Sequence[float]) -> float:
    """log(1 + sum exp x), stable."""
    return lse(list(xs) + [0.0])


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def cosine_matrix(x: Matrix) -> Matrix:
    unit = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in x]
    return [[sum(a * b for a, b in zip(r, c)) for c in unit] for r in unit]


def distance_matrix(x: Matrix) -> Matrix:
    return [[math.sqrt(sum((a - b) ** 2 for a, b in zip(r, c))) for c in x] for r in x]


def pos_neg(labels: Sequence[int], i: int):
    pos = [j for j in range(len(labels)) if labels[j] == labels[i] and j != i]
    neg = [k for k in range(len(labels)) if labels[k] != labels[i]]
    return pos, neg


def ref_circle(s: Matrix, labels, m: float, gamma: float, a_from: Matrix | None = None) -> float:
    a_src = a_from or s
    total, count = 0.0, 0
    for i in range(len(labels)):
        pos, neg = pos_neg(labels, i)
        if not pos or not neg:
            continue
        lp = lse([-gamma * max(0.0, 1 + m - a_src[i][j]) * (s[i][j] - (1 - m)) for j in pos])
        ln = lse([gamma * max(0.0, a_src[i][k] + m) * (s[i][k] - m) for k in neg])
        total, count = total + softplus(lp + ln), count + 1
    return total / max(count, 1)


def ms_mined(s: Matrix, labels, i: int, eps: float):
    pos, neg = pos_neg(labels, i)
    if not pos or not neg:
        return [], []
    min_pos, max_neg = min(s[i][j] for j in pos), max(s[i][k] for k in neg)
    return [j for j in pos if s[i][j] < max_neg + eps], [k for k in neg if s[i][k] > min_pos - eps]


def ref_ms(s: Matrix, labels, alpha=2.0, beta=50.0, lam=0.5, eps: float | None = 0.1) -> float:
    total = 0.0
    for i in range(len(labels)):
        pos, neg = pos_neg(labels, i) if eps is None else ms_mined(s, labels, i, eps)
        total += log1p_sum_exp([-alpha * (s[i][j] - lam) for j in pos]) / alpha
        total += log1p_sum_exp([beta * (s[i][k] - lam) for k in neg]) / beta
    return total / len(labels)  # 1/m over ALL anchors


def ref_triplet(d: Matrix, labels, margin=0.3, soft=False) -> float:
    losses = []
    for i in range(len(labels)):
        pos, neg = pos_neg(labels, i)
        if pos and neg:
            gap = max(d[i][j] for j in pos) - min(d[i][k] for k in neg)
            losses.append(softplus(gap) if soft else max(0.0, gap + margin))
    return sum(losses) / max(len(losses), 1)


def ref_contrastive(s: Matrix, labels, lam=0.5) -> float:
    total = 0.0
    for i in range(len(labels)):
        pos, neg = pos_neg(labels, i)
        total += sum(1 - s[i][j] for j in pos) + sum(max(0.0, s[i][k] - lam) for k in neg)
    return total / len(labels)


def ref_lifted(s: Matrix, labels, lam=1.0) -> float:
    total = 0.0
    for i in range(len(labels)):
        pos, neg = pos_neg(labels, i)
        if pos and neg:
            total += max(0.0, lse([-s[i][j] for j in pos]) + lse([lam + s[i][k] for k in neg]))
    return total / len(labels)


def ref_binomial(s: Matrix, labels, alpha=2.0, beta=50.0, lam=0.5) -> float:
    total = 0.0
    for i in range(len(labels)):
        pos, neg = pos_neg(labels, i)
        if pos:
            total += sum(softplus(-alpha * (s[i][j] - lam)) for j in pos) / len(pos)
        if neg:
            total += sum(softplus(beta * (s[i][k] - lam)) for k in neg) / len(neg)
    return total / len(labels)


def ref_ce(logits: Matrix, labels, eps: float) -> float:
    total = 0.0
    for row, y in zip(logits, labels):
        log_z = lse(row)
        c = len(row)
        total -= sum(((1 - eps) * (k == y) + eps / c) * (row[k] - log_z) for k in range(c))
    return total / len(labels)


def ref_class_circle(cos: Matrix, labels, m: float, gamma: float, a_from: Matrix | None = None) -> float:
    """The Circle paper's unified formula with one positive (the class proxy) and C - 1 negatives."""
    a_src = a_from or cos
    total = 0.0
    for i, y in enumerate(labels):
        lp = -gamma * max(0.0, 1 + m - a_src[i][y]) * (cos[i][y] - (1 - m))
        ln = lse([gamma * max(0.0, a_src[i][k] + m) * (cos[i][k] - m) for k in range(len(cos[i])) if k != y])
        total += softplus(lp + ln)
    return total / len(labels)


def numeric_grad(f: Callable[[Matrix], float], x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    base = x.tolist()
    grad = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            plus = [row[:] for row in base]
            minus = [row[:] for row in base]
            plus[i][j] += h
            minus[i][j] -= h
            grad[i, j] = (f(plus) - f(minus)) / (2 * h)
    return grad


# ---- fixtures --------------------------------------------------------------------------------------------------
def make_batch(seed: int = 0, dim: int = 4):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor(LABELS)
    centers = torch.randn(4, dim, generator=g, dtype=torch.float64)
    x = centers[labels] + 0.9 * torch.randn(len(LABELS), dim, generator=g, dtype=torch.float64)
    return x, labels


def autograd_grad(loss, x: torch.Tensor, labels: torch.Tensor):
    x = x.clone().requires_grad_(True)
    value = loss(x, labels)
    (g,) = torch.autograd.grad(value, x)
    return value.item(), g


def assert_grad(ours: torch.Tensor, numeric: torch.Tensor) -> None:
    torch.testing.assert_close(ours, numeric, rtol=1e-5, atol=1e-7)


# ---- pair losses -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,gamma", [(0.25, 128.0), (0.4, 80.0), (0.25, 256.0)])
def test_pairwise_circle(m, gamma):
    x, labels = make_batch(0)
    value, grad = autograd_grad(PairwiseCircleLoss(m=m, gamma=gamma), x, labels)
    s0 = cosine_matrix(x.tolist())
    assert value == pytest.approx(ref_circle(s0, LABELS, m, gamma), rel=1e-12)
    frozen = numeric_grad(lambda v: ref_circle(cosine_matrix(v), LABELS, m, gamma, a_from=s0), x)
    assert_grad(grad, frozen)


def test_multi_similarity():
    x, labels = make_batch(1)
    s0 = cosine_matrix(x.tolist())
    for i in range(len(LABELS)):  # mining thresholds away from every similarity
        pos, neg = pos_neg(LABELS, i)
        if pos and neg:
            lo, hi = min(s0[i][j] for j in pos) - 0.1, max(s0[i][k] for k in neg) + 0.1
            assert all(abs(s0[i][j] - t) > KINK for j in pos + neg for t in (lo, hi))
    mined = [ms_mined(s0, LABELS, i, 0.1) for i in range(len(LABELS))]
    n_all = sum(len(pos_neg(LABELS, i)[0]) + len(pos_neg(LABELS, i)[1]) for i in range(len(LABELS)))
    assert 0 < sum(len(p) + len(n) for p, n in mined) < n_all  # mining really drops some pairs
    value, grad = autograd_grad(MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, epsilon=0.1), x, labels)
    assert value == pytest.approx(ref_ms(s0, LABELS), rel=1e-12)
    assert_grad(grad, numeric_grad(lambda v: ref_ms(cosine_matrix(v), LABELS), x))


def test_multi_similarity_without_mining_is_raw():
    x, labels = make_batch(1)
    value, _ = autograd_grad(MultiSimilarityLoss(epsilon=None), x, labels)
    assert value == pytest.approx(ref_ms(cosine_matrix(x.tolist()), LABELS, eps=None), rel=1e-12)


def _triplet_kinks_ok(d: Matrix, margin: float, soft: bool) -> None:
    for i in range(len(LABELS)):
        pos, neg = pos_neg(LABELS, i)
        if pos and neg:
            dp, dn = sorted((d[i][j] for j in pos), reverse=True), sorted(d[i][k] for k in neg)
            assert len(dp) < 2 or dp[0] - dp[1] > KINK
            assert len(dn) < 2 or dn[1] - dn[0] > KINK
            assert soft or abs(dp[0] - dn[0] + margin) > KINK


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_triplet(normalize, soft):
    x, labels = make_batch(2)
    x = x * 3.0  # raw features with norms of a few units, as in re-ID heads

    def ref(v: Matrix) -> float:
        if normalize:
            v = [[a / math.sqrt(sum(b * b for b in row)) for a in row] for row in v]
        return ref_triplet(distance_matrix(v), LABELS, 0.3, soft)

    feats = [[a / math.sqrt(sum(b * b for b in r)) for a in r] for r in x.tolist()] if normalize else x.tolist()
    _triplet_kinks_ok(distance_matrix(feats), 0.3, soft)
    value, grad = autograd_grad(TripletLoss(margin=0.3, soft_margin=soft, normalize=normalize), x, labels)
    assert value == pytest.approx(ref(x.tolist()), rel=1e-12)
    assert value > 0
    assert_grad(grad, numeric_grad(ref, x))


def test_contrastive():
    x, labels = make_batch(3)
    s0 = cosine_matrix(x.tolist())
    assert all(abs(s0[i][k] - 0.5) > KINK for i in range(12) for k in pos_neg(LABELS, i)[1])
    assert any(s0[i][k] > 0.5 for i in range(12) for k in pos_neg(LABELS, i)[1])  # hinge active somewhere
    value, grad = autograd_grad(ContrastiveLoss(margin=0.5), x, labels)
    assert value == pytest.approx(ref_contrastive(s0, LABELS), rel=1e-12)
    assert_grad(grad, numeric_grad(lambda v: ref_contrastive(cosine_matrix(v), LABELS), x))


@pytest.mark.parametrize("lam", [1.0, -3.0])  # -3: some anchors' hinge is inactive
def test_lifted_structure(lam):
    x, labels = make_batch(4)
    s0 = cosine_matrix(x.tolist())
    hinge = [lse([-s0[i][j] for j in p]) + lse([lam + s0[i][k] for k in n])
             for i, (p, n) in enumerate(pos_neg(LABELS, i) for i in range(12)) if p and n]
    assert all(abs(h) > KINK for h in hinge)
    value, grad = autograd_grad(LiftedStructureLoss(margin=lam), x, labels)
    assert value == pytest.approx(ref_lifted(s0, LABELS, lam), rel=1e-12)
    assert_grad(grad, numeric_grad(lambda v: ref_lifted(cosine_matrix(v), LABELS, lam), x))


def test_binomial_deviance():
    x, labels = make_batch(5)
    value, grad = autograd_grad(BinomialDevianceLoss(alpha=2.0, beta=50.0, base=0.5), x, labels)
    assert value == pytest.approx(ref_binomial(cosine_matrix(x.tolist()), LABELS), rel=1e-12)
    assert_grad(grad, numeric_grad(lambda v: ref_binomial(cosine_matrix(v), LABELS), x))


@pytest.mark.parametrize("loss", [BinomialDevianceLoss(), MultiSimilarityLoss(), MultiSimilarityLoss(epsilon=None)],
                         ids=["binomial", "ms", "ms-raw"])
def test_smooth_losses_gradcheck(loss):
    x, labels = make_batch(6, dim=3)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: loss(v, labels), (x,))


# ---- classification losses -------------------------------------------------------------------------------------
def _class_batch(seed: int = 7, n: int = 6, dim: int = 5, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=g)
    return feats, labels


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_label_smoothed_cross_entropy(eps):
    logits, labels = _class_batch()
    logits.requires_grad_(True)
    loss = CrossEntropyLoss(epsilon=eps)
    assert loss(logits, labels).item() == pytest.approx(ref_ce(logits.tolist(), labels.tolist(), eps), rel=1e-12)
    assert torch.autograd.gradcheck(lambda v: loss(v, labels), (logits,))


def _proxy_cosine(feats: torch.Tensor, weight: torch.Tensor) -> Matrix:
    return [[sum(a * b for a, b in zip(f, w)) / math.sqrt(sum(a * a for a in f) * sum(b * b for b in w))
             for w in weight.tolist()] for f in feats]


@pytest.mark.parametrize("m,gamma", [(0.25, 128.0), (0.25, 256.0), (0.35, 64.0)])
def test_class_level_circle(m, gamma):
    feats, labels = _class_batch()
    cls = CircleClassifier(5, 4, scale=gamma, margin=m).double()
    ce = CrossEntropyLoss(epsilon=0.0)
    x = feats.clone().requires_grad_(True)
    value = ce(cls(x, labels), labels)
    (grad,) = torch.autograd.grad(value, x)
    cos0 = _proxy_cosine(feats.tolist(), cls.weight.detach())
    assert value.item() == pytest.approx(ref_class_circle(cos0, labels.tolist(), m, gamma), rel=1e-12)
    frozen = numeric_grad(lambda v: ref_class_circle(_proxy_cosine(v, cls.weight.detach()), labels.tolist(), m,
                                                     gamma, a_from=cos0), feats)
    assert_grad(grad, frozen)
    # the public helper gives the same logits; CE over them is the Circle loss
    cosine = torch.tensor(cos0, dtype=torch.float64)
    torch.testing.assert_close(circle_logits(cosine, labels, m, gamma), cls(feats, labels))
    a_p = torch.relu(1 + m - cosine)
    a_n = torch.relu(cosine + m)
    expected = torch.where(F.one_hot(labels, 4).bool(), gamma * a_p * (cosine - 1 + m), gamma * a_n * (cosine - m))
    torch.testing.assert_close(circle_logits(cosine, labels, m, gamma), expected)


def test_cosface():
    feats, labels = _class_batch(8)
    cls = CosFaceClassifier(5, 4, scale=64.0, margin=0.35).double()
    ce = CrossEntropyLoss(epsilon=0.0)
    cos = _proxy_cosine(feats.tolist(), cls.weight.detach())
    logits = [[64.0 * (c - 0.35 * (k == y)) for k, c in enumerate(row)] for row, y in zip(cos, labels.tolist())]
    assert ce(cls(feats, labels), labels).item() == pytest.approx(ref_ce(logits, labels.tolist(), 0.0), rel=1e-12)
    x = feats.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: ce(cls(v, labels), labels), (x,))
    weight = cls.weight.detach().clone().requires_grad_(True)  # proxies get the right gradient too
    assert torch.autograd.gradcheck(
        lambda w: ce(torch.func.functional_call(cls, {"weight": w}, (feats, labels)), labels), (weight,))
