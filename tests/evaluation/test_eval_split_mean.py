"""Metrics averaged over a protocol's splits: the mean entry of metrics.json, and ``--all-splits``' averaging of its
runs' metrics.json files."""
import json

import numpy as np
import pytest

from reid.engine.splits import average_runs
from reid.evaluation.split_mean import mean_entry, mean_result
from reid.evaluation.results import RankResult


def entry(rank1, m_ap, split=None, **more):
    out = {"rank1": rank1, "mAP": m_ap, "mINP": m_ap / 2, "num_query": 10, "protocol": "cross-camera",
           "verification": {"auc": rank1, "tar_at_far": {"1e-3": m_ap}}, **more}
    if split is not None:
        out["split_id"] = split
    return out


def test_mean_entry_averages_every_number_and_keeps_each_split():
    mean = mean_entry({2: entry(0.5, 0.2, 2, protocol_reason="a"), 0: entry(1.0, 0.4, 0, protocol_reason="b")})
    assert mean["rank1"] == 0.75 and mean["mAP"] == pytest.approx(0.3) and mean["num_query"] == 10
    assert mean["verification"] == {"auc": 0.75, "tar_at_far": {"1e-3": pytest.approx(0.3)}}
    assert mean["protocol"] == "cross-camera" and "protocol_reason" not in mean and "split_id" not in mean
    assert mean["splits"]["ids"] == [0, 2] and mean["splits"]["std"]["rank1"] == pytest.approx(0.25)
    assert mean["splits"]["per_split"]["2"]["rank1"] == 0.5


def test_mean_result_is_the_mean_curve_without_queries():
    def result(cmc, m_ap):
        return RankResult(np.array(cmc), m_ap, m_ap, 3, 4, 9, 1, np.zeros(4), np.zeros(4), np.zeros(4, np.int64))
    mean = mean_result([result([0.5, 1.0], 0.4), result([1.0, 1.0], 0.6)])
    np.testing.assert_allclose(mean.cmc, [0.75, 1.0])
    assert mean.mAP == pytest.approx(0.5) and mean.num_query == 4 and len(mean.ap) == 0


def test_average_runs_merges_disjoint_splits_and_averages_runs_otherwise(tmp_path):
    runs = {}
    for k, (a, b) in {0: (0.2, 0.4), 2: (0.6, 0.8)}.items():
        folder = tmp_path / f"split_{k}"
        folder.mkdir()
        viper = mean_entry({k: entry(a, a, k), k + 1: entry(b, b, k + 1)})  # trained on: its two directions
        prid = mean_entry({i: entry(a + i / 100, a, i) for i in range(3)})  # not trained on: every split
        (folder / "metrics.json").write_text(json.dumps({"datasets": {"VIPeR": viper, "PRID": prid,
                                                                       "Market1501": entry(a, b)}}))
        runs[k] = folder
    metrics = average_runs(runs)
    viper = metrics["datasets"]["VIPeR"]
    assert viper["splits"]["ids"] == [0, 1, 2, 3] and viper["rank1"] == pytest.approx(0.5)
    assert metrics["rank1"] == viper["rank1"] and metrics["dataset"] == "VIPeR"
    assert metrics["datasets"]["PRID"]["splits"]["ids"] == [0, 2]  # one mean per run
    assert metrics["datasets"]["PRID"]["rank1"] == pytest.approx(np.mean([0.21, 0.61]))
    assert metrics["datasets"]["Market1501"]["splits"]["ids"] == [0, 2]
    (runs[2] / "metrics.json").unlink()
    with pytest.raises(Exception, match="split_2/metrics.json is missing.*--resume"):
        average_runs(runs)
