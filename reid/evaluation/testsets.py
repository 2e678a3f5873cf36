"""A model on the configured test sets: embed query + gallery, score (and re-rank), ``metrics.json``, the table.

Under DDP (torchrun) the test images are embedded by all ranks, each a contiguous share, and scored once by rank 0.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data import ImageRecord, TestSet, build_test_set
from ..data.datasets.base import CROSS_CAMERA, EvalProtocol
from ..utils.distributed import all_gather_rows, broadcast_buffers, dist_info, shard_bounds
from ..utils.errors import ReIDError
from .extract import Features, extract_features
from .rank import RankResult, evaluate

logger = logging.getLogger("reid")


@dataclass
class TestSetResult:
    """Results of one test set: plain ranking, re-ranked ranking (when enabled), the features used, the protocol
    they were scored with and ``protocol_args``, the keywords that give ``evaluate`` / ``topk_valid`` the same
    protocol (ranked lists drawn from these features must pass them). ``identity_names`` (query then gallery, as
    the features) are the datasets' names of the identities, "" where a dataset has none (show the pid then)."""

    name: str
    result: RankResult
    rerank: Optional[RankResult]
    query: Features
    gallery: Features
    protocol: EvalProtocol = EvalProtocol(CROSS_CAMERA, "")
    protocol_args: Dict[str, Any] = field(default_factory=lambda: {"cross_camera": True})
    identity_names: List[str] = field(default_factory=list)


def _extract(cfg, model: nn.Module, loader: DataLoader, records: List[ImageRecord], device: torch.device,
             name: str) -> Optional[Features]:
    """Embed every image of ``loader``. Under DDP each rank embeds a contiguous share and rank 0 gathers them
    (other ranks get None), so the test set is embedded once, split over the GPUs."""
    rank, world = dist_info()
    desc = f"{name} features"
    if world == 1:
        return extract_features(model, loader, device, flip=cfg.TEST.FLIP, desc=desc)
    if len(records) < world:
        raise ReIDError(f"Test set {name} has {len(records)} images, fewer than the {world} processes sharing it.")
    lo, hi = shard_bounds(len(records), rank, world)
    shard = DataLoader(Subset(loader.dataset, range(lo, hi)), batch_size=loader.batch_size,
                       num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                       worker_init_fn=loader.worker_init_fn)
    feats = all_gather_rows(extract_features(model, shard, device, flip=cfg.TEST.FLIP, desc=desc).feats,
                            len(records))
    if rank > 0:
        return None
    return Features(feats, torch.tensor([r.pid for r in records]), torch.tensor([r.camid for r in records]),
                    [r.path for r in records])


def build_test_sets(cfg) -> Dict[str, TestSet]:
    """Parse and check every ``DATASETS.TESTS`` set once; the loaders are reused by every later evaluation."""
    return {name: build_test_set(cfg, name) for name in cfg.DATASETS.TESTS}


def evaluate_test_set(cfg, model: nn.Module, device: torch.device, test_set: TestSet) -> Optional[TestSetResult]:
    """Extract query + gallery features of ``test_set`` and score them (and re-rank when enabled).

    Under DDP the scoring runs once, on rank 0; the other ranks return None.
    """
    name, num_query = test_set.name, test_set.num_query
    feats = _extract(cfg, model, test_set.loader, test_set.records, device, name)
    if feats is None:
        return None
    query, gallery = feats.split(num_query)
    args = (query.feats, gallery.feats, query.pids, gallery.pids, query.camids, gallery.camids)
    protocol = test_set.protocol_args()
    result = evaluate(*args, metric=cfg.TEST.METRIC, max_rank=cfg.TEST.MAX_RANK, **protocol)
    rerank = None
    if cfg.TEST.RERANK.ENABLED:
        r = cfg.TEST.RERANK
        rerank = evaluate(*args, metric=cfg.TEST.METRIC, max_rank=cfg.TEST.MAX_RANK, rerank=True,
                          k1=r.K1, k2=r.K2, lambda_value=r.LAMBDA, **protocol)
    return TestSetResult(name, result, rerank, query, gallery, test_set.protocol, protocol,
                         [r.identity_name for r in test_set.records])


def evaluate_test_sets(cfg, model: nn.Module, device: torch.device,
                       test_sets: Optional[Dict[str, TestSet]] = None) -> Optional[Dict[str, TestSetResult]]:
    """Every ``DATASETS.TESTS`` set, in order (``test_sets`` from :func:`build_test_sets`, or built here).
    Under DDP: rank 0's model (its BN statistics are copied to all ranks first), embedded by all ranks, scored
    once by rank 0; the other ranks return None."""
    broadcast_buffers(model)
    test_sets = test_sets or build_test_sets(cfg)
    evals = {name: evaluate_test_set(cfg, model, device, test_sets[name]) for name in cfg.DATASETS.TESTS}
    return evals if dist_info()[0] == 0 else None


def metrics_dict(evals: Dict[str, TestSetResult]) -> dict:
    """``metrics.json`` content: the first test set's metrics at top level, every set under ``datasets``.

    Values are fractions in [0, 1]; re-ranked metrics sit under ``rerank`` beside the plain ones; ``protocol``
    ("cross-camera" or "same-image removal") and ``protocol_reason`` say which gallery items were removed and why.
    """
    per = {}
    for name, ev in evals.items():
        entry = {**ev.result.as_dict(), "protocol": ev.protocol.name, "protocol_reason": ev.protocol.reason}
        if ev.rerank is not None:
            entry["rerank"] = ev.rerank.as_dict()
        per[name] = entry
    first = next(iter(per.values()))
    return {**first, "dataset": next(iter(per)), "datasets": per}


def write_metrics(output_dir: str | Path, metrics: dict) -> Path:
    """Write ``OUTPUT_DIR/metrics.json`` (pretty-printed)."""
    path = Path(output_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path


def format_results(evals: Dict[str, TestSetResult]) -> str:
    """A table a person reads: one row per test set (and per re-ranked result)."""
    width = max([22] + [len(name) + 10 for name in evals])  # entries such as folder:PATH can be long
    header = (f"{'dataset':<{width}}{'rank-1':>8}{'rank-5':>8}{'rank-10':>8}{'mAP':>8}{'mINP':>8}{'valid q':>9}"
              f"{'gallery':>9}")
    rows = [header, "-" * len(header)]
    for name, ev in evals.items():
        for label, res in ((name, ev.result), (f"{name} +rerank", ev.rerank)):
            if res is None:
                continue
            d = res.as_dict()
            rows.append(f"{label:<{width}}{100 * d['rank1']:>8.2f}{100 * d['rank5']:>8.2f}{100 * d['rank10']:>8.2f}"
                        f"{100 * d['mAP']:>8.2f}{100 * d['mINP']:>8.2f}{d['num_valid_query']:>9d}"
                        f"{d['num_gallery']:>9d}")
    legend = "(percent; rank-k = CMC, mAP / mINP over valid queries)"
    notes = [f"{name}: {ev.protocol.name} ({ev.protocol.reason})" for name, ev in evals.items()
             if not ev.protocol.cross_camera]
    if notes:
        legend = legend[:-1] + "; cross-camera protocol unless noted below)"
    return "\n".join(rows + [legend] + notes)
