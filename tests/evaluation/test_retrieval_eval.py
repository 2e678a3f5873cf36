"""Metric learning test sets in the evaluator: a retrieval set (leave-one-out or query / gallery) is scored by
``evaluate_retrieval``'s metrics from the ranking pass's own distance blocks, its test images are embedded once, and
metrics.json, the results tables (log and HTML) and TensorBoard's score list hold its Recall@K / MAP@R /
R-precision next to a re-ID set's numbers; TEST.RECALL_KS, TEST.NMI and a retrieval TEST.BEST_METRIC are checked
before any work."""
from __future__ import annotations

import pytest
import torch

from reid.config import load_cfg
from reid.engine.evaluator import Evaluator
from reid.evaluation import RetrievalCounter, evaluate_retrieval, iter_distance_blocks
from reid.evaluation.results import SCORE_REGISTRY, score_names
from reid.evaluation.testsets import format_results, metrics_dict
from reid.modeling import build_model
from reid.utils.errors import ConfigError
from reid.visualization.html import results_table

from tests.conftest import TINY_TRAINING, one_thread
from tests.data.test_data_retrieval_sets import make_inshop

RETRIEVAL_SIZES = ["DATASETS.SYNTHETIC.IMAGES_PER_ID", "4", "DATASETS.SYNTHETIC.IMAGE_SIZE", "[32, 16]"]


