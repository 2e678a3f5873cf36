"""The public Protocol: one object gives every metric the split, the same numbers as the loose ids; the distance
histogram counted in the evaluation's own pass equals a brute-force count over the whole distance matrix."""
import numpy as np
import pytest
import torch

from reid.evaluation import (REMOVAL_RULES, EvaluationError, PairHistogram, Protocol, RemovalRule, chance_level,
                             compute_distance, evaluate, evaluate_rank, evaluate_verification, match_ranks,
                             topk_valid)
from reid.evaluation import histogram as histogram_module
from reid.evaluation.extract import Features
from reid.evaluation.protocol import SAME_IMAGE
from reid.evaluation import testsets
from tests.evaluation.test_eval_rank import assert_same, brute_force_rank, random_case, same_image_case


def brute_force_histogram(dist, q_pids, g_pids, q_keys, g_keys, upper, bins):
    """Every pair of the full matrix, one at a time: left out when the query or the gallery item is junk or the
    item has the query's pid and key (camera / image id; no keys: nothing); then true = same pid."""
    true, false = [], []
    for i in range(dist.shape[0]):
        for j in range(dist.shape[1]):
            if q_pids[i] == -1 or g_pids[j] == -1:
                continue
            same = q_pids[i] == g_pids[j]
            if same and q_keys is not None and q_keys[i] == g_keys[j]:
                continue
            (true if same else false).append(dist[i, j])

    def count(values):
        values = torch.tensor(values, dtype=torch.float32).clamp(0.0, upper)
        return torch.histc(values, bins=bins, min=0.0, max=upper).double().numpy()

    return count(true), count(false)


