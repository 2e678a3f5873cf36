"""The sort-free evaluator against a brute-force per-query implementation of the protocol (stable argsort)."""
import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

from reid.evaluation import (EvaluationError, RankResult, chance_level, compute_distance, evaluate, evaluate_rank,
                             match_ranks, topk_valid)
from reid.evaluation.table import ResultRow, format_rows
from reid.utils.errors import ReIDError

from benchmarks.references import brute_force_rank


def random_case(seed, num_q=40, num_g=300, num_ids=25, num_cams=4, levels=None, dtype=np.float64):
    """Junk (-1), distractors (0), same-camera matches, queries whose pid is absent from the gallery."""
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(-1, num_ids + 1, num_g)
    q_pids = rng.integers(1, num_ids + 6, num_q)
    g_cams, q_cams = rng.integers(0, num_cams, num_g), rng.integers(0, num_cams, num_q)
    dist = rng.random((num_q, num_g))
    if levels is not None:  # quantised: many exact ties
        dist = np.floor(dist * levels) / levels
    return dist.astype(dtype), q_pids, g_pids, q_cams, g_cams


def assert_same(result: RankResult, reference, max_rank=50):
    cmc, m_ap, m_inp, num_valid, ap, inp = reference
    assert result.cmc.shape == (max_rank,)
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    assert abs(result.mAP - m_ap) < 1e-12 and abs(result.mINP - m_inp) < 1e-12
    assert result.num_valid == num_valid
    np.testing.assert_allclose(result.ap, ap, rtol=0, atol=1e-12)  # NaN in the same places
    np.testing.assert_allclose(result.inp, inp, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("levels", [None, 7, 40])
def test_matches_brute_force(seed, levels):
    case = random_case(seed, levels=levels)
    result = evaluate_rank(*case)
    assert_same(result, brute_force_rank(*case))
    assert result.num_query == 40 and result.num_gallery == 300
    assert result.num_skipped == 40 - result.num_valid > 0


@pytest.mark.parametrize("chunk_size", [1, 3, 17, None])
def test_chunk_size_and_input_types_do_not_change_results(chunk_size):
    dist, q_pids, g_pids, q_cams, g_cams = random_case(3, levels=10)
    reference = brute_force_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5)
    tensors = [torch.from_numpy(a) for a in (dist, q_pids, g_pids, q_cams, g_cams)]
    strided = np.asfortranarray(dist)  # rows are not contiguous
    for args in ((dist, q_pids, g_pids, q_cams, g_cams), tensors, (strided, list(q_pids), g_pids, q_cams, g_cams)):
        assert_same(evaluate_rank(*args, max_rank=5, chunk_size=chunk_size), reference, max_rank=5)


def test_float32_distances_with_ties():
    case = random_case(5, levels=16, dtype=np.float32)
    assert_same(evaluate_rank(*case), brute_force_rank(*case))


def test_float64_values_that_round_together_in_float32():
    """Distinct float64 distances that collapse in float32 must still be ordered exactly."""
    dist, *ids = random_case(6)
    dist = 0.5 + np.random.default_rng(6).integers(0, 5, dist.shape) * 1e-12
    assert len(np.unique(dist.astype(np.float32))) == 1 and len(np.unique(dist)) == 5
    assert_same(evaluate_rank(dist, *ids), brute_force_rank(dist, *ids))


def test_signed_zero_and_infinite_distances():
    dist, *ids = random_case(7)
    dist = np.random.default_rng(7).choice(np.array([-0.0, 0.0, 1.0, np.inf]), size=dist.shape)
    assert_same(evaluate_rank(dist, *ids), brute_force_rank(dist, *ids))


def test_hand_computed_case():
    # gallery:      0      1      2      3      4      5
    g_pids = np.array([1, 2, 1, -1, 1, 0])
    g_cams = np.array([0, 1, 1, 1, 0, 1])
    dist = np.array([[0.1, 0.2, 0.3, 0.05, 0.3, 0.25]])
    # query pid 1 camera 0: gallery 0 and 4 are same pid + same camera (removed), 3 is junk (removed).
    # Valid ranking: 1 (pid 2), 5 (distractor), 2 (match): the only match is at rank 3.
    result = evaluate_rank(dist, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=4)
    np.testing.assert_array_equal(result.cmc, [0, 0, 1, 1])
    assert result.mAP == pytest.approx(1 / 3) and result.mINP == pytest.approx(1 / 3)


def test_max_rank_beyond_gallery_size():
    case = random_case(8, num_g=30)
    assert_same(evaluate_rank(*case, max_rank=60), brute_force_rank(*case, max_rank=60), max_rank=60)


