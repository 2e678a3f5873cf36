"""The single-shot CMC (CUHK03's classic metric, torchreid's ``use_metric_cuhk03``) against its definition: every
gallery that keeps one image per identity enumerated and ranked by brute force, and against torchreid's own
estimate from random draws."""
import itertools

import numpy as np
import pytest
import torch

from reid.evaluation import evaluate_rank
from reid.evaluation.protocol import Protocol
from reid.evaluation.single_shot import SingleShotCMC, single_shot_cmc


def brute_force(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Average over every gallery with one item per identity (junk and the query's same-camera images removed
    first) of the indicator "first true match within rank k", ranked by (distance, index); mean over queries."""
    cmcs = []
    for q in range(len(q_pids)):
        keep = [g for g in range(len(g_pids)) if g_pids[g] != -1 and not (g_pids[g] == q_pids[q]
                                                                              and g_cams[g] == q_cams[q])]
        if not any(g_pids[g] == q_pids[q] for g in keep):
            continue
        groups = {}
        for g in keep:
            groups.setdefault(g_pids[g], []).append(g)
        total, draws = np.zeros(max_rank), 0
        for chosen in itertools.product(*groups.values()):
            order = sorted(chosen, key=lambda g: (dist[q, g], g))
            rank = next(i for i, g in enumerate(order) if g_pids[g] == q_pids[q])
            total += np.arange(max_rank) >= rank
            draws += 1
        cmcs.append(total / draws)
    return np.mean(cmcs, axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_shot_cmc_equals_the_average_over_every_one_per_identity_gallery(seed):
    rng = np.random.default_rng(seed)
    num_q, num_g = 5, 11
    q_pids = rng.integers(1, 4, num_q)
    g_pids = np.concatenate([np.arange(1, 5), rng.integers(0, 5, num_g - 5), [-1]])  # distractors 0, one junk
    q_cams = rng.integers(0, 2, num_q)
    g_cams = np.concatenate([[2] * 4, rng.integers(0, 2, num_g - 4)])  # every query has a match in camera 2
    dist = rng.integers(0, 6, (num_q, num_g)).astype(np.float32)  # small integers: many exact ties
    expected = brute_force(dist, q_pids, g_pids, q_cams, g_cams, 8)
    got = single_shot_cmc(dist, q_pids, g_pids, q_cams, g_cams, max_rank=8, chunk_size=2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_one_image_per_identity_gives_the_standard_cmc_and_apply_keeps_map():
    rng = np.random.default_rng(3)
    g_pids = np.arange(30)
    q_pids = rng.integers(0, 30, 12)
    dist = rng.random((12, 30)).astype(np.float32)
    plain = evaluate_rank(dist, q_pids, g_pids, np.zeros(12, int), np.ones(30, int), max_rank=10)
    observer = SingleShotCMC(Protocol(q_pids, g_pids, np.zeros(12, int), np.ones(30, int)), max_rank=10)
    observer.add(0, torch.from_numpy(dist))
    single = observer.apply(plain)
    np.testing.assert_allclose(single.cmc, plain.cmc, atol=1e-12)
    assert single.mAP == plain.mAP and single.num_valid == plain.num_valid


def test_single_shot_cmc_agrees_with_torchreids_random_draws():
    rank = pytest.importorskip("torchreid.reid.metrics.rank")
    rng = np.random.default_rng(4)
    num_q, num_g = 12, 48
    g_pids = rng.integers(0, 8, num_g)
    q_pids = rng.choice(np.unique(g_pids), num_q)
    q_cams, g_cams = rng.integers(0, 2, num_q), rng.integers(0, 2, num_g)
    dist = rng.random((num_q, num_g)).astype(np.float32)  # no ties: torchreid's argsort is not stable
    ours = single_shot_cmc(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    np.random.seed(0)
    draws = [rank.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10, use_metric_cuhk03=True,
                                use_cython=False)[0] for _ in range(100)]  # 10 draws per query each
    estimate = np.mean(draws, axis=0)
    # 1000 draws per query, 12 queries: the standard error of a CMC value is below 0.005.
    np.testing.assert_allclose(ours[:len(estimate)], estimate, atol=0.02)  # torchreid stops at 8 identities
    assert np.abs(ours - evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10).cmc).max() > 0.1


def brute_force_map(dist, q, g, removed):
    """mAP by the definition: per query, the gallery without junk and ``removed(i, j)`` items, ranked by
    (distance, index); AP = mean over true matches of precision at their ranks."""
    aps = []
    for i in range(len(q)):
        order = sorted((j for j in range(len(g)) if g[j].pid != -1 and not removed(i, j)),
                       key=lambda j: (dist[i, j], j))
        hits = [k + 1 for k, j in enumerate(order) if g[j].pid == q[i].pid]
        if hits:
            aps.append(np.mean([(n + 1) / rank for n, rank in enumerate(hits)]))
    return float(np.mean(aps))


@pytest.mark.parametrize("cross_camera", [True, False])
def test_cuhk03_classic_query_equals_gallery_and_a_query_never_matches_its_own_image(tmp_path, cross_camera):
    """The classic split stores query and gallery as the same records: each query is also in the gallery, at
    distance 0 here. Cross-camera: its own view's images (itself included) are removed; same-image removal: only
    itself."""
    from tests.data.test_data_standard import cfg_for
    from tests.support import dataset_trees as trees
    from reid.data import build_test_set

    trees.write_cuhk03(tmp_path)
    cfg = cfg_for(tmp_path, CUHK03__CLASSIC_SPLIT=True, TESTS=["CUHK03"])
    cfg.TEST.CROSS_CAMERA = cross_camera
    test = build_test_set(cfg, "CUHK03")
    q, g = test.query, test.gallery
    assert [r.path for r in q] == [r.path for r in g]
    dist = np.random.default_rng(0).random((len(q), len(g))).astype(np.float32)
    np.fill_diagonal(dist, 0.0)
    ids = np.asarray(test.image_ids) if test.image_ids is not None else None
    protocol = Protocol([r.pid for r in q], [r.pid for r in g], [r.camid for r in q], [r.camid for r in g],
                        rule=test.protocol.name, q_image_ids=None if ids is None else ids[:len(q)],
                        g_image_ids=None if ids is None else ids[len(q):])
    result = evaluate_rank(dist, protocol=protocol)
    if cross_camera:
        removed = lambda i, j: g[j].pid == q[i].pid and g[j].camid == q[i].camid  # noqa: E731
    else:
        removed = lambda i, j: g[j].path == q[i].path  # noqa: E731
    assert result.mAP == pytest.approx(brute_force_map(dist, q, g, removed), abs=1e-12)
    assert result.cmc[0] < 1.0  # the query at distance 0 is not counted as its own first match
