"""Verification metrics (AUC, EER, TAR / threshold at FAR) against a brute-force sort of all pairs."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from reid.evaluation import evaluate
from reid.evaluation.distance import EvaluationError, compute_distance
from reid.evaluation.verification import (FARS, VerificationCounter, evaluate_verification, far_key, verify)


def brute_pairs(dist, q_pids, g_pids, q_cams, g_cams, cross_camera=True, q_img=None, g_img=None):
    """(true distances, false distances) of every valid pair, by the protocol's definition, float32."""
    dist = np.asarray(dist, dtype=np.float32)
    trues, falses = [], []
    for i in range(dist.shape[0]):
        if q_pids[i] == -1:
            continue
        for j in range(dist.shape[1]):
            if g_pids[j] == -1:
                continue
            same = q_pids[i] == g_pids[j]
            if same and cross_camera and q_cams[i] == g_cams[j]:
                continue
            if same and not cross_camera and q_img is not None and q_img[i] == g_img[j]:
                continue
            (trues if same else falses).append(dist[i, j])
    return np.array(trues, dtype=np.float32), np.array(falses, dtype=np.float32)


def brute_metrics(trues, falses, fars):
    """AUC by comparing every true with every false pair; thresholds from the sorted false distances; EER from
    the operating points at every distinct distance joined by straight segments."""
    t, f = trues.astype(np.float64), falses.astype(np.float64)
    auc = ((t[:, None] < f[None, :]).sum() + 0.5 * (t[:, None] == f[None, :]).sum()) / (len(t) * len(f))
    fs = np.sort(falses)
    out = {}
    for far in fars:
        m = math.floor(Fraction(repr(far)) * len(f))
        thr = np.nextafter(fs[m], np.float32(-np.inf))
        assert (falses <= thr).sum() / len(f) <= far  # the definition: FAR at the threshold within the target
        assert (falses <= fs[m]).sum() / len(f) > far  # and the next float32 up exceeds it
        out[far_key(far)] = (float(thr), float((trues <= thr).mean()))
    values = np.unique(np.concatenate([trues, falses]))
    pts = [(0.0, 0.0)] + [((falses <= v).mean(), (trues <= v).mean()) for v in values]
    eer = None
    for (a0, b0), (a1, b1) in zip(pts[:-1], pts[1:]):
        s0, s1 = a0 + b0, a1 + b1
        if s0 <= 1.0 <= s1 and s1 > s0:
            eer = a0 + (1.0 - s0) / (s1 - s0) * (a1 - a0)
            break
    return auc, out, eer


def random_case(seed, nq=13, ng=61, ties=False, junk=True, ncams=3):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, 6, nq)
    g_pids = rng.integers(0, 6, ng)
    if junk:
        g_pids[rng.random(ng) < 0.1] = -1
    q_cams, g_cams = rng.integers(0, ncams, nq), rng.integers(0, ncams, ng)
    if ties:
        dist = rng.integers(0, 12, (nq, ng)).astype(np.float64) / 8  # many exact ties
    else:
        dist = rng.random((nq, ng)) + (q_pids[:, None] != g_pids[None, :]) * 0.4
    return dist, q_pids, g_pids, q_cams, g_cams


FAR_SET = (0.3, 0.1, 0.05, 1e-2)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_against_brute_force(seed, ties):
    dist, qp, gp, qc, gc = random_case(seed, ties=ties)
    res = evaluate_verification(dist, qp, gp, qc, gc, fars=FAR_SET, far=0.1, chunk_size=4)
    trues, falses = brute_pairs(dist, qp, gp, qc, gc)
    auc, at, eer = brute_metrics(trues, falses, FAR_SET)
    assert res.num_true == len(trues) and res.num_false == len(falses)
    assert res.auc == pytest.approx(auc, abs=1e-9)
    for key, (thr, tar) in at.items():
        assert res.threshold_at_far[key] == thr  # exactly
        assert res.tar_at_far[key] == tar
    assert res.eer == pytest.approx(eer, abs=1e-12)
    assert res.threshold == at["1e-1"][0]
    # The ROC polyline's area is the Mann-Whitney AUC (ties: diagonal steps = one half).
    assert np.trapezoid(res.roc_tar, res.roc_far) == pytest.approx(auc, abs=1e-12)


