"""``reid-test`` / ``tools/test.py``: evaluate a trained (or the untrained) model on the configured test sets."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from ..checkpoint import load_checkpoint, load_for_inference, resolve_config
from ..config import dump_cfg
from ..evaluation.testsets import TestSetResult, build_test_sets, evaluate_test_sets, format_results, metrics_dict, \
    write_metrics
from ..modeling import build_model
from ..utils.env import resolve_device, seed_all
from ..utils.logger import setup_logger
from ..visualization.report import maybe_write_report, report_rows
from .parser import cfg_from_args, config_parser, run_tool

EPILOG = """examples:
  reid-test --config configs/Synthetic/resnet50_circle.yml MODEL.WEIGHTS output/synthetic/model_final.pt
  reid-test --config configs/Market1501/resnet50_circle.yml MODEL.WEIGHTS m.pt TEST.RERANK.ENABLED True

(python tools/test.py ... is the same command.) Without MODEL.WEIGHTS the freshly initialised model is evaluated
(the untrained baseline). With MODEL.WEIGHTS and no --config, the config stored in the checkpoint is used with the
KEY VALUE overrides merged over it (e.g. a checkpoint written by reid-convert: reid-test MODEL.WEIGHTS m.pt).
Classifier weights in the checkpoint are ignored: evaluation uses the embedding only.
Writes OUTPUT_DIR/metrics.json (with a "rerank" entry when TEST.RERANK.ENABLED), report.html and plots/
(VIS.REPORT), and prints a results table."""


def run_test(cfg) -> Dict[str, TestSetResult]:
    """Evaluate ``MODEL.WEIGHTS`` (or the initialised model when empty); returns the per-test-set results.

    The weights are loaded and every test set is parsed and checked before anything is embedded, so a bad path,
    checkpoint or dataset stops the run at once."""
    logger = setup_logger(cfg.OUTPUT_DIR)
    seed_all(cfg.SEED, cfg.DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    dump_cfg(cfg, f"{cfg.OUTPUT_DIR}/config.yaml")
    if cfg.MODEL.WEIGHTS:
        model, cfg = load_for_inference(cfg.MODEL.WEIGHTS, config=cfg, device=device, name="MODEL.WEIGHTS file")
        logger.info("Loaded weights from %s", cfg.MODEL.WEIGHTS)
    else:
        model = build_model(cfg).to(device)
        logger.info("No MODEL.WEIGHTS given: evaluating the initialised (untrained) model")
    test_sets = build_test_sets(cfg)  # parsed and checked once, before anything is embedded
    results = evaluate_test_sets(cfg, model, device, test_sets, keep_rows=report_rows(cfg))
    metrics = metrics_dict(results)
    path = write_metrics(cfg.OUTPUT_DIR, metrics)
    logger.info("Results (%s):\n%s", path, format_results(results))
    maybe_write_report(cfg, results, cfg.OUTPUT_DIR, metrics)
    return results


def build_parser():
    return config_parser("Evaluate a re-ID model: CMC, mAP and mINP on each test set (DATASETS.TESTS).", EPILOG,
                         prog="reid-test")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = cfg_from_args(args)
    if cfg.MODEL.WEIGHTS and not args.config:  # the checkpoint's own model and input settings, then the overrides
        cfg = resolve_config(load_checkpoint(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS file"), cfg.MODEL.WEIGHTS,
                             opts=args.opts)
    run_test(cfg)
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
