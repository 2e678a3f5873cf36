"""``reid-test`` / ``tools/test.py``: evaluate a trained (or the untrained) model on the configured test sets."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from ..checkpoint import load_for_inference
from ..config import dump_cfg
from ..evaluation.testsets import TestSetResult, build_test_sets, evaluate_test_sets, format_results, metrics_dict, \
    write_metrics
from ..modeling import build_model
from ..utils.env import resolve_device, seed_all
from ..utils.logger import setup_logger
from ..utils.outputs import CONFIG
from ..utils.provenance import run_header
from ..visualization.evaluations import evaluation_dir, run_of, write_evaluations_index
from ..visualization.report import maybe_write_report, report_rows
from .parser import add_name_option, config_parser, eval_cfg_from_args, run_tool, with_output_dir

EPILOG = """examples:
  reid-test --config configs/Synthetic/resnet50_circle.yml MODEL.WEIGHTS output/synthetic/resnet50_circle/model_final.pt
  reid-test MODEL.WEIGHTS output/synthetic/resnet50_circle/model_final.pt TEST.RERANK.ENABLED True
  reid-test --config configs/Synthetic/resnet50_circle.yml OUTPUT_DIR output/synthetic/untrained

(python tools/test.py ... is the same command.) Without MODEL.WEIGHTS the freshly initialised model is evaluated
(the untrained baseline). With MODEL.WEIGHTS and no --config, the config stored in the checkpoint is used with the
KEY VALUE overrides merged over it (e.g. a checkpoint written by reid-convert: reid-test MODEL.WEIGHTS m.pt).
Classifier weights in the checkpoint are ignored: evaluation uses the embedding only.
Writes metrics.json (with a "rerank" entry when TEST.RERANK.ENABLED), config.yaml, log.txt, report.html and
plots/ (VIS.REPORT), and prints a results table. They go into OUTPUT_DIR, except when OUTPUT_DIR holds a
training run (or --name is given): then into OUTPUT_DIR/eval/<name>/, <name> being --name or derived from the
weights file and the overrides (e.g. eval/model_final_TEST.RERANK.ENABLED=True/), so an evaluation never writes
over the run's config.yaml, metrics.json, train_log.jsonl or report.html; OUTPUT_DIR/eval/index.html lists the
run's evaluations. The config, the test sets' folders and the weights file are checked, in that order, before
anything is embedded."""


def run_test(cfg, name: str = "", opts: Sequence[str] = (), state: Optional[Dict[str, Any]] = None
             ) -> Dict[str, TestSetResult]:
    """Evaluate ``MODEL.WEIGHTS`` (or the initialised model when empty); returns the per-test-set results.

    Writes into :func:`reid.visualization.evaluations.evaluation_dir` (``name`` and the overrides ``opts`` name
    the folder of an evaluation of a training run). Every test set is parsed and checked, then the weights
    loaded, before anything is embedded, so a bad dataset, path or checkpoint stops the run at once (and a
    missing dataset is reported as such, before any ImageNet download for an untrained model). ``state``: the
    content of MODEL.WEIGHTS when the caller has read it already (:func:`eval_cfg_from_args`)."""
    out = evaluation_dir(cfg, name, opts)
    cfg = with_output_dir(cfg, out)
    logger = setup_logger(cfg.OUTPUT_DIR)
    seed_all(cfg.SEED, cfg.DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    for line in run_header(device, config_path=out / CONFIG):
        logger.info(line)
    test_sets = build_test_sets(cfg)  # parsed and checked once, before the model and anything embedded
    if cfg.MODEL.WEIGHTS:
        model, cfg = load_for_inference(cfg.MODEL.WEIGHTS, config=cfg, device=device, name="MODEL.WEIGHTS file",
                                        state=state)
        logger.info("Loaded weights from %s", cfg.MODEL.WEIGHTS)
    else:
        model = build_model(cfg).to(device)
        logger.info("No MODEL.WEIGHTS given: evaluating the initialised (untrained) model")
    dump_cfg(cfg, out / CONFIG)
    results = evaluate_test_sets(cfg, model, device, test_sets, keep_rows=report_rows(cfg))
    metrics = metrics_dict(results)
    path = write_metrics(out, metrics)
    logger.info("Results (%s):\n%s", path, format_results(results))
    maybe_write_report(cfg, results, out, metrics)
    run = run_of(out)
    if run is not None:
        logger.info("Evaluation of the training run in %s written to %s (listed in %s)", run, out,
                    write_evaluations_index(run))
    return results


def build_parser():
    parser = config_parser("Evaluate a re-ID model: CMC, mAP and mINP on each test set (DATASETS.TESTS).", EPILOG,
                           prog="reid-test")
    add_name_option(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, state = eval_cfg_from_args(args)
    run_test(cfg, args.name, args.opts, state)
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