class CountingModel(torch.nn.Module):
    """A model that counts the images it embeds."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, 0

    def forward(self, images, *args, **kwargs):
        self.seen += images.shape[0]
        return self.model(images, *args, **kwargs)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """An untrained tiny model on a re-ID set, a leave-one-out retrieval set and a query / gallery one (In-shop)."""
    root = tmp_path_factory.mktemp("mixed")
    make_inshop(root)
    cfg = load_cfg(None, ["DATASETS.ROOT", str(root), *TINY_TRAINING, *RETRIEVAL_SIZES, "DATASETS.TESTS",
                          "['Synthetic', 'SyntheticRetrieval', 'InShop']", "TEST.RECALL_KS", "[1, 2, 5]",
                          "TEST.NMI", "True", "OUTPUT_DIR", str(root / "out")])
    with one_thread():
        evaluator = Evaluator(cfg, torch.device("cpu"))
        model = CountingModel(build_model(cfg, 4))
        evals = evaluator.evaluate(model)
    return cfg, evaluator, evals, model.seen


def test_retrieval_sets_get_evaluate_retrievals_numbers_and_the_re_id_set_does_not(mixed):
    cfg, evaluator, evals, _ = mixed
    assert evals["Synthetic"].retrieval is None
    for name, leave_one_out in (("SyntheticRetrieval", True), ("InShop", False)):
        ev = evals[name]
        assert evaluator.test_sets[name].leave_one_out is leave_one_out and evaluator.test_sets[name].retrieval
        assert (ev.gallery is ev.query) is leave_one_out
        gallery = {} if leave_one_out else dict(gallery_feats=ev.gallery.feats, gallery_labels=ev.gallery.pids)
        expected = evaluate_retrieval(ev.query.feats, ev.query.pids, (1, 2, 5), nmi=True, nmi_seed=cfg.SEED,
                                      **gallery)
        assert ev.retrieval == expected
        assert ev.result.cmc[0] == expected["recall@1"] and ev.result.cmc[4] == expected["recall@5"]
        assert ev.protocol.name == "same-image removal" and "metric learning" in ev.protocol.reason


def test_leave_one_out_test_images_are_embedded_once(mixed):
    _, evaluator, evals, seen = mixed
    sizes = {name: len(ts.records) - (ts.num_query if ts.leave_one_out else 0)
             for name, ts in evaluator.test_sets.items()}
    assert sizes["SyntheticRetrieval"] == len(evals["SyntheticRetrieval"].query.paths) == 8 * 4
    assert seen == sum(sizes.values())


def test_metrics_json_and_tables_show_both_kinds_of_set(mixed):
    _, _, evals, _ = mixed
    metrics = metrics_dict(evals)
    reid_entry, loo, inshop = (metrics["datasets"][n] for n in ("Synthetic", "SyntheticRetrieval", "InShop"))
    assert "recall@1" not in reid_entry and "mAP" in reid_entry
    for entry, ev in ((loo, evals["SyntheticRetrieval"]), (inshop, evals["InShop"])):
        assert {k: entry[k] for k in ev.retrieval} == ev.retrieval
        assert list(entry)[:6] == ["recall@1", "recall@2", "recall@5", "map@r", "r_precision", "nmi"]
        assert entry["rank1"] == entry["recall@1"] and entry["num_gallery"] == ev.retrieval["num_gallery"]
    names = score_names(loo)  # what TensorBoard plots: recall@5 is no registered score but is one
    assert names[:6] == ["recall@1", "recall@2", "recall@5", "map@r", "r_precision", "nmi"]
    assert "mAP" in names and "num_query" not in names and score_names(reid_entry)[0] == "rank1"
    text = format_results(evals)
    re_id, retrieval = text.split("\n\nretrieval")
    assert re_id.splitlines()[0].split()[:3] == ["dataset", "rank-1", "rank-5"]
    assert [line.split()[0] for line in re_id.splitlines()[2:5]] == ["Synthetic", "SyntheticRetrieval", "InShop"]
    lines = retrieval.splitlines()
    assert lines[0].split() == ["R@1", "R@2", "R@5", "MAP@R", "RP", "NMI", "valid", "q", "gallery"]
    assert [line.split()[0] for line in lines[2:4]] == ["SyntheticRetrieval", "InShop"]
    assert lines[3].split()[1:4] == [f"{100 * inshop[f'recall@{k}']:.2f}" for k in (1, 2, 5)]
    assert lines[3].split()[-2:] == [f"{inshop['num_valid_query']}/{inshop['num_query']}", "7"]
    html = results_table(evals)
    assert html.count("<table") == 2 and "retrieval set" in html and "MAP@R" in html


def test_retrieval_scores_are_registered_and_a_re_id_first_set_refuses_them(mixed):
    cfg, evaluator, _, _ = mixed
    for name in ("recall@1", "recall@1000", "map@r", "r_precision", "nmi"):
        assert name in SCORE_REGISTRY
    evaluator.check_best_metric("mAP")
    with pytest.raises(ConfigError, match="first test set, Synthetic, is scored as a re-ID set"):
        evaluator.check_best_metric("recall@1")
    evaluator.test_sets = dict(reversed(list(evaluator.test_sets.items())))  # InShop first
    evaluator.check_best_metric("map@r")


@pytest.mark.parametrize("opts, message", [
    (["TEST.RECALL_KS", "[0, 1]"], "TEST.RECALL_KS must be positive integers in increasing order"),
    (["TEST.RECALL_KS", "[2, 1]"], "in increasing order"),
    (["TEST.RECALL_KS", "[1, 1]"], "each once"),
    (["TEST.RECALL_KS", "[]"], "TEST.RECALL_KS must be"),
    (["TEST.BEST_METRIC", "recall@16"], r"TEST.BEST_METRIC 'recall@16' needs 16 in TEST.RECALL_KS"),
    (["TEST.BEST_METRIC", "recall@3"], r"TEST.BEST_METRIC must be one of .*'recall@1'"),
    (["TEST.BEST_METRIC", "nmi"], "needs TEST.NMI True"),
    (["INPUT.CROP.RESIZE", "[256, 256, 3]"], r"INPUT.CROP.RESIZE must be \[\] \(no crop\)"),
    (["INPUT.CROP.RESIZE", "[256]", "DATALOADER.PIPELINE", "gpu"], "DATALOADER.PIPELINE gpu cannot cache"),
    (["INPUT.CROP.SCALE", "[0.0, 1.0]"], r"INPUT.CROP.SCALE must be \[min, max\] with 0 < min <= max <= 1"),
    (["INPUT.CROP.RATIO", "[2.0, 1.0]"], r"INPUT.CROP.RATIO must be \[min, max\]"),
])
def test_metric_learning_keys_are_checked_before_any_work(opts, message):
    with pytest.raises(ConfigError, match=message):
        load_cfg(None, opts)


def test_metric_learning_keys_accept_the_papers_settings():
    load_cfg(None, ["TEST.RECALL_KS", "[1, 10, 100, 1000]", "TEST.BEST_METRIC", "recall@1000", "INPUT.CROP.RESIZE",
                    "[256, 256]", "DATALOADER.PIPELINE", "gpu", "INPUT.CROP.SCALE", "[0.16, 1.0]"])
    load_cfg(None, ["TEST.NMI", "True", "TEST.BEST_METRIC", "nmi", "INPUT.CROP.RESIZE", "[256]"])


def test_counter_takes_blocks_in_any_order_and_checks_them():
    rng = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(40, 6, generator=rng), torch.randint(0, 8, (40,), generator=rng)
    counter = RetrievalCounter(labels, labels, (1, 4), leave_one_out=True)
    for start, block in reversed(list(iter_distance_blocks(feats, feats, chunk_size=7))):
        counter.add(start, block)
    assert counter.result() == evaluate_retrieval(feats, labels, (1, 4))
    with pytest.raises(Exception, match="rows of 7 queries were added, 40 expected"):
        partial = RetrievalCounter(labels, labels, (1,))
        partial.add(0, next(iter_distance_blocks(feats, feats, chunk_size=7))[1])
        partial.result()
    with pytest.raises(Exception, match="the same images"):
        RetrievalCounter(labels, labels.flip(0), (1,), leave_one_out=True)


def test_features_that_are_the_gallery_are_normalised_once(monkeypatch):
    calls = []
    normalize = torch.nn.functional.normalize
    monkeypatch.setattr(torch.nn.functional, "normalize", lambda x, *a, **k: calls.append(x) or normalize(x, *a, **k))
    feats = torch.randn(30, 5)
    same = torch.cat([b for _, b in iter_distance_blocks(feats, feats, chunk_size=8)])
    assert len(calls) == 1
    other = torch.cat([b for _, b in iter_distance_blocks(feats, feats.clone(), chunk_size=8)])
    assert len(calls) == 3 and torch.equal(same, other)
