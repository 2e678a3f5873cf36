"""Alpha query expansion: the chunked code against a dense reference and against fast-reid's own ``aqe``."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.evaluation.distance import EvaluationError
from reid.evaluation.query_expansion import alpha_query_expansion, expand_queries


def dense_aqe(q, g, qe_time, qe_k, alpha):
    """The definition in float64: every vector -> mean of its qe_k most similar vectors (itself included) among
    query + gallery, weighted by cosine similarity ** alpha."""
    feats = torch.cat([q, g]).double()
    for _ in range(qe_time):
        normed = feats / feats.norm(dim=1, keepdim=True)
        sims = normed @ normed.T
        out = torch.empty_like(feats)
        for i in range(len(feats)):
            order = torch.argsort(sims[i], descending=True)[:qe_k]
            out[i] = sum(feats[j] * sims[i, j] ** alpha for j in order.tolist()) / qe_k
        feats = out
    return feats[:len(q)], feats[len(q):]


def features(seed, nq=9, ng=40, dim=12):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, dim, generator=gen)
    q = centres[torch.randint(0, 5, (nq,), generator=gen)] + 0.5 * torch.randn(nq, dim, generator=gen)
    g = centres[torch.randint(0, 5, (ng,), generator=gen)] + 0.5 * torch.randn(ng, dim, generator=gen)
    return q, g


@pytest.mark.parametrize("qe_time, qe_k, alpha", [(1, 5, 3.0), (2, 3, 1.0), (1, 1, 3.0), (3, 7, 0.0)])
def test_chunked_equals_dense(qe_time, qe_k, alpha):
    q, g = features(qe_time * 10 + qe_k)
    got_q, got_g = alpha_query_expansion(q, g, qe_time, qe_k, alpha, chunk_size=4)
    ref_q, ref_g = dense_aqe(q, g, qe_time, qe_k, alpha)
    assert torch.allclose(got_q.double(), ref_q, atol=1e-5) and torch.allclose(got_g.double(), ref_g, atol=1e-5)


def _fastreid_aqe():
    """fast-reid's ``aqe``, loaded from its file: ``fastreid.evaluation``'s package import needs scikit-learn."""
    from tests.support.peer_models import require

    fastreid = require("fastreid")
    path = Path(fastreid.__file__).parent / "evaluation" / "query_expansion.py"
    spec = importlib.util.spec_from_file_location("fastreid_query_expansion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.aqe


@pytest.mark.parametrize("qe_time, qe_k, alpha", [(1, 5, 3.0), (2, 4, 2.0)])
def test_equals_fastreid_aqe(qe_time, qe_k, alpha):
    aqe = _fastreid_aqe()
    q, g = features(3, nq=20, ng=70, dim=16)
    ref_q, ref_g = aqe(q.clone(), g.clone(), qe_time, qe_k, alpha)
    got_q, got_g = alpha_query_expansion(q, g, qe_time, qe_k, alpha, chunk_size=8)
    assert torch.allclose(got_q, ref_q.float(), atol=1e-5) and torch.allclose(got_g, ref_g.float(), atol=1e-5)


def test_query_only_expansion_against_a_dense_reference():
    q, g = features(4)
    got = expand_queries(q, g, qe_time=2, qe_k=4, alpha=3.0)
    ref = q.double()
    gd = g.double()
    gn = gd / gd.norm(dim=1, keepdim=True)
    for _ in range(2):
        qn = ref / ref.norm(dim=1, keepdim=True)
        sims = qn @ gn.T
        top = torch.topk(sims, 3, dim=1)
        ref = (ref + sum(gd[top.indices[:, j]] * top.values[:, j, None] ** 3 for j in range(3))) / 4
    assert torch.allclose(got.double(), ref, atol=1e-5)
    # A neighbour search answering -1 (fewer neighbours than asked) leaves that slot out of the sum.
    none = expand_queries(q, g, qe_k=3, neighbours=lambda rows, k: (torch.zeros(len(rows), k),
                                                                    torch.full((len(rows), k), -1)))
    assert torch.allclose(none, q / 3)


@pytest.mark.parametrize("kwargs", [dict(qe_time=0), dict(qe_k=0), dict(alpha=-1.0), dict(alpha=float("nan"))])
def test_bad_parameters(kwargs):
    q, g = features(0)
    with pytest.raises(EvaluationError, match="query expansion"):
        alpha_query_expansion(q, g, **kwargs)
