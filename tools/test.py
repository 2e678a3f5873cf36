#!/usr/bin/env python
"""Evaluate a trained model on the configured query/gallery sets; see --help."""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.engine.cli import cfg_from_args, config_parser, run_tool  # noqa: E402

EPILOG = """examples:
  python tools/test.py --config configs/Synthetic/resnet50_circle.yml MODEL.WEIGHTS output/synthetic/model_final.pt
  python tools/test.py --config configs/Market1501/resnet50_circle.yml MODEL.WEIGHTS m.pt TEST.RERANK.ENABLED True

Without MODEL.WEIGHTS the freshly initialised model is evaluated (the untrained baseline). Classifier weights
in the checkpoint are ignored: evaluation uses the embedding only. Writes OUTPUT_DIR/metrics.json (with a
"rerank" entry when TEST.RERANK.ENABLED), report.html and plots/ (VIS.REPORT), and prints a results table."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser("Evaluate a re-ID model: CMC, mAP and mINP on each test set (DATASETS.TESTS).", EPILOG)
    args = parser.parse_args(argv)
    from reid.engine.tester import run_test

    run_test(cfg_from_args(args))
    return 0


if __name__ == "__main__":
    run_tool(main)
