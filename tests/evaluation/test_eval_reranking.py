"""Sparse k-reciprocal re-ranking against a plain dense NumPy reference written from the paper's algorithm."""
import numpy as np
import pytest
import torch

import reid.evaluation.reranking as reranking_module
from reid.evaluation import EvaluationError, Reranker, evaluate, evaluate_rank, re_ranking

from benchmarks.references import dense_re_ranking_reference


def clustered_features(seed, num_q=60, num_g=240, dim=32, num_ids=30, noise=0.6, normalise=True):
    """Identity centres plus noise: neighbour lists with real structure (random points have almost none)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim))
    ids = rng.integers(0, num_ids, num_q + num_g)
    feats = centres[ids] + noise * rng.standard_normal((num_q + num_g, dim))
    if normalise:
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return feats[:num_q].astype(np.float32), feats[num_q:].astype(np.float32), ids[:num_q], ids[num_q:]


@pytest.mark.parametrize(
    "k1,k2,lambda_value,normalise",
    [(20, 6, 0.3, True), (20, 1, 0.3, True), (7, 3, 0.0, True), (5, 6, 1.0, False), (12, 2, 0.5, False)],
)
def test_matches_dense_reference(k1, k2, lambda_value, normalise):
    q, g, _, _ = clustered_features(k1 + k2, normalise=normalise)
    expected = dense_re_ranking_reference(q, g, k1, k2, lambda_value)
    got = re_ranking(torch.from_numpy(q), torch.from_numpy(g), k1, k2, lambda_value)
    assert got.shape == expected.shape and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-4)


def test_float64_features_match_closely():
    q, g, _, _ = clustered_features(1, num_q=30, num_g=150)
    expected = dense_re_ranking_reference(q, g)
    got = re_ranking(torch.from_numpy(q).double(), torch.from_numpy(g).double())
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [None, 23])
def test_exact_ties_follow_the_stable_order(chunk_size):
    """Integer features: many equal distances (duplicates included), computed exactly in both versions."""
    rng = np.random.default_rng(2)
    feats = rng.integers(0, 3, (200, 6)).astype(np.float64)
    q, g = feats[:50], feats[50:]
    expected = dense_re_ranking_reference(q, g, k1=8, k2=3)
    got = re_ranking(torch.from_numpy(q), torch.from_numpy(g), k1=8, k2=3, chunk_size=chunk_size)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [23, 64])
def test_chunk_size_invariance(chunk_size):
    q, g, _, _ = clustered_features(3, num_q=40, num_g=160)
    q, g = torch.from_numpy(q), torch.from_numpy(g)
    whole = re_ranking(q, g, k1=10, k2=4)
    torch.testing.assert_close(re_ranking(q, g, k1=10, k2=4, chunk_size=chunk_size), whole, rtol=0, atol=1e-6)


def test_fewer_samples_than_k1():
    q, g, _, _ = clustered_features(4, num_q=4, num_g=9)
    expected = dense_re_ranking_reference(q, g, k1=20, k2=6)
    got = re_ranking(torch.from_numpy(q), torch.from_numpy(g), k1=20, k2=6)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-4)


def test_evaluate_with_rerank_uses_normalised_features():
    q, g, q_ids, g_ids = clustered_features(5, normalise=False)
    rng = np.random.default_rng(5)
    q_cams, g_cams = rng.integers(0, 3, len(q)), rng.integers(0, 3, len(g))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    dist = dense_re_ranking_reference(qn, gn)
    expected = evaluate_rank(dist, q_ids, g_ids, q_cams, g_cams)
    got = evaluate(torch.from_numpy(q), torch.from_numpy(g), q_ids, g_ids, q_cams, g_cams, rerank=True)
    assert abs(got.mAP - expected.mAP) < 1e-6 and abs(got.mINP - expected.mINP) < 1e-6
    np.testing.assert_allclose(got.cmc, expected.cmc, atol=1e-6)
    raw = evaluate(torch.from_numpy(q), torch.from_numpy(g), q_ids, g_ids, q_cams, g_cams, "euclidean", rerank=True)
    assert raw.mAP == evaluate_rank(re_ranking(q, g), q_ids, g_ids, q_cams, g_cams).mAP


@pytest.mark.parametrize("float64", [False, True])
def test_streamed_rows_equal_the_held_ones(float64):
    """Without the held q x g distances every block recomputes its own; blocks, rows and matrix agree with the
    dense reference and with the held version."""
    q, g, _, _ = clustered_features(7, num_q=50, num_g=170)
    if float64:
        q, g = q.astype(np.float64), g.astype(np.float64)
    expected = dense_re_ranking_reference(q, g, k1=10, k2=4)
    held = re_ranking(torch.from_numpy(q), torch.from_numpy(g), k1=10, k2=4)
    streamed = Reranker(q, g, k1=10, k2=4, chunk_size=16, hold=False)
    blocks = list(streamed.blocks())
    assert [start for start, _ in blocks] == [0, 16, 32, 48] and blocks[-1][1].shape == (2, 170)
    got = torch.cat([b for _, b in blocks])
    atol = 1e-10 if float64 else 1e-6
    torch.testing.assert_close(got, held, rtol=0, atol=atol)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10 if float64 else 1e-4)
    pick = [49, 0, 17, 17]
    torch.testing.assert_close(streamed.rows(pick), held[pick], rtol=0, atol=atol)
    torch.testing.assert_close(streamed.matrix(), held, rtol=0, atol=atol)


def test_streamed_rows_with_exact_ties():
    """Integer features (exact products, many equal distances): the recomputed rows equal the dense reference."""
    rng = np.random.default_rng(8)
    feats = rng.integers(0, 3, (150, 5)).astype(np.float64)
    q, g = feats[:40], feats[40:]
    expected = dense_re_ranking_reference(q, g, k1=8, k2=3)
    rr = Reranker(q, g, k1=8, k2=3, chunk_size=23, hold=False)
    np.testing.assert_allclose(torch.cat([b for _, b in rr.blocks()]).numpy(), expected, rtol=0, atol=1e-10)
    held = Reranker(q, g, k1=8, k2=3, hold=True)
    np.testing.assert_allclose(held.rows([39, 3]).numpy(), expected[[39, 3]], rtol=0, atol=1e-10)
    np.testing.assert_allclose(held.matrix().numpy(), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(held.rows([5]).numpy(), expected[[5]], rtol=0, atol=1e-10)  # recomputed now


def test_evaluate_streams_large_splits(monkeypatch):
    """Above HOLD_ELEMS pairs, evaluate(rerank=True) never holds the q x g distances: same metrics."""
    q, g, q_ids, g_ids = clustered_features(9)
    rng = np.random.default_rng(9)
    q_cams, g_cams = rng.integers(0, 3, len(q)), rng.integers(0, 3, len(g))
    expected = evaluate_rank(dense_re_ranking_reference(q, g), q_ids, g_ids, q_cams, g_cams)
    monkeypatch.setattr(reranking_module, "HOLD_ELEMS", 0)
    rr = reranking_module.Reranker(q, g, normalize=True)
    assert rr._held is None
    got = evaluate(torch.from_numpy(q), torch.from_numpy(g), q_ids, g_ids, q_cams, g_cams, rerank=True,
                   chunk_size=7)
    assert abs(got.mAP - expected.mAP) < 1e-6 and abs(got.mINP - expected.mINP) < 1e-6
    np.testing.assert_allclose(got.cmc, expected.cmc, atol=1e-6)


def test_invalid_parameters():
    q, g = torch.randn(5, 4), torch.randn(7, 4)
    for kwargs in ({"k1": 0}, {"k2": 0}, {"k1": 5, "k2": 7}, {"lambda_value": 1.5}):
        with pytest.raises(EvaluationError):
            re_ranking(q, g, **kwargs)
    with pytest.raises(EvaluationError, match="dimension"):
        re_ranking(q, torch.randn(7, 3))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    q, g, _, _ = clustered_features(6, num_q=300, num_g=1200, dim=64)
    q, g = torch.from_numpy(q), torch.from_numpy(g)
    cpu = re_ranking(q, g)
    previous = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # TF32 on, as training scripts often leave it
    try:
        gpu = re_ranking(q.cuda(), g.cuda(), chunk_size=500)
    finally:
        torch.backends.cuda.matmul.fp32_precision = previous
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
