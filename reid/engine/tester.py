"""``tools/test.py``'s logic: build the model, load MODEL.WEIGHTS, evaluate every test set, write metrics."""
from __future__ import annotations

from typing import Dict

from ..config import dump_cfg
from ..modeling import build_model
from ..utils.env import resolve_device, seed_all
from ..utils.logger import setup_logger
from .checkpoint import load_model_weights
from .evaluate import DatasetEvaluation, build_test_sets, evaluate_all, format_results, metrics_dict, write_metrics


def run_test(cfg) -> Dict[str, DatasetEvaluation]:
    """Evaluate ``MODEL.WEIGHTS`` (or the initialised model when empty); returns the per-dataset evaluations.

    The weights are loaded and every test set is parsed and checked before anything is embedded, so a bad path,
    checkpoint or dataset stops the run at once."""
    logger = setup_logger(cfg.OUTPUT_DIR)
    seed_all(cfg.SEED, cfg.DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    dump_cfg(cfg, f"{cfg.OUTPUT_DIR}/config.yaml")
    model = build_model(cfg, pretrained=not cfg.MODEL.WEIGHTS)
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS, cfg=cfg)
        logger.info("Loaded weights from %s", cfg.MODEL.WEIGHTS)
    else:
        logger.info("No MODEL.WEIGHTS given: evaluating the initialised (untrained) model")
    test_sets = build_test_sets(cfg)  # parsed and checked once, before anything is embedded
    model.to(device)
    evals = evaluate_all(cfg, model, device, test_sets)
    metrics = metrics_dict(evals)
    path = write_metrics(cfg.OUTPUT_DIR, metrics)
    logger.info("Results (%s):\n%s", path, format_results(evals))
    from ..visualization.report import maybe_write_report  # matplotlib only when a report is drawn

    maybe_write_report(cfg, evals, cfg.OUTPUT_DIR, metrics)
    return evals