def test_same_image_protocol_and_junk_queries():
    dist, qp, gp, qc, gc = random_case(7, ties=True)
    qp[2] = -1  # a junk query takes no part
    q_img = np.arange(len(qp))
    g_img = np.concatenate([q_img[:5], 100 + np.arange(len(gp) - 5)])  # the first queries are in the gallery too
    gp[:5] = qp[:5]
    gp[2] = 3
    res = evaluate_verification(dist, qp, gp, qc, gc, cross_camera=False, q_image_ids=q_img, g_image_ids=g_img,
                                fars=FAR_SET, far=0.1)
    trues, falses = brute_pairs(dist, qp, gp, qc, gc, cross_camera=False, q_img=q_img, g_img=g_img)
    auc, at, eer = brute_metrics(trues, falses, FAR_SET)
    assert (res.num_true, res.num_false) == (len(trues), len(falses))
    assert res.auc == pytest.approx(auc, abs=1e-9) and res.eer == pytest.approx(eer, abs=1e-12)
    assert {k: v for k, v in res.threshold_at_far.items()} == {k: v[0] for k, v in at.items()}


def test_values_outside_the_window_and_negative_zero():
    """Distances spanning far more than the window's four binades (kept as values) and -0.0 (equal to +0.0)."""
    rng = np.random.default_rng(3)
    dist = np.exp(rng.uniform(-30, 10, (20, 300))).astype(np.float32)
    dist[0, :5] = -0.0
    dist[1, :5] = 0.0
    dist[2, :3] = -1e-7
    qp, gp = rng.integers(1, 4, 20), rng.integers(1, 4, 300)
    qc, gc = np.zeros(20, np.int64), np.ones(300, np.int64)
    res = evaluate_verification(dist, qp, gp, qc, gc, fars=FAR_SET, far=0.1)
    auc, at, eer = brute_metrics(*brute_pairs(dist, qp, gp, qc, gc), FAR_SET)
    assert res.auc == pytest.approx(auc, abs=1e-9) and res.eer == pytest.approx(eer, abs=1e-12)
    assert {k: (res.threshold_at_far[k], res.tar_at_far[k]) for k in at} == at


@pytest.mark.parametrize("rows_per_block, single", [(4, False), (80, True)],
                         ids=["wrap-across-blocks", "wrap-within-a-block"])
@pytest.mark.parametrize("threads", [1, 2])
def test_byte_counters_that_wrap_are_emptied_into_exact_totals(monkeypatch, rows_per_block, single, threads):
    """41 distinct float32 distances around 1.0 over 32,000 pairs: ~780 equal values each, beyond a byte
    counter's 255. Blocks of 4 rows wrap a byte after some adds (undone, emptied into the totals, counted again);
    one block of 80 rows wraps bytes by itself (counted into the exact totals directly). Both give the brute
    force's exact counts."""
    from reid.evaluation import verification

    rng = np.random.default_rng(11)
    dist = (np.float32(1.0).view(np.int32) + rng.integers(-20, 21, (80, 400)).astype(np.int32)).view(np.float32)
    qp, gp = rng.integers(1, 6, 80), rng.integers(-1, 6, 400)
    qc, gc = rng.integers(0, 3, 80), rng.integers(0, 3, 400)
    paths = {"emptied": 0, "direct": 0}
    real_empty, real_count = verification._Float32Counts._empty, verification._Float32Counts._count

    def empty(self):
        paths["emptied"] += 1
        return real_empty(self)

    def count(self, counts, *args, **kwargs):
        paths["direct"] += counts is self.totals  # into the exact totals
        return real_count(self, counts, *args, **kwargs)

    monkeypatch.setattr(verification._Float32Counts, "_empty", empty)
    monkeypatch.setattr(verification._Float32Counts, "_count", count)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # one counting part per thread
    try:
        res = evaluate_verification(dist, qp, gp, qc, gc, fars=FAR_SET, far=0.1, chunk_size=rows_per_block)
    finally:
        torch.set_num_threads(before)
    assert paths["emptied"] > 0 and (paths["direct"] > 0) == single
    trues, falses = brute_pairs(dist, qp, gp, qc, gc)
    auc, at, eer = brute_metrics(trues, falses, FAR_SET)
    assert (res.num_true, res.num_false) == (len(trues), len(falses))
    assert res.auc == pytest.approx(auc, abs=1e-12) and res.eer == pytest.approx(eer, abs=1e-12)
    assert {k: (res.threshold_at_far[k], res.tar_at_far[k]) for k in at} == at


