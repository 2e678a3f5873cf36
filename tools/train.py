#!/usr/bin/env python
"""Train a re-ID model, then evaluate it; see --help."""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.engine.cli import cfg_from_args, config_parser, run_tool  # noqa: E402

EPILOG = """examples:
  python tools/train.py --config configs/Synthetic/resnet50_circle.yml
  python tools/train.py --config configs/Market1501/resnet50_circle.yml MODEL.DEVICE cuda OUTPUT_DIR out/m50
  python tools/train.py --config configs/Market1501/resnet50_circle.yml OUTPUT_DIR out/m50 --resume
  torchrun --nproc_per_node 4 tools/train.py --config configs/Market1501/mgn_circle.yml   # 4 GPUs, DDP

Writes to OUTPUT_DIR: config.yaml (resolved config), log.txt, train_log.jsonl (per-epoch losses and
evaluations), model_last.pt (every SOLVER.CHECKPOINT_PERIOD epochs, written atomically), model_final.pt,
metrics.json (rank1, rank5, rank10, mAP, mINP as fractions), report.html and plots/ (VIS.REPORT)."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser("Train a re-ID model on the configured datasets, then evaluate it on the test sets.",
                           EPILOG)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUTPUT_DIR from its model_last.pt (model, optimizer, schedule, "
                             "epoch and random states), giving the same result as an uninterrupted run")
    args = parser.parse_args(argv)
    from reid.engine.launch import distributed
    from reid.engine.trainer import Trainer

    cfg = cfg_from_args(args)
    with distributed(cfg.MODEL.DEVICE):  # under torchrun: join the process group (DDP); else a no-op
        Trainer(cfg, resume=args.resume).train()
    return 0


if __name__ == "__main__":
    run_tool(main)
