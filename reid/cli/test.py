"""``reid-test`` / ``tools/test.py``: evaluate a trained (or the untrained) model on the configured test sets."""
from __future__ import annotations

from typing import Optional, Sequence

from ..engine.evaluator import evaluate_checkpoint
from .parser import add_name_option, config_parser, eval_cfg_from_args, run_tool

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

run_test = evaluate_checkpoint  # the command's work, under the name scripts and tests import from here


def build_parser():
    parser = config_parser("Evaluate a re-ID model: CMC, mAP and mINP on each test set (DATASETS.TESTS).", EPILOG,
                           prog="reid-test")
    add_name_option(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, state = eval_cfg_from_args(args)
    evaluate_checkpoint(cfg, args.name, args.opts, state)
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
