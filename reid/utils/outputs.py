"""What reid writes into an output folder, by name: the vocabulary every layer shares (files, record sets, the name
of an evaluation's folder). The rules built on it live in ``reid.engine.run_folder``:

- **One training run per folder.** ``tools/train.py`` starts only in a folder without :data:`RUN_RECORDS`
  (``--resume`` continues the run there; ``--overwrite`` first moves it into ``previous-<timestamp>/``).
- **Evaluations never write over a training run.** ``tools/test.py`` and ``tools/visualize.py`` given a folder
  that holds :data:`TRAINING_RECORDS` write into its ``eval/<name>/`` instead (:func:`evaluation_name`).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import List, Sequence

CONFIG = "config.yaml"  # the resolved config of the run or evaluation
LOG = "log.txt"
HISTORY = "train_log.jsonl"  # one JSON object per epoch and per evaluation
METRICS = "metrics.json"
REPORT = "report.html"
LAST = "model_last.pt"  # everything needed to resume
FINAL = "model_final.pt"  # the evaluated weights, config and final metrics
BEST = "model_best.pt"  # the weights of the best evaluation, with the metric that chose them
EVAL_DIR = "eval"  # OUTPUT_DIR/eval/<name>/: evaluations of the run's checkpoints
PREVIOUS_PREFIX = "previous-"  # OUTPUT_DIR/previous-<timestamp>/: runs moved aside by --overwrite

# Files only training writes: a folder holding one of them is a training run's.
TRAINING_RECORDS = (LAST, FINAL, BEST, HISTORY)
# Files a new training run would write over: it does not start in a folder holding one of them.
RUN_RECORDS = TRAINING_RECORDS + (METRICS, REPORT)

# Keys (and sections, ending in ".") that do not change an evaluation's numbers: where files are, the device,
# speed, pictures, and whether junk is loaded (it is never ranked). They do not name an evaluation.
NOT_EVALUATED = ("OUTPUT_DIR", "MODEL.DEVICE", "DATASETS.ROOT", "DATASETS.KEEP_JUNK", "DATALOADER.NUM_WORKERS",
                 "TEST.IMS_PER_BATCH", "VIS.")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
_MAX_NAME = 96


def present(folder: str | Path, names: Sequence[str]) -> List[str]:
    """Which of ``names`` are files in ``folder``."""
    folder = Path(folder)
    return [n for n in names if (folder / n).is_file()]


def holds_training_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a training run's checkpoints or history."""
    return bool(present(folder, TRAINING_RECORDS))


def evaluation_name(weights: str, opts: Sequence[str]) -> str:
    """The folder name of an evaluation, from its weights file and its ``KEY VALUE`` overrides.

    ``model_final.pt`` with ``TEST.RERANK.ENABLED True`` gives ``model_final_TEST.RERANK.ENABLED=True``; no
    weights give ``untrained``; MODEL.WEIGHTS and the keys of :data:`NOT_EVALUATED` are left out. Characters
    other than letters, digits and ``._=+-`` become ``-``; a name longer than 96 characters is cut and ends with
    a hash of the whole, so different overrides keep different names.
    """
    parts = [Path(weights).stem if weights else "untrained"]
    pairs = list(zip(opts[0::2], opts[1::2]))
    parts += [f"{key}={value}" for key, value in pairs
              if key != "MODEL.WEIGHTS" and not str(key).startswith(NOT_EVALUATED)]
    name = "_".join(_UNSAFE.sub("-", p).strip("-") or "-" for p in parts)
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:_MAX_NAME - 9]}-{digest}"
    return name
