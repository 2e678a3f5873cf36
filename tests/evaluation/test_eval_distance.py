"""Blocked distances against direct float64 formulas."""
import numpy as np
import pytest
import torch

from reid.evaluation import EvaluationError, compute_distance, iter_distance_blocks


def features(seed, num, dim=24, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((num, dim)).astype(dtype)


def reference(q, g, metric):
    if metric == "euclidean":
        return np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    return 1.0 - qn @ gn.T


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_matches_formula_in_float64(metric, chunk_size):
    q, g = features(0, 23), features(1, 57)
    got = compute_distance(torch.from_numpy(q), torch.from_numpy(g), metric, chunk_size=chunk_size)
    assert got.dtype == torch.float64 and got.shape == (23, 57)
    np.testing.assert_allclose(got.numpy(), reference(q, g, metric), rtol=0, atol=1e-12)


def test_blocks_cover_the_matrix_in_order():
    q, g = features(2, 20), features(3, 9)
    whole = compute_distance(q, g)  # NumPy input is accepted
    starts = []
    for start, block in iter_distance_blocks(q, g, chunk_size=6):
        starts.append(start)
        # The same numbers up to the BLAS's summation order, which may depend on the block's shape.
        torch.testing.assert_close(block, whole[start : start + block.shape[0]], rtol=0, atol=1e-15)
    assert starts == [0, 6, 12, 18]


def test_half_precision_is_computed_in_float32():
    q, g = torch.randn(5, 8).half(), torch.randn(6, 8).half()
    got = compute_distance(q, g, "euclidean")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.cdist(q.float(), g.float()), rtol=0, atol=1e-5)


def test_identical_vectors_have_zero_distance():
    x = torch.from_numpy(features(4, 6))
    d = compute_distance(x, x, "euclidean")
    assert torch.all(d.diagonal() < 1e-6) and torch.all(d >= 0)


def test_errors():
    with pytest.raises(EvaluationError, match="unknown distance metric"):
        compute_distance(torch.ones(2, 3), torch.ones(2, 3), "manhattan")
    with pytest.raises(EvaluationError, match="dimension"):
        compute_distance(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(EvaluationError, match="2-D"):
        compute_distance(torch.ones(3), torch.ones(2, 3))
    with pytest.raises(EvaluationError, match="chunk_size"):
        compute_distance(torch.ones(2, 3), torch.ones(2, 3), chunk_size=0)


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_cuda_matches_cpu(metric):
    q, g = torch.randn(300, 64), torch.randn(1000, 64)
    cpu = compute_distance(q, g, metric)
    gpu = compute_distance(q.cuda(), g.cuda(), metric)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)


def test_evaluate_names_the_feature_rows_with_nan_or_inf():
    """The blocks of finite features cannot hold NaN (no check per block); non-finite features are named."""
    from reid.evaluation import evaluate

    g = torch.randn(30, 8)
    q = torch.randn(6, 8)
    q[4, 2] = float("nan")
    ids = (np.arange(6), np.arange(30) % 6, np.zeros(6, np.int64), np.ones(30, np.int64))
    with pytest.raises(EvaluationError, match=r"q_feats has NaN or infinite values in 1 row\(s\) \(4\)"):
        evaluate(q, g, *ids)
    g[7] = float("inf")
    with pytest.raises(EvaluationError, match=r"g_feats has NaN or infinite values in 1 row\(s\) \(7\)"):
        evaluate(q.nan_to_num(), g, *ids, metric="euclidean")
    with pytest.raises(EvaluationError, match=r"g_feats has NaN or infinite values in 1 row\(s\) \(7\)"):
        evaluate(q.nan_to_num(), g, *ids, rerank=True)  # re-ranking checks its features the same way