def test_evaluate_from_features_matches_distance_matrix():
    rng = np.random.default_rng(9)
    _, q_pids, g_pids, q_cams, g_cams = random_case(9)
    q = torch.from_numpy(rng.standard_normal((40, 16)))
    g = torch.from_numpy(rng.standard_normal((300, 16)))
    for metric in ("cosine", "euclidean"):
        dist = compute_distance(q, g, metric).numpy()
        result = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, metric=metric, chunk_size=7)
        assert_same(result, brute_force_rank(dist, q_pids, g_pids, q_cams, g_cams))


def test_topk_valid_skips_removed_items():
    dist, q_pids, g_pids, q_cams, g_cams = random_case(10, levels=9)
    top = topk_valid(dist, q_pids, g_pids, q_cams, g_cams, k=5, chunk_size=6)
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        keep = (g_pids[order] != -1) & ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        np.testing.assert_array_equal(top.indices[i], order[keep][:5])
        np.testing.assert_array_equal(top.distances[i], dist[i, order[keep][:5]])


def test_result_dict_and_table():
    result = evaluate_rank(*random_case(11))
    d = result.as_dict()
    assert set(d) == {"rank1", "rank5", "rank10", "mAP", "mINP", "num_query", "num_gallery", "num_valid_query"}
    assert all(type(v) in (int, float) for v in d.values())
    assert d["rank1"] == result.cmc[0] and d["num_valid_query"] == result.num_valid
    table = format_rows([ResultRow("case", result, chance_level(*random_case(11)[1:]))])
    assert "mAP" in table and "rank-10" in table and f"{result.num_valid}/40" in table and "chance" in table
    assert f"{100 * result.cmc[9]:.2f}" in table


@pytest.mark.parametrize("levels", [None, 7])
def test_match_ranks_and_first_match_follow_the_definitions(levels):
    """Per query: every true match's rank (ties by gallery index), for any chosen rows; first-match rank."""
    dist, q_pids, g_pids, q_cams, g_cams = random_case(14, levels=levels)
    result = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    rows = [5, 0, 17, 3]
    got = match_ranks(dist[rows], q_pids[rows], g_pids, q_cams[rows], g_cams, chunk_size=3)
    for i, m in zip(rows, got):
        order = np.argsort(dist[i], kind="stable")
        keep = (g_pids[order] != -1) & ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        valid = order[keep]
        ranks = np.flatnonzero(g_pids[valid] == q_pids[i]) + 1
        np.testing.assert_array_equal(m.ranks, ranks)
        np.testing.assert_array_equal(m.gallery, valid[ranks - 1])
    for i in range(len(q_pids)):
        m = match_ranks(dist[i:i + 1], q_pids[i:i + 1], g_pids, q_cams[i:i + 1], g_cams)[0]
        assert result.first_match[i] == (m.ranks[0] if len(m.ranks) else 0)
        if len(m.ranks):
            assert abs(result.ap[i] - np.mean(np.arange(1, len(m.ranks) + 1) / m.ranks)) < 1e-12


def _exact_chance(q_pids, g_pids, q_cams, g_cams):
    """Chance level by enumerating every ordering of each query's valid gallery (exact fractions)."""
    r1, ap = [], []
    for qp, qc in zip(q_pids, q_cams):
        rel = [int(p == qp) for p, c in zip(g_pids, g_cams) if p != -1 and not (p == qp and c == qc)]
        if not any(rel):
            continue
        perms = list(itertools.permutations(rel))
        ap.append(sum(sum(Fraction(sum(p[:j + 1]), j + 1) for j in range(len(p)) if p[j]) / sum(rel)
                      for p in perms) / len(perms))
        r1.append(Fraction(sum(p[0] for p in perms), len(perms)))
    return float(sum(r1) / len(r1)), float(sum(ap) / len(ap)), len(r1)


@pytest.mark.parametrize("seed", range(6))
def test_chance_level_is_the_exact_expectation(seed):
    """The closed form against every permutation of small galleries (junk, same-camera views, no-match queries)."""
    rng = np.random.default_rng(seed)
    q_pids, q_cams = rng.integers(1, 4, 6), rng.integers(0, 2, 6)
    g_pids, g_cams = rng.integers(-1, 4, 8), rng.integers(0, 2, 8)
    rank1, m_ap, num_valid = _exact_chance(q_pids, g_pids, q_cams, g_cams)
    got = chance_level(q_pids, g_pids, q_cams, g_cams)
    assert got.num_valid == num_valid
    assert abs(got.rank1 - rank1) < 1e-12 and abs(got.mAP - m_ap) < 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_chance_level_under_same_image_removal(seed):
    """Same-image removal: the image id takes the camera's place as the key of what is removed."""
    rng = np.random.default_rng(seed)
    q_pids, q_ids = rng.integers(1, 4, 6), rng.integers(0, 4, 6)
    g_pids, g_ids = rng.integers(-1, 4, 8), rng.integers(0, 4, 8)
    cams = np.zeros(6, np.int64), np.zeros(8, np.int64)  # one camera: cross-camera would remove every match
    rank1, m_ap, num_valid = _exact_chance(q_pids, g_pids, q_ids, g_ids)
    got = chance_level(q_pids, g_pids, *cams, cross_camera=False, q_image_ids=q_ids, g_image_ids=g_ids)
    assert got.num_valid == num_valid
    assert abs(got.rank1 - rank1) < 1e-12 and abs(got.mAP - m_ap) < 1e-12


