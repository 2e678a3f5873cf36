"""Pictures of verification and of the protocol: the distance histogram follows the test set's protocol, the
report shows the ROC, the thresholds, each set's protocol and the identities' names."""
from __future__ import annotations

import json
import re

import numpy as np
import torch

from reid.evaluation import PairHistogram, Protocol, chance_level, distance_histogram, evaluate
from reid.evaluation.extract import Features
from reid.evaluation import testsets
from reid.evaluation.protocol import SAME_IMAGE
from reid.evaluation.verification import verify
from tests.visualization.test_visualization import _solid, assert_links_resolve


def test_histogram_follows_same_image_removal():
    """Without cameras: only the query's own image is removed (not every same-camera view), junk queries left out."""
    rng = np.random.default_rng(0)
    dist = torch.as_tensor(rng.random((6, 20)))
    q_pids, g_pids = np.array([1, 2, 3, -1, 1, 2]), rng.integers(-1, 4, 20)
    g_pids[:6] = q_pids
    q_img, g_img = np.arange(6), np.concatenate([np.arange(6), 100 + np.arange(14)])
    cams_q, cams_g = np.full(6, -1), np.full(20, -1)
    h = distance_histogram([(0, dist[:4]), (4, dist[4:])], q_pids, g_pids, cams_q, cams_g, upper=1.0, bins=50,
                           cross_camera=False, q_image_ids=q_img, g_image_ids=g_img)
    qp, gp = q_pids[:, None], g_pids[None, :]
    valid = (gp != -1) & (qp != -1) & ~((qp == gp) & (q_img[:, None] == g_img[None, :]))
    assert h.num_true == int((valid & (qp == gp)).sum()) and h.num_false == int((valid & (qp != gp)).sum())


def _evals(tmp_path):
    """A same-image-removal test set with named identities and unknown cameras, verification included."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=gen)
    q_pids, g_pids = torch.tensor([0, 1, 2, 3]) + 1, torch.tensor([1, 1, 2, 2, 3, 3, 4, 4, 0, 0])
    qf = centres[q_pids - 1] + 0.8 * torch.randn(4, 16, generator=gen)
    gf = centres[(g_pids - 1).clamp(min=0)] + 0.8 * torch.randn(10, 16, generator=gen)
    cams_q, cams_g = torch.full((4,), -1), torch.full((10,), -1)
    paths = [_solid(tmp_path / f"i{i}.png", (20 * i, 100, 200 - 10 * i)) for i in range(14)]
    q, g = Features(qf, q_pids, cams_q, paths[:4]), Features(gf, g_pids, cams_g, paths[4:])
    ids = (q.pids, g.pids, q.camids, g.camids)
    protocol = Protocol(*ids, rule=SAME_IMAGE, q_image_ids=np.arange(4), g_image_ids=10 + np.arange(10),
                        reason="4 of 14 images have no camera id")
    names = ["alice", "bob", "carol", "dave"] + ["alice"] * 2 + ["bob"] * 2 + ["carol"] * 2 + ["dave"] * 2 + [""] * 2
    histogram = PairHistogram(protocol, upper=2.0)
    ev = testsets.TestSetResult("folder:cams", evaluate(qf, gf, max_rank=10, protocol=protocol,
                                                        observe=histogram.add), None, q, g,
                       chance_level(protocol), protocol=protocol, identity_names=names,
                       verification=verify(qf, gf, protocol, far=0.2, fars=(0.2, 0.1)), histogram=histogram.result())
    return {"folder:cams": ev}


def test_report_shows_roc_thresholds_protocol_and_names(tmp_path):
    from reid.config import get_cfg
    from reid.visualization.report import write_report

    cfg = get_cfg()
    cfg.VIS.QUERIES_PER_SHEET = 2
    out = tmp_path / "run"
    evals = _evals(tmp_path)
    page = write_report(cfg, evals, out)
    links = assert_links_resolve(page)
    assert "plots/roc.png" in links and (out / "plots" / "roc.png").stat().st_size > 1000
    text = page.read_text()
    assert "same-image removal (4 of 14 images have no camera id)" in text
    ver = evals["folder:cams"].verification
    assert f"{ver.threshold_at_far['2e-1']:.4f}" in text and f"{ver.auc:.4f}" in text
    index = (out / "plots" / "worst_queries" / "index.html").read_text()
    assert re.search(r">(alice|bob|carol|dave)<", index) and ">unknown<" in index
    manifest = json.loads((out / "plots" / "worst_queries" / "worst_queries.json").read_text())
    queries = [q for s in manifest["sheets"] for q in s["queries"]]
    assert all(q["identity"] == ["alice", "bob", "carol", "dave"][q["query_index"]] for q in queries)
    assert all(t["identity"] in ("alice", "bob", "carol", "dave", "") for q in queries for t in q["top"])
