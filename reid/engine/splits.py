"""``reid-train --all-splits``: the protocol of the small benchmarks, trained and tested on every split.

VIPeR, CUHK01, GRID, PRID, iLIDS, CUHK03's classic protocol, iLIDS-VID and PRID-2011 are reported as the mean over
their random splits, each trained and tested on its own (as the papers do; torchreid leaves the loop to the user,
``split_id`` per run). Here one command does it:

- :func:`training_splits`: the ``DATASETS.SPLIT_ID`` values to train, one per distinct training set of the
  multi-split sets in DATASETS.NAMES (VIPeR's and CUHK01's two directions of a random half share one; VehicleID's
  gallery draws share the one training list, so it trains once).
- :func:`train_all_splits`: one ordinary run per split id in ``OUTPUT_DIR/split_<k>/`` (each resumable, each with
  its own checkpoints, metrics.json and report); each run evaluates every split that shares its training set
  (``reid.data.evaluated_splits``). Then :func:`average_runs` writes ``OUTPUT_DIR/metrics.json`` (every number
  the mean over all evaluated splits, with each split's own entry and the spread, as
  :func:`reid.evaluation.split_mean.mean_entry` writes it), the table in the log and ``OUTPUT_DIR/report.html``.

A model trained once and tested on a multi-split set it was not trained on (cross-domain) needs none of this: the
evaluator averages over every split of that set by itself.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List

from ..data import build_dataset
from ..evaluation.split_mean import mean_entry, split_entries
from ..evaluation.testsets import write_metrics
from ..utils.distributed import dist_info
from ..utils.errors import ConfigError
from ..utils.outputs import LAST, METRICS
from ..visualization.splits_report import format_split_table, write_splits_report
from .run_folder import FinishedRun
from .trainer import Trainer

logger = logging.getLogger("reid")

SPLIT_DIR = "split_{}"  # OUTPUT_DIR/split_<k>/: the run of DATASETS.SPLIT_ID k


def training_splits(cfg) -> List[int]:
    """The split ids whose training sets differ, over the multi-split sets of DATASETS.NAMES (which must have the
    same number of splits); a ConfigError when none of them has several."""
    datasets = [build_dataset(cfg, name) for name in cfg.DATASETS.NAMES]
    multi = [d for d in datasets if len(d.splits) > 1]
    if not multi:
        raise ConfigError(f"--all-splits trains every split of a multi-split protocol, but none of DATASETS.NAMES "
                          f"({', '.join(cfg.DATASETS.NAMES)}) has several splits (VIPeR, CUHK01, GRID, PRID, iLIDS, "
                          f"CUHK03 with DATASETS.CUHK03.CLASSIC_SPLIT, iLIDSVID, PRID2011, VehicleID have).")
    counts = {d.name: len(d.splits) for d in multi}
    if len(set(counts.values())) > 1:
        raise ConfigError(f"--all-splits: the multi-split training sets have different numbers of splits "
                          f"({', '.join(f'{n}: {c}' for n, c in counts.items())}); DATASETS.SPLIT_ID chooses one "
                          f"split of each, so train them in separate runs.")
    ids, seen = [], []
    for k in range(next(iter(counts.values()))):
        trains = [d.splits[k].train for d in multi]
        if trains not in seen:
            seen.append(trains)
            ids.append(k)
    return ids


def _split_cfg(cfg, split_id: int, folder: Path):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.SPLIT_ID = split_id
    cfg.OUTPUT_DIR = str(folder)
    cfg.freeze()
    return cfg


def train_all_splits(cfg, resume: bool = False, overwrite: bool = False,
                     allow_config_change: bool = False) -> Dict[str, Any]:
    """Train and evaluate every split of :func:`training_splits`, then average (:func:`average_runs`). With
    ``resume``, finished split runs are kept, interrupted ones continued and missing ones started; returns the
    averaged metrics."""
    out = Path(cfg.OUTPUT_DIR)
    ids = training_splits(cfg)
    logger.info("--all-splits: %d training run(s), DATASETS.SPLIT_ID %s, into %s", len(ids),
                ", ".join(map(str, ids)), out / SPLIT_DIR.format("<k>"))
    runs = {}
    for k in ids:
        folder = out / SPLIT_DIR.format(k)
        try:
            Trainer(_split_cfg(cfg, k, folder), resume=resume and (folder / LAST).is_file(), overwrite=overwrite,
                    allow_config_change=allow_config_change).train()
        except FinishedRun:
            logger.info("split %d: finished before (%s), kept", k, folder)
        runs[k] = folder
    if dist_info()[0] != 0:
        return {}
    metrics = average_runs(runs)
    write_metrics(out, metrics)
    logger.info("Every split (%s):\n%s", out / METRICS, format_split_table(metrics["datasets"]))
    if cfg.VIS.REPORT:
        logger.info("Report written to %s", write_splits_report(out, metrics, runs))
    return metrics


def average_runs(runs: Dict[int, Path]) -> Dict[str, Any]:
    """metrics.json of the split runs ``runs`` (split id -> run folder) averaged per test set: every split the
    runs evaluated (each run's ``splits.per_split``) when no split was evaluated by two runs (the set trained on);
    otherwise (a test set with one split, e.g. Market-1501 tested after each run, or a multi-split set none of the
    runs trained on) the runs' own entries, keyed by the run's split id."""
    per_run: Dict[str, Dict[int, Any]] = {}
    for k, folder in runs.items():
        path = folder / METRICS
        if not path.is_file():
            raise ConfigError(f"{path} is missing: the run of split {k} did not finish; rerun with --resume.")
        for name, entry in json.loads(path.read_text(encoding="utf-8"))["datasets"].items():
            per_run.setdefault(name, {})[k] = entry
    datasets = {}
    for name, entries in per_run.items():
        splits = [split_entries(entry, k) for k, entry in entries.items()]
        disjoint = sum(map(len, splits)) == len({i for s in splits for i in s})
        datasets[name] = mean_entry({i: e for s in splits for i, e in s.items()} if disjoint else entries)
    first = next(iter(datasets))
    return {**datasets[first], "dataset": first, "datasets": datasets,
            "runs": {str(k): str(folder) for k, folder in runs.items()}}