def test_chance_level_matches_random_rankings():
    """Monte Carlo through the evaluator itself: 400 random rankings of one split, as 400 copies of its queries."""
    _, q_pids, g_pids, q_cams, g_cams = random_case(15, num_q=30, num_g=60, num_ids=6)
    chance = chance_level(q_pids, g_pids, q_cams, g_cams)
    runs = 400
    dist = np.random.default_rng(0).random((runs * len(q_pids), len(g_pids)))
    result = evaluate_rank(dist, np.tile(q_pids, runs), g_pids, np.tile(q_cams, runs), g_cams, max_rank=1)
    first, ap = result.first_match.reshape(runs, -1), result.ap.reshape(runs, -1)
    valid = ~np.isnan(ap[0])
    assert valid.sum() == chance.num_valid
    r1, m_ap = (first[:, valid] == 1).mean(1), ap[:, valid].mean(1)  # one value per random ranking
    assert abs(r1.mean() - chance.rank1) < 4 * r1.std() / np.sqrt(runs)
    assert abs(m_ap.mean() - chance.mAP) < 4 * m_ap.std() / np.sqrt(runs)


def test_errors_are_reid_errors():
    dist, q_pids, g_pids, q_cams, g_cams = random_case(12)
    assert issubclass(EvaluationError, ReIDError)
    with pytest.raises(EvaluationError, match="query set is empty"):
        evaluate_rank(np.zeros((0, 300)), q_pids[:0], g_pids, q_cams[:0], g_cams)
    with pytest.raises(EvaluationError, match="none of the 40 queries"):
        evaluate_rank(dist, q_pids + 1000, g_pids, q_cams, g_cams)
    with pytest.raises(EvaluationError, match="q_pids has 39"):
        evaluate_rank(dist, q_pids[:39], g_pids, q_cams, g_cams)
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate_rank(np.where(dist > 0.99, np.nan, dist), q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(EvaluationError, match="max_rank"):
        evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=0)
    with pytest.raises(EvaluationError, match="no usable sample"):
        evaluate_rank(dist, q_pids, np.full(300, -1), q_cams, g_cams)
    with pytest.raises(EvaluationError, match="unknown distance metric"):
        evaluate(torch.ones(2, 3), torch.ones(4, 3), [1, 2], [1, 2, 1, 2], [0, 0], [1, 1, 1, 1], metric="l1")


@pytest.mark.gpu
@pytest.mark.parametrize("levels", [None, 9])
def test_cuda_matches_cpu(levels):
    dist, q_pids, g_pids, q_cams, g_cams = random_case(13, num_q=200, num_g=3000, levels=levels, dtype=np.float32)
    cpu = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    gpu = evaluate_rank(torch.from_numpy(dist).cuda(), q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_array_equal(gpu.cmc, cpu.cmc)
    np.testing.assert_allclose(gpu.ap, cpu.ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gpu.inp, cpu.inp, rtol=0, atol=1e-12)
    feats = torch.randn(3200, 64)
    q, g = feats[:200], feats[200:]
    on_cpu = evaluate(q, g, q_pids, g_pids, q_cams, g_cams)
    on_gpu = evaluate(q.cuda(), g.cuda(), q_pids, g_pids, q_cams, g_cams)
    assert abs(on_cpu.mAP - on_gpu.mAP) < 1e-5


# --------------------------------------------------------------------------------------------------------------
# Same-image removal (cross_camera=False): sets without camera ids, or from one camera


def same_image_case(seed, num_q=40, num_g=300, levels=None, unknown_cameras=True):
    """Every query is also in the gallery (shared image ids) beside other images of the same ids; cameras unknown
    (-1) or all one camera, where the cross-camera rule would remove every match."""
    dist, q_pids, g_pids, _, _ = random_case(seed, num_q, num_g, levels=levels)
    rng = np.random.default_rng(seed + 100)
    cam = -1 if unknown_cameras else 0
    q_cams, g_cams = np.full(num_q, cam), np.full(num_g, cam)
    g_image_ids = np.arange(num_q, num_q + num_g)
    own = rng.choice(num_g, size=num_q, replace=False)  # gallery position of each query's own file
    g_image_ids[own] = np.arange(num_q)
    g_pids[own] = q_pids
    dist[np.arange(num_q), own] = 0.0  # its own file is the nearest: removing it matters
    return (dist, q_pids, g_pids, q_cams, g_cams), np.arange(num_q), g_image_ids


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [None, 7])
@pytest.mark.parametrize("unknown_cameras", [True, False])
def test_same_image_removal_matches_brute_force(seed, levels, unknown_cameras):
    case, q_ids, g_ids = same_image_case(seed, levels=levels, unknown_cameras=unknown_cameras)
    ids = dict(cross_camera=False, q_image_ids=q_ids, g_image_ids=g_ids)
    result = evaluate_rank(*case, **ids)
    reference = brute_force_rank(*case, **ids)
    assert_same(result, reference)
    assert result.num_valid > 30  # every query with another image of its id in the gallery counts
    for chunk_size in (1, 7):
        assert_same(evaluate_rank(*case, chunk_size=chunk_size, **ids), reference)
    # The cross-camera rule removes every true match here.
    with pytest.raises(EvaluationError, match="same pid, other camera"):
        evaluate_rank(*case)


