"""The one way to evaluate a model or a checkpoint on the configured test sets, as detectron2's
``DefaultTrainer.test`` is: the trainer's evaluations and final files, ``reid-test`` (:func:`evaluate_checkpoint`)
and ``reid-visualize`` (``reid.engine.ranked_lists``) all go through it.

- :class:`Evaluator` holds the test sets, parsed and checked once when it is built (before any weights are read or
  image embedded; a training run hands over the datasets it parsed already) and scores a model on them as often
  as asked.
- :func:`load_model`: MODEL.WEIGHTS through the one loader (:func:`reid.checkpoint.load_for_inference`), or the
  initialised model.
- :func:`write_results`: ``metrics.json``, ``report.html`` (VIS.REPORT) and the results table in the log.

Where an evaluation writes is :func:`reid.engine.run_folder.evaluation_dir`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from ..checkpoint import load_for_inference
from ..config import dump_cfg
from ..data import build_test_set
from ..data.datasets import ReIDDataset
from ..evaluation.testsets import RowSelector, TestSetResult, evaluate_test_set, format_results, metrics_dict, \
    write_metrics
from ..modeling import build_model
from ..utils.distributed import broadcast_buffers, dist_info
from ..utils.env import resolve_device, seed_all
from ..utils.logger import setup_logger
from ..utils.outputs import CONFIG, holds_training_run
from ..utils.provenance import run_header
from ..visualization.evaluations import write_evaluations_index
from ..visualization.report import maybe_write_report, report_rows
from .run_folder import evaluation_dir, evaluations_home, run_of, with_output_dir

logger = logging.getLogger("reid")


class Evaluator:
    """The test sets ``names`` (default: every ``DATASETS.TESTS`` set, in order) parsed and checked once, and the
    evaluation of a model on them.

    ``parsed``: datasets parsed already (a training run's training sets), reused for the test sets of the same
    name instead of being parsed again. A bad folder, an empty split or a split without any true match is an error
    here, before any image is embedded.
    """

    def __init__(self, cfg, device: torch.device, names: Optional[Sequence[str]] = None,
                 parsed: Sequence[ReIDDataset] = ()) -> None:
        self.cfg, self.device = cfg, device
        known = {dataset.name: dataset for dataset in parsed}
        names = list(cfg.DATASETS.TESTS if names is None else names)
        self.test_sets = {name: build_test_set(cfg, name, known.get(name)) for name in names}

    def evaluate(self, model: nn.Module, keep_rows: Optional[RowSelector] = None
                 ) -> Optional[Dict[str, TestSetResult]]:
        """``model`` on every test set, in order (``keep_rows``: see
        :func:`reid.evaluation.testsets.evaluate_test_set`). Under DDP: rank 0's model (its BN statistics copied to
        every rank first), embedded by all ranks, scored once by rank 0; the other ranks get None."""
        broadcast_buffers(model)
        evals = {name: evaluate_test_set(self.cfg, model, self.device, test_set, keep_rows)
                 for name, test_set in self.test_sets.items()}
        return evals if dist_info()[0] == 0 else None


def load_model(cfg, device: torch.device, state: Optional[Dict[str, Any]] = None,
               untrained: str = "evaluating the initialised (untrained) model",
               untrained_level: int = logging.INFO) -> nn.Module:
    """MODEL.WEIGHTS loaded for inference through the one loader (``state``: the file's content when the caller
    has read it already), or the initialised model when MODEL.WEIGHTS is empty, which is logged as "No
    MODEL.WEIGHTS given: <untrained>" at ``untrained_level``. In eval mode, on ``device``."""
    if cfg.MODEL.WEIGHTS:
        model, _ = load_for_inference(cfg.MODEL.WEIGHTS, config=cfg, device=device, name="MODEL.WEIGHTS file",
                                      state=state)
        logger.info("Loaded weights from %s", cfg.MODEL.WEIGHTS)
        return model
    logger.log(untrained_level, "No MODEL.WEIGHTS given: %s", untrained)
    return build_model(cfg).to(device).eval()


def write_results(cfg, output_dir: str | Path, evals: Dict[str, TestSetResult], metrics: Optional[dict] = None,
                  title: str = "Results") -> dict:
    """Write ``metrics.json`` (``metrics``, by default those of ``evals``) and, with VIS.REPORT, ``report.html``
    into ``output_dir`` (and, for a training run, its ``eval/index.html``, which the report links), then log the
    results table under ``title``; returns the metrics."""
    metrics = metrics_dict(evals) if metrics is None else metrics
    path = write_metrics(output_dir, metrics)
    training = holds_training_run(output_dir)
    if training:  # before the report, which links it
        write_evaluations_index(Path(output_dir))
    if maybe_write_report(cfg, evals, output_dir, metrics) is not None and training:
        write_evaluations_index(Path(output_dir))  # again, now with its link back to the report
    logger.info("%s (%s):\n%s", title, path, format_results(evals))
    return metrics


def list_in_run(folder: Path) -> Optional[Path]:
    """After an evaluation written into ``folder``: rewrite the ``eval/index.html`` of the folder it is in (a
    training run's, or the OUTPUT_DIR of standalone checkpoints' evaluations); returns that page (None for an
    evaluation written into its OUTPUT_DIR itself)."""
    home = evaluations_home(folder)
    return write_evaluations_index(home) if home is not None else None


def evaluate_checkpoint(cfg, name: str = "", opts: Sequence[str] = (), state: Optional[Dict[str, Any]] = None
                        ) -> Dict[str, TestSetResult]:
    """``reid-test``: evaluate ``MODEL.WEIGHTS`` (or the initialised model when empty); returns the per-test-set
    results.

    Writes ``config.yaml``, ``log.txt``, ``metrics.json`` and the report into
    :func:`reid.engine.run_folder.evaluation_dir` (``name`` and the overrides ``opts`` name the folder of an
    evaluation of a training run). Every test set is parsed and checked, then the weights loaded, before anything
    is embedded, so a bad dataset, path or checkpoint stops the run at once (and a missing dataset is reported as
    such, before any ImageNet download for an untrained model). ``state``: the content of MODEL.WEIGHTS when the
    caller has read it already."""
    out = evaluation_dir(cfg, name, opts)
    cfg = with_output_dir(cfg, out)
    setup_logger(cfg.OUTPUT_DIR)
    seed_all(cfg.SEED, cfg.DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    for line in run_header(device, config_path=out / CONFIG):
        logger.info(line)
    evaluator = Evaluator(cfg, device)
    model = load_model(cfg, device, state)
    dump_cfg(cfg, out / CONFIG)
    results = evaluator.evaluate(model, keep_rows=report_rows(cfg))
    write_results(cfg, out, results)
    index = list_in_run(out)
    if index is not None and run_of(out) is not None:
        logger.info("Evaluation of the training run in %s written to %s (listed in %s)", index.parent.parent, out,
                    index)
    elif index is not None:
        logger.info("Evaluation written to %s (listed with the other evaluations in %s)", out, index)
    return results
