"""``reid-train`` / ``tools/train.py``: train a re-ID model, then evaluate it."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from ..engine.launch import distributed
from ..engine.run_folder import FinishedRun
from ..engine.splits import train_all_splits
from ..engine.trainer import Trainer
from ..utils.env import deterministic_environment
from ..utils.outputs import LAST, RUN_RECORDS, present
from .parser import cfg_from_args, config_parser, run_tool

EPILOG = """examples:
  reid-train --config configs/Synthetic/resnet50_circle.yml
  reid-train --config configs/Market1501/resnet50_circle.yml MODEL.DEVICE cuda OUTPUT_DIR out/m50
  reid-train --config configs/Market1501/resnet50_circle.yml OUTPUT_DIR out/m50 --resume
  reid-train ... DATASETS.NAMES "['VIPeR']" DATASETS.TESTS "['VIPeR']" OUTPUT_DIR out/viper --all-splits
  torchrun --nproc_per_node 4 tools/train.py --config configs/Market1501/mgn_circle.yml   # 4 GPUs, DDP

(python tools/train.py ... is the same command.) Writes to OUTPUT_DIR: config.yaml (resolved config), log.txt,
train_log.jsonl (per-epoch losses and evaluations), model_last.pt (every SOLVER.CHECKPOINT_PERIOD epochs,
written atomically; everything --resume needs), model_best.pt (best TEST.BEST_METRIC), model_final.pt (the
evaluated weights, config and final metrics), metrics.json (rank1, rank5, rank10, mAP, mINP as fractions),
report.html and plots/ (VIS.REPORT), tensorboard/ (VIS.TENSORBOARD).

One run per OUTPUT_DIR: a folder that holds a run (checkpoints, train_log.jsonl, metrics.json or report.html)
is refused unless --resume continues it or --overwrite moves it into OUTPUT_DIR/previous-<timestamp>/.
Evaluations of the run (tools/test.py, tools/visualize.py) go into OUTPUT_DIR/eval/<name>/."""


def build_parser():
    parser = config_parser("Train a re-ID model on the configured datasets, then evaluate it on the test sets.",
                           EPILOG, prog="reid-train")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUTPUT_DIR from its model_last.pt (model, optimizer, schedule, "
                             "epoch, random states, hook states and training time), giving the same result as an "
                             "uninterrupted run; a finished run is left as it is (exit status 0)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: go on although the config differs from the checkpoint's in keys that "
                             "change the result (model, data, input, solver, seed); each change is logged")
    parser.add_argument("--all-splits", action="store_true",
                        help="train and evaluate every split of the multi-split protocol of DATASETS.NAMES (VIPeR, "
                             "CUHK01, GRID, PRID, iLIDS, CUHK03 classic, iLIDSVID, PRID2011), one run per split in "
                             "OUTPUT_DIR/split_<k>/, then write the mean over all splits to OUTPUT_DIR/metrics.json "
                             "and report.html; with --resume, finished splits are kept and the rest (re)started")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an OUTPUT_DIR that holds one, after moving the old run into "
                             "OUTPUT_DIR/previous-<timestamp>/ (nothing is deleted)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = cfg_from_args(args)
    if cfg.DETERMINISTIC:
        deterministic_environment()  # before any CUDA work, NCCL's included
    try:
        with distributed(cfg.MODEL.DEVICE):  # under torchrun: join the process group (DDP); else a no-op
            if args.all_splits:
                train_all_splits(cfg, resume=args.resume, overwrite=args.overwrite,
                                 allow_config_change=args.allow_config_change)
            else:
                Trainer(cfg, resume=args.resume, overwrite=args.overwrite,
                        allow_config_change=args.allow_config_change).train()
    except FinishedRun as done:
        print(done)
        return 0
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted_hint(Path(cfg.OUTPUT_DIR), argv)) from None
    return 0


def interrupted_hint(out: Path, argv: List[str]) -> str:
    """What to do after Ctrl-C: resume from model_last.pt, or start again when no checkpoint was written yet."""
    words = [w for w in argv if w not in ("--overwrite", "--resume")]
    if (out / LAST).is_file():
        return (f"{out / LAST} holds the last checkpoint (written every SOLVER.CHECKPOINT_PERIOD epochs); continue "
                f"the run from there with: {_command(words + ['--resume'])}")
    again = words + (["--overwrite"] if present(out, RUN_RECORDS) else [])
    return f"no checkpoint was written yet; start again with: {_command(again)}"


def _command(argv: List[str]) -> str:
    program = sys.argv[0] if sys.argv and sys.argv[0] else "reid-train"
    return shlex.join((["python"] if program.endswith(".py") else []) + [program, *argv])


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