def test_same_image_removal_without_image_ids_removes_junk_only():
    case, _, _ = same_image_case(1)
    result = evaluate_rank(*case, cross_camera=False)
    assert_same(result, brute_force_rank(*case, cross_camera=False))
    assert result.cmc[0] == 1.0  # each query's own file (distance 0) is now its first true match


def test_same_image_removal_on_known_cameras_keeps_same_camera_matches():
    case = random_case(2, num_g=40, num_cams=2)
    q_ids, g_ids = np.arange(40), np.arange(40, 80)
    result = evaluate_rank(*case, cross_camera=False, q_image_ids=q_ids, g_image_ids=g_ids)
    assert_same(result, brute_force_rank(*case, cross_camera=False, q_image_ids=q_ids, g_image_ids=g_ids))
    cross = evaluate_rank(*case)
    assert not (np.isnan(result.ap) & ~np.isnan(cross.ap)).any() and result.num_valid > cross.num_valid


def test_evaluate_and_topk_valid_take_the_same_protocol():
    (dist, q_pids, g_pids, q_cams, g_cams), q_ids, g_ids = same_image_case(3, num_g=120)
    rng = np.random.default_rng(3)
    q, g = torch.from_numpy(rng.standard_normal((40, 8))), torch.from_numpy(rng.standard_normal((120, 8)))
    ids = dict(cross_camera=False, q_image_ids=q_ids, g_image_ids=g_ids)
    result = evaluate(q, g, q_pids, g_pids, q_cams, g_cams, chunk_size=5, **ids)
    d = compute_distance(q, g, "cosine").numpy()
    assert_same(result, brute_force_rank(d, q_pids, g_pids, q_cams, g_cams, **ids))
    top = topk_valid(dist, q_pids, g_pids, q_cams, g_cams, k=4, chunk_size=6, **ids)
    for i in range(40):
        order = np.argsort(dist[i], kind="stable")
        keep = (g_pids[order] != -1) & ~((g_pids[order] == q_pids[i]) & (g_ids[order] == q_ids[i]))
        np.testing.assert_array_equal(top.indices[i], order[keep][:4])


def test_same_image_removal_needs_both_image_id_arrays():
    case, q_ids, _ = same_image_case(4)
    with pytest.raises(EvaluationError, match="give both q_image_ids and g_image_ids"):
        evaluate_rank(*case, cross_camera=False, q_image_ids=q_ids)
    with pytest.raises(EvaluationError, match="g_image_ids has 299"):
        evaluate_rank(*case, cross_camera=False, q_image_ids=q_ids, g_image_ids=np.arange(299))


@pytest.mark.gpu
def test_same_image_removal_on_cuda_matches_cpu():
    case, q_ids, g_ids = same_image_case(5, num_q=200, num_g=3000, levels=9)
    ids = dict(cross_camera=False, q_image_ids=q_ids, g_image_ids=g_ids)
    cpu = evaluate_rank(*case, **ids)
    gpu = evaluate_rank(torch.from_numpy(case[0]).cuda(), *case[1:], **ids)
    np.testing.assert_array_equal(gpu.cmc, cpu.cmc)
    np.testing.assert_allclose(gpu.ap, cpu.ap, rtol=0, atol=1e-12)
    top = topk_valid(torch.from_numpy(case[0]).cuda(), *case[1:], k=5, **ids)
    np.testing.assert_array_equal(top.indices, topk_valid(*case, k=5, **ids).indices)