def _features(seed, num_q=30, num_g=120, num_ids=12):
    """Features clustered by identity, junk and distractors in the gallery, a junk query."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(-1, num_ids + 1, num_g)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    q_pids[3] = -1
    centres = torch.randn(num_ids + 2, 16, generator=gen)
    q = centres[torch.as_tensor(q_pids).clamp(min=0)] + 0.7 * torch.randn(num_q, 16, generator=gen)
    g = centres[torch.as_tensor(g_pids).clamp(min=0)] + 0.7 * torch.randn(num_g, 16, generator=gen)
    return q, g, q_pids, g_pids, rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_histogram_of_the_ranking_pass_equals_brute_force(seed, metric):
    q, g, q_pids, g_pids, q_cams, g_cams = _features(seed)
    upper = 2.0 if metric == "cosine" else float(q.norm(dim=1).max() + g.norm(dim=1).max())
    protocol = Protocol(q_pids, g_pids, q_cams, g_cams)
    histogram = PairHistogram(protocol, upper=upper, bins=64)
    result = evaluate(q, g, metric=metric, chunk_size=7, protocol=protocol, observe=histogram.add)
    h = histogram.result()
    dist = compute_distance(q, g, metric).numpy()
    true, false = brute_force_histogram(dist, q_pids, g_pids, q_cams, g_cams, upper, 64)
    np.testing.assert_array_equal(h.true_counts, true)
    np.testing.assert_array_equal(h.false_counts, false)
    assert h.num_true > 0 and h.num_false > 10 * h.num_true and (h.num_queries, h.num_query_total) == (30, 30)
    np.testing.assert_allclose(h.edges, np.linspace(0.0, upper, 65))
    assert_same(result, brute_force_rank(dist, q_pids, g_pids, q_cams, g_cams))  # the observer changes nothing


def test_histogram_under_same_image_removal_sampled_queries_and_small_histc_parts(monkeypatch):
    """Same-image removal, every other query counted (max_queries), histc in parts of 7 values: still exact."""
    monkeypatch.setattr(histogram_module, "_HISTC_VALUES", 7)
    (dist, q_pids, g_pids, q_cams, g_cams), q_ids, g_ids = same_image_case(3, num_q=20, num_g=90, levels=9)
    protocol = Protocol(q_pids, g_pids, q_cams, g_cams, rule=SAME_IMAGE, q_image_ids=q_ids, g_image_ids=g_ids)
    histogram = PairHistogram(protocol, upper=1.0, bins=16, max_queries=10)
    evaluate_rank(dist, chunk_size=3, protocol=protocol)  # the matrix is valid; histogram fed block by block
    for start in range(0, 20, 3):
        histogram.add(start, torch.as_tensor(dist[start:start + 3]))
    h = histogram.result()
    rows = np.linspace(0, 19, 10).round().astype(int)
    true, false = brute_force_histogram(dist[rows], q_pids[rows], g_pids, q_ids[rows], g_ids, 1.0, 16)
    np.testing.assert_array_equal(h.true_counts, true)
    np.testing.assert_array_equal(h.false_counts, false)
    assert (h.num_queries, h.num_query_total) == (10, 20)


@pytest.mark.parametrize("seed", range(4))
def test_a_protocol_gives_the_numbers_of_the_loose_ids(seed):
    dist, q_pids, g_pids, q_cams, g_cams = random_case(seed, levels=9 if seed % 2 else None)
    protocol = Protocol(q_pids, g_pids, q_cams, g_cams)
    reference = brute_force_rank(dist, q_pids, g_pids, q_cams, g_cams)
    assert_same(evaluate_rank(dist, protocol=protocol, chunk_size=7), reference)
    assert chance_level(protocol) == chance_level(q_pids, g_pids, q_cams, g_cams)
    loose = evaluate_verification(dist, q_pids, g_pids, q_cams, g_cams, far=0.1)
    assert evaluate_verification(dist, protocol, far=0.1).as_dict() == loose.as_dict()
    # A query subset is the protocol of those rows: the ranked-list pieces of chosen queries.
    rows = [5, 0, 17, 33]
    chosen = protocol.subset(rows)
    assert chosen.num_query == 4 and torch.equal(chosen.q_pids, torch.as_tensor(q_pids[rows]))
    np.testing.assert_array_equal(topk_valid(dist[rows], chosen, k=6).indices,
                                  topk_valid(dist[rows], q_pids[rows], g_pids, q_cams[rows], g_cams, k=6).indices)
    for got, want in zip(match_ranks(dist[rows], chosen),
                         match_ranks(dist[rows], q_pids[rows], g_pids, q_cams[rows], g_cams)):
        np.testing.assert_array_equal(got.ranks, want.ranks)
        np.testing.assert_array_equal(got.gallery, want.gallery)


def test_same_image_protocol_and_its_subset():
    case, q_ids, g_ids = same_image_case(1)
    protocol = Protocol(*case[1:], rule=SAME_IMAGE, q_image_ids=q_ids, g_image_ids=g_ids, reason="one camera")
    assert (protocol.name, protocol.reason, protocol.cross_camera) == (SAME_IMAGE, "one camera", False)
    ids = dict(cross_camera=False, q_image_ids=q_ids, g_image_ids=g_ids)
    assert_same(evaluate_rank(case[0], protocol=protocol), brute_force_rank(*case, **ids))
    rows = np.arange(0, 40, 3)
    sub = brute_force_rank(case[0][rows], case[1][rows], case[2], case[3][rows], case[4], cross_camera=False,
                           q_image_ids=q_ids[rows], g_image_ids=g_ids)
    assert_same(evaluate_rank(case[0][rows], protocol=protocol.subset(rows)), sub)


def test_a_new_removal_rule_needs_no_new_signature(monkeypatch):
    """A rule is a table entry: here "nothing but junk", which is same-image removal without image ids."""
    monkeypatch.setitem(REMOVAL_RULES, "junk only", RemovalRule("junk only", None, "same pid, not junk"))
    case = random_case(5)
    protocol = Protocol(*case[1:], rule="junk only")
    assert_same(evaluate_rank(case[0], protocol=protocol), brute_force_rank(*case, cross_camera=False))
    assert chance_level(protocol) == chance_level(*case[1:], cross_camera=False)


def test_protocol_errors():
    dist, q_pids, g_pids, q_cams, g_cams = random_case(2)
    protocol = Protocol(q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(EvaluationError, match="unknown removal rule 'same-tracklet'"):
        Protocol(q_pids, g_pids, q_cams, g_cams, rule="same-tracklet")
    with pytest.raises(EvaluationError, match="q_camids has 39 entries but 40 were expected"):
        Protocol(q_pids, g_pids, q_cams[:39], g_cams)
    with pytest.raises(EvaluationError, match="distance matrix is 39 x 300 but the protocol has 40 queries"):
        evaluate_rank(dist[:39], protocol=protocol)
    with pytest.raises(EvaluationError, match="cross_camera: a Protocol already chooses the rule"):
        evaluate_rank(dist, protocol=protocol, cross_camera=False)
    with pytest.raises(EvaluationError, match="expected a Protocol or the four id arrays"):
        evaluate_rank(dist, q_pids, protocol=protocol)
    with pytest.raises(EvaluationError, match="query set is empty"):
        protocol.subset([])


def test_a_test_set_result_defaults_to_the_cross_camera_protocol_of_its_features():
    q = Features(torch.randn(3, 4), torch.tensor([1, 2, 3]), torch.tensor([0, 0, 1]), ["a", "b", "c"])
    g = Features(torch.randn(4, 4), torch.tensor([1, 2, 3, 3]), torch.tensor([1, 1, 0, 1]), ["d", "e", "f", "h"])
    result = evaluate(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, max_rank=4)
    ev = testsets.TestSetResult("toy", result, None, q, g)
    assert ev.protocol.cross_camera and torch.equal(ev.protocol.g_camids, g.camids)
    assert evaluate(q.feats, g.feats, max_rank=4, protocol=ev.protocol).mAP == result.mAP
