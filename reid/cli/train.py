"""``reid-train`` / ``tools/train.py``: train a re-ID model, then evaluate it."""
from __future__ import annotations

from typing import Optional, Sequence

from ..engine.launch import distributed
from ..engine.trainer import Trainer
from .parser import cfg_from_args, config_parser, run_tool

EPILOG = """examples:
  reid-train --config configs/Synthetic/resnet50_circle.yml
  reid-train --config configs/Market1501/resnet50_circle.yml MODEL.DEVICE cuda OUTPUT_DIR out/m50
  reid-train --config configs/Market1501/resnet50_circle.yml OUTPUT_DIR out/m50 --resume
  torchrun --nproc_per_node 4 tools/train.py --config configs/Market1501/mgn_circle.yml   # 4 GPUs, DDP

(python tools/train.py ... is the same command.) Writes to OUTPUT_DIR: config.yaml (resolved config), log.txt,
train_log.jsonl (per-epoch losses and evaluations), model_last.pt (every SOLVER.CHECKPOINT_PERIOD epochs,
written atomically), model_best.pt (best TEST.BEST_METRIC), model_final.pt, metrics.json (rank1, rank5,
rank10, mAP, mINP as fractions), report.html and plots/ (VIS.REPORT), tensorboard/ (VIS.TENSORBOARD)."""


def build_parser():
    parser = config_parser("Train a re-ID model on the configured datasets, then evaluate it on the test sets.",
                           EPILOG, prog="reid-train")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUTPUT_DIR from its model_last.pt (model, optimizer, schedule, "
                             "epoch, random states and hook states), giving the same result as an uninterrupted run")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = cfg_from_args(args)
    with distributed(cfg.MODEL.DEVICE):  # under torchrun: join the process group (DDP); else a no-op
        Trainer(cfg, resume=args.resume).train()
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