def test_values_inside_the_window_with_ties():
    """Float32 distances a few thousand numbers apart around 1.0: every one is counted in the window, with ties."""
    rng = np.random.default_rng(5)
    bits = np.float32(1.0).view(np.int32) + rng.integers(-1500, 1500, (30, 200)).astype(np.int32)
    dist = bits.view(np.float32)
    qp, gp = rng.integers(1, 4, 30), rng.integers(0, 4, 200)
    qc, gc = rng.integers(0, 2, 30), rng.integers(0, 2, 200)
    res = evaluate_verification(dist, qp, gp, qc, gc, fars=FAR_SET, far=0.1, chunk_size=8)
    auc, at, eer = brute_metrics(*brute_pairs(dist, qp, gp, qc, gc), FAR_SET)
    assert res.auc == pytest.approx(auc, abs=1e-9) and res.eer == pytest.approx(eer, abs=1e-12)
    assert {k: (res.threshold_at_far[k], res.tar_at_far[k]) for k in at} == at


def test_features_share_the_rank_pass():
    """From features: the blocks evaluate ranks also feed the counter; equal to the brute force on the matrix."""
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(40, 16, generator=gen), torch.randn(300, 16, generator=gen)
    qp, gp = torch.randint(1, 9, (40,), generator=gen), torch.randint(0, 9, (300,), generator=gen)
    qc, gc = torch.randint(0, 3, (40,), generator=gen), torch.randint(0, 3, (300,), generator=gen)
    counter = VerificationCounter(qp, gp, qc, gc, far=1e-2)
    evaluate(q, g, qp, gp, qc, gc, chunk_size=7, observe=counter.add)
    shared = counter.result()
    alone = verify(q, g, qp, gp, qc, gc, far=1e-2, chunk_size=11)
    dist = compute_distance(q, g).numpy()
    auc, at, eer = brute_metrics(*brute_pairs(dist, qp.numpy(), gp.numpy(), qc.numpy(), gc.numpy()), FARS)
    for res in (shared, alone):
        assert res.auc == pytest.approx(auc, abs=1e-9) and res.eer == pytest.approx(eer, abs=1e-12)
        assert {k: (res.threshold_at_far[k], res.tar_at_far[k]) for k in at} == at


@pytest.mark.parametrize("far", [0.0, 1.0, -1e-3, 2, float("nan")])
def test_far_outside_the_open_interval(far):
    dist, qp, gp, qc, gc = random_case(0)
    with pytest.raises(EvaluationError, match="in \\(0, 1\\)"):
        evaluate_verification(dist, qp, gp, qc, gc, far=far)
    with pytest.raises(EvaluationError, match="in \\(0, 1\\)"):
        evaluate_verification(dist, qp, gp, qc, gc, fars=(far,))


def test_far_keys_and_json():
    assert [far_key(f) for f in (1e-2, 1e-3, 1e-4, 5e-4, 0.25)] == ["1e-2", "1e-3", "1e-4", "5e-4", "2.5e-1"]
    dist, qp, gp, qc, gc = random_case(1)
    d = evaluate_verification(dist, qp, gp, qc, gc).as_dict()
    assert set(d["tar_at_far"]) == {"1e-2", "1e-3", "1e-4"} and d["far"] == "1e-3"
    assert d["threshold"] == d["threshold_at_far"]["1e-3"]


def test_no_false_pairs_gives_nan_not_an_error():
    dist = np.random.default_rng(0).random((3, 4))
    res = evaluate_verification(dist, [1, 1, 1], [1, 1, 1, 1], [0, 0, 0], [1, 1, 1, 1])
    assert res.num_false == 0 and math.isnan(res.auc) and res.as_dict()["auc"] is None


@pytest.mark.parametrize("value", ["0.0", "1.0", "-0.001", "1.5"])
def test_verify_far_outside_the_open_interval_names_the_key(value):
    from reid.config import load_cfg
    from reid.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"TEST\.VERIFY_FAR must be a false-accept rate in \(0, 1\)"):
        load_cfg(None, ["TEST.VERIFY_FAR", value])


@pytest.mark.parametrize("key, value", [("TEST.AQE.QE_K", "0"), ("TEST.AQE.QE_TIME", "0"), ("TEST.AQE.ALPHA", "-1.0")])
def test_bad_aqe_keys_are_named(key, value):
    from reid.config import load_cfg
    from reid.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_cfg(None, [key, value])
