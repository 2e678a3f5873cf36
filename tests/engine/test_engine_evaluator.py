"""One evaluator: the trainer's evaluations, reid-test and reid-visualize all score through
``reid.engine.evaluator.Evaluator`` (same numbers, same folder rules), and a training run parses each test set once.
A tiny CPU run through the tools' own ``main``, with the dataset parser and the evaluator spied on."""
from __future__ import annotations

import json
from collections import Counter
from typing import List

import pytest

from reid.cli import test as test_tool, train as train_tool, visualize as visualize_tool
from reid.cli.parser import run_tool
from reid.data.datasets.market1501 import NamedImageFolders
from reid.engine.evaluator import Evaluator

from tests.conftest import TINY_TRAINING, one_thread

# The training set is also a test set, and a second test set (the same images read as Market-1501) is only that.
TESTS = ["Synthetic", "Market1501:synthetic"]


class Spy:
    """Counts dataset parses by (class, entry argument) and records each evaluation's test sets."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parses: Counter = Counter()
        self.evaluations: List[List[str]] = []
        parse, evaluate = NamedImageFolders.__init__, Evaluator.evaluate

        def counted_parse(dataset, root, cfg, arg=None):
            self.parses[(type(dataset).__name__, arg)] += 1
            parse(dataset, root, cfg, arg=arg)

        def recorded_evaluate(evaluator, model, *args, **kwargs):
            self.evaluations.append(list(evaluator.test_sets))
            return evaluate(evaluator, model, *args, **kwargs)

        monkeypatch.setattr(NamedImageFolders, "__init__", counted_parse)
        monkeypatch.setattr(Evaluator, "evaluate", recorded_evaluate)

    def take(self):
        """(parses, evaluations) since the last call."""
        taken = (dict(self.parses), self.evaluations)
        self.parses, self.evaluations = Counter(), []
        return taken


def _main(main, argv) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_tool(main, argv)
    assert exit_.value.code == 0


@pytest.fixture(scope="module")
def spied_run(tmp_path_factory):
    """A 2-epoch run evaluated after each epoch, with the spy installed for the whole module."""
    root = tmp_path_factory.mktemp("evaluator")
    out = root / "run"
    with one_thread(), pytest.MonkeyPatch.context() as monkeypatch:
        spy = Spy(monkeypatch)
        _main(train_tool.main, ["DATASETS.ROOT", str(root / "data"), *TINY_TRAINING, "OUTPUT_DIR", str(out),
                                "SOLVER.MAX_EPOCHS", "2", "TEST.EVAL_PERIOD", "1", "DATASETS.TESTS", str(TESTS)])
        yield out, spy, spy.take()


def test_training_parses_each_test_set_once(spied_run):
    out, _, (parses, evaluations) = spied_run
    assert evaluations == [TESTS, TESTS]  # two evaluations, both on the test sets built at the start
    # The training set (also a test set) is parsed once for both; the other test set once for two evaluations.
    assert parses == {("Synthetic", None): 1, ("Market1501", "synthetic"): 1}
    assert set(json.loads((out / "metrics.json").read_text())["datasets"]) == set(TESTS)


def test_test_visualize_and_training_go_through_the_engine_evaluator(spied_run):
    out, spy, _ = spied_run
    trained = json.loads((out / "metrics.json").read_text())
    final = str(out / "model_final.pt")

    # reid-test of the final checkpoint, with its own config: the run's eval/model_final/, the training's numbers.
    _main(test_tool.main, ["MODEL.WEIGHTS", final])
    parses, evaluations = spy.take()
    assert evaluations == [TESTS] and parses == {("Synthetic", None): 1, ("Market1501", "synthetic"): 1}
    folder = out / "eval" / "model_final"
    tested = json.loads((folder / "metrics.json").read_text())
    assert tested["datasets"] == trained["datasets"]

    # reid-visualize of the same checkpoint: the same folder (by the same rules), the same numbers.
    _main(visualize_tool.main, ["MODEL.WEIGHTS", final, "--worst", "2"])
    parses, evaluations = spy.take()
    assert evaluations == [TESTS] and parses == {("Synthetic", None): 1, ("Market1501", "synthetic"): 1}
    drawn = json.loads((folder / "ranked_lists" / "ranked_lists.json").read_text())["metrics"]
    assert drawn["datasets"] == trained["datasets"]
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["index.html", "model_final"]

    # One test set chosen: only that one is parsed and evaluated, into the same folder.
    _main(visualize_tool.main, ["MODEL.WEIGHTS", final, "--dataset", TESTS[1], "--query", "0"])
    parses, evaluations = spy.take()
    assert evaluations == [[TESTS[1]]] and parses == {("Market1501", "synthetic"): 1}
    assert (folder / "ranked_lists" / "index.html").is_file()
