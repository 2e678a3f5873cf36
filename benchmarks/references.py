"""Plain reference implementations of what reid computes fast: the tests check reid against them, and the
benchmarks time them as baselines (``eval_bench``, ``rerank_bench``). Written from the definitions, one query or
one sample at a time, for clarity rather than speed.
"""
import numpy as np


def brute_force_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, cross_camera=True,
                     q_image_ids=None, g_image_ids=None):
    """Definitions, one query at a time: rank by (distance, index), drop same pid + same camera and junk.

    With ``cross_camera=False``: drop same pid + same image id (nothing when no image ids are given) and junk."""
    distmat = np.asarray(distmat)
    num_q = distmat.shape[0]
    ap, inp = np.full(num_q, np.nan), np.full(num_q, np.nan)
    cmc_rows = []
    for i in range(num_q):
        order = np.argsort(distmat[i], kind="stable")
        pids, cams = g_pids[order], g_camids[order]
        if cross_camera:
            keep = (pids != -1) & ~((pids == q_pids[i]) & (cams == q_camids[i]))
        elif q_image_ids is None:
            keep = pids != -1
        else:
            keep = (pids != -1) & ~((pids == q_pids[i]) & (np.asarray(g_image_ids)[order] == q_image_ids[i]))
        matches = pids[keep] == q_pids[i]
        if not matches.any():
            continue
        ranks = np.flatnonzero(matches) + 1
        ap[i] = np.mean(np.arange(1, len(ranks) + 1) / ranks)
        inp[i] = len(ranks) / ranks[-1]
        cmc_rows.append((np.arange(1, max_rank + 1) >= ranks[0]).astype(np.float64))
    valid = ~np.isnan(ap)
    return np.mean(cmc_rows, axis=0), ap[valid].mean(), inp[valid].mean(), int(valid.sum()), ap, inp


def dense_re_ranking_reference(q_feats, g_feats, k1=20, k2=6, lambda_value=0.3, dtype=np.float64):
    """Zhong et al. (CVPR 2017) as in the authors' code, with dense N x N matrices; ties by stable argsort.

    Also the re-ranking benchmark's baseline (with dtype=np.float32, as the original code).
    """
    feats = np.concatenate([q_feats, g_feats]).astype(dtype)
    num_query, num_all = len(q_feats), len(feats)
    sq = (feats**2).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * feats @ feats.T, 0)
    np.fill_diagonal(dist, 0)
    original_dist = dist / dist.max(axis=1, keepdims=True)
    del dist
    initial_rank = np.argsort(original_dist, axis=1, kind="stable")
    V = np.zeros_like(original_dist)
    half = int(np.around(k1 / 2.0)) + 1
    for i in range(num_all):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        k_reciprocal = forward[np.where(backward == i)[0]]
        expansion = k_reciprocal
        for candidate in k_reciprocal:
            c_forward = initial_rank[candidate, :half]
            c_backward = initial_rank[c_forward, :half]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, k_reciprocal)) > 2.0 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original_dist[i, expansion])
        V[i, expansion] = weight / weight.sum()
    original_dist = original_dist[:num_query]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(num_all):
            V_qe[i] = V[initial_rank[i, :k2]].mean(axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    inv_index = [np.where(V[:, t] != 0)[0] for t in range(num_all)]
    jaccard = np.zeros_like(original_dist)
    for i in range(num_query):
        temp_min = np.zeros(num_all, dtype=dtype)
        nonzero = np.where(V[i] != 0)[0]
        for t in nonzero:
            rows = inv_index[t]
            temp_min[rows] += np.minimum(V[i, t], V[rows, t])
        jaccard[i] = 1 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + original_dist * lambda_value
    return final[:, num_query:]
