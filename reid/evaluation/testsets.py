"""A model on the configured test sets: embed query + gallery, score (and re-rank), ``metrics.json``, the table.

Under DDP (torchrun) the test images are embedded by all ranks, each a contiguous share, and scored once by rank 0.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data import ImageRecord, TestSet, build_test_set
from ..utils.distributed import all_gather_rows, broadcast_buffers, dist_info, shard_bounds
from ..utils.errors import ReIDError
from ..utils.outputs import METRICS
from .chance import ChanceLevel, chance_level
from .distance import compute_distance
from .extract import Features, extract_features
from .histogram import DistanceHistogram, PairHistogram, distance_bound
from .protocol import JUNK_PID, Protocol
from .query_expansion import alpha_query_expansion
from .rank import evaluate, evaluate_rank, reranked_distances
from .results import RankResult
from .table import ResultRow, format_rows
from .verification import VerificationCounter, VerificationResult

logger = logging.getLogger("reid")


@dataclass
class QueryRows:
    """Re-ranked distance rows (on the CPU) of chosen queries, kept when the full matrix is dropped."""

    indices: np.ndarray
    rows: torch.Tensor


@dataclass
class TestSetResult:
    """One test set: plain and (when enabled) re-ranked and query-expanded results, the verification metrics of the
    plain distances (``verification``: ROC, AUC, EER, thresholds), the chance level of its split, the histogram of
    true / false pair distances (``histogram``, counted in the plain pass) and the features.

    ``query`` / ``gallery`` are the images that were ranked (junk, pid -1, never is); ``junk`` holds the gallery's
    junk when ``DATASETS.KEEP_JUNK`` loaded it, for pictures only. ``rerank_rows`` are the re-ranked distances of
    the queries a ``keep_rows`` selector chose (the whole re-ranked matrix, 3.8 GB on MSMT17, is not kept).
    ``protocol`` is the :class:`Protocol` of ``query`` x ``gallery``: which gallery items were removed
    (``.name``) and why (``.reason``); every metric and ranked list of these features takes it (default: the
    cross-camera protocol of the features' ids). ``identity_names`` (query then gallery, as the features) are the
    datasets' names of the identities, "" where a dataset has none (show the pid then).
    """

    name: str
    result: RankResult
    rerank: Optional[RankResult]
    query: Features
    gallery: Features
    chance: Optional[ChanceLevel] = None
    metric: str = "cosine"
    junk: Optional[Features] = None
    rerank_rows: Optional[QueryRows] = None
    protocol: Optional[Protocol] = None
    identity_names: List[str] = field(default_factory=list)
    verification: Optional[VerificationResult] = None
    aqe: Optional[RankResult] = None
    histogram: Optional[DistanceHistogram] = None

    def __post_init__(self) -> None:
        if self.protocol is None:
            self.protocol = Protocol(self.query.pids, self.gallery.pids, self.query.camids, self.gallery.camids)

    def distance_rows(self, indices: Sequence[int], reranked: bool = False) -> torch.Tensor:
        """Distances of the queries ``indices`` to the gallery: the metric's, or the kept re-ranked rows."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if not reranked:
            return compute_distance(self.query.feats[idx.to(self.query.feats.device)], self.gallery.feats, self.metric)
        kept = self.rerank_rows
        where = {int(q): i for i, q in enumerate(kept.indices)} if kept is not None else {}
        missing = [int(q) for q in idx if int(q) not in where]
        if missing:
            raise ReIDError(f"{self.name}: the re-ranked distances of queries {missing[:5]} were not kept by the "
                            "evaluation; pass a keep_rows selector that chooses them to evaluate_test_set.")
        return kept.rows[[where[int(q)] for q in idx]]

    def junk_distances(self, indices: Sequence[int]) -> Optional[torch.Tensor]:
        """Plain distances of the queries ``indices`` to the junk images (None without junk)."""
        if self.junk is None or not len(self.junk.paths):
            return None
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return compute_distance(self.query.feats[idx.to(self.query.feats.device)], self.junk.feats, self.metric)


# Chooses, from a test set's result, the queries whose re-ranked distance rows are kept (for ranked lists).
RowSelector = Callable[[TestSetResult], Sequence[int]]


def _extract(cfg, model: nn.Module, loader: DataLoader, records: List[ImageRecord], indices: List[int],
             device: torch.device, desc: str, shard: bool = True) -> Optional[Features]:
    """Embed ``records[indices]`` through ``loader``'s dataset (the loader itself when that is all of it).

    With ``shard`` under DDP each rank embeds a contiguous share and rank 0 gathers them (other ranks get None),
    so the images are embedded once, split over the GPUs; without it only rank 0 embeds them.
    """
    rank, world = dist_info()
    if not shard and rank > 0:
        return None
    world = world if shard else 1
    if len(indices) < world:
        raise ReIDError(f"{desc}: {len(indices)} images, fewer than the {world} processes sharing them.")
    lo, hi = shard_bounds(len(indices), rank if shard else 0, world)
    part = indices[lo:hi]
    if part != list(range(len(records))):
        loader = DataLoader(Subset(loader.dataset, part), batch_size=loader.batch_size,
                            num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                            worker_init_fn=loader.worker_init_fn)
    feats = extract_features(model, loader, device, flip=cfg.TEST.FLIP, desc=desc).feats
    if world > 1:
        feats = all_gather_rows(feats, len(indices))
        if rank > 0:
            return None
    chosen = [records[i] for i in indices]
    return Features(feats, torch.tensor([r.pid for r in chosen]), torch.tensor([r.camid for r in chosen]),
                    [r.path for r in chosen])


def build_test_sets(cfg) -> Dict[str, TestSet]:
    """Parse and check every ``DATASETS.TESTS`` set once; the loaders are reused by every later evaluation."""
    return {name: build_test_set(cfg, name) for name in cfg.DATASETS.TESTS}


def ranked_query_paths(test_set: TestSet) -> List[str]:
    """Paths of the queries that are ranked, in the order of :attr:`TestSetResult.query` (junk queries are not)."""
    return [r.path for r in test_set.query if r.pid != JUNK_PID]


def evaluate_test_set(cfg, model: nn.Module, device: torch.device, test_set: TestSet,
                      keep_rows: Optional[RowSelector] = None) -> Optional[TestSetResult]:
    """Extract query + gallery features of ``test_set`` and score them (and re-rank when enabled).

    Junk (pid -1, loaded by ``DATASETS.KEEP_JUNK``) takes no part in ranking or re-ranking, so the numbers do
    not depend on that key; gallery junk is embedded in a pass of its own (the ranked images' batches stay the
    same) and kept in ``junk`` for pictures. ``keep_rows`` chooses the queries whose re-ranked rows are kept.
    Under DDP the scoring runs once, on rank 0; the other ranks return None.
    """
    name, records, num_query = test_set.name, test_set.records, test_set.num_query
    ranked = [i for i, r in enumerate(records) if r.pid != JUNK_PID]
    junk = [i for i in range(num_query, len(records)) if records[i].pid == JUNK_PID]
    feats = _extract(cfg, model, test_set.loader, records, ranked, device, f"{name} features")
    junk_feats = _extract(cfg, model, test_set.loader, records, junk, device, f"{name} junk features",
                          shard=False) if junk else None
    if feats is None:
        return None
    q_ranked = [i for i in ranked if i < num_query]
    g_ranked = [i for i in ranked if i >= num_query]
    query, gallery = feats.split(len(q_ranked))
    protocol = _protocol(test_set, query, gallery, q_ranked, g_ranked).to(query.feats.device)
    metric, max_rank = cfg.TEST.METRIC, cfg.TEST.MAX_RANK
    # Verification metrics and the distance histogram are counted from the blocks the ranking pass computes.
    counter = VerificationCounter(protocol, far=cfg.TEST.VERIFY_FAR, device=query.feats.device)
    histogram = PairHistogram(protocol, upper=distance_bound(query.feats, gallery.feats, metric),
                              max_queries=cfg.VIS.HIST_MAX_QUERIES)
    result = evaluate(query.feats, gallery.feats, metric=metric, max_rank=max_rank,
                      observe=(counter.add, histogram.add), protocol=protocol)
    ev = TestSetResult(name, result, None, query, gallery, chance_level(protocol), metric, junk_feats,
                       protocol=protocol, identity_names=[records[i].identity_name for i in ranked],
                       verification=counter.result(), histogram=histogram.result())
    if cfg.TEST.AQE.ENABLED:
        a = cfg.TEST.AQE
        q_aqe, g_aqe = alpha_query_expansion(query.feats, gallery.feats, a.QE_TIME, a.QE_K, a.ALPHA)
        ev.aqe = evaluate(q_aqe, g_aqe, metric=metric, max_rank=max_rank, protocol=protocol)
    if cfg.TEST.RERANK.ENABLED:
        r = cfg.TEST.RERANK
        distmat = reranked_distances(query.feats, gallery.feats, metric, k1=r.K1, k2=r.K2, lambda_value=r.LAMBDA)
        ev.rerank = evaluate_rank(distmat, max_rank=max_rank, protocol=protocol)
        if keep_rows is not None:
            idx = np.asarray(list(keep_rows(ev)), dtype=np.int64)
            ev.rerank_rows = QueryRows(idx, distmat[torch.as_tensor(idx, device=distmat.device)].cpu())
    return ev


def _protocol(test_set: TestSet, query: Features, gallery: Features, q_ranked: List[int],
              g_ranked: List[int]) -> Protocol:
    """The set's protocol (its rule and the reason for it) for the ranked (non-junk) query and gallery records."""
    image_ids = None if test_set.image_ids is None else np.asarray(test_set.image_ids, dtype=np.int64)
    return Protocol(query.pids, gallery.pids, query.camids, gallery.camids, rule=test_set.protocol.name,
                    reason=test_set.protocol.reason,
                    q_image_ids=None if image_ids is None else image_ids[q_ranked],
                    g_image_ids=None if image_ids is None else image_ids[g_ranked])


def evaluate_test_sets(cfg, model: nn.Module, device: torch.device, test_sets: Optional[Dict[str, TestSet]] = None,
                       keep_rows: Optional[RowSelector] = None) -> Optional[Dict[str, TestSetResult]]:
    """Every ``DATASETS.TESTS`` set, in order (``test_sets`` from :func:`build_test_sets`, or built here).
    Under DDP: rank 0's model (its BN statistics are copied to all ranks first), embedded by all ranks, scored
    once by rank 0; the other ranks return None. ``keep_rows``: see :func:`evaluate_test_set`."""
    broadcast_buffers(model)
    test_sets = test_sets or build_test_sets(cfg)
    evals = {name: evaluate_test_set(cfg, model, device, test_sets[name], keep_rows) for name in cfg.DATASETS.TESTS}
    return evals if dist_info()[0] == 0 else None


def metrics_dict(evals: Dict[str, TestSetResult]) -> dict:
    """``metrics.json`` content: the first test set's metrics at top level, every set under ``datasets``.

    Values are fractions in [0, 1]; re-ranked metrics sit under ``rerank`` beside the plain ones, the chance
    level of the split (expected rank-1 / mAP of a random ranking) under ``chance``; ``protocol`` ("cross-camera"
    or "same-image removal") and ``protocol_reason`` say which gallery items were removed and why. ``aqe`` holds
    the metrics after alpha query expansion (TEST.AQE), ``verification`` the verification metrics of the plain
    distances (``auc``, ``eer``, ``tar_at_far`` and ``threshold_at_far`` by FAR written as "1e-3", ``threshold``
    at TEST.VERIFY_FAR, ``far``).
    """
    per = {}
    for name, ev in evals.items():
        entry = {**ev.result.as_dict(), "protocol": ev.protocol.name, "protocol_reason": ev.protocol.reason}
        if ev.chance is not None:
            entry["chance"] = {"rank1": ev.chance.rank1, "mAP": ev.chance.mAP}
        if ev.rerank is not None:
            entry["rerank"] = ev.rerank.as_dict()
        if ev.aqe is not None:
            entry["aqe"] = ev.aqe.as_dict()
        if ev.verification is not None:
            entry["verification"] = ev.verification.as_dict()
        per[name] = entry
    first = next(iter(per.values()))
    return {**first, "dataset": next(iter(per)), "datasets": per}


def write_metrics(output_dir: str | Path, metrics: dict) -> Path:
    """Write ``OUTPUT_DIR/metrics.json`` (pretty-printed)."""
    path = Path(output_dir) / METRICS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path


def result_rows(evals: Dict[str, TestSetResult]) -> List[ResultRow]:
    """The results table's rows: each test set (with its verification metrics), then its re-ranked and
    query-expanded results when there are any."""
    rows = []
    for name, ev in evals.items():
        rows.append(ResultRow(name, ev.result, ev.chance, ev.verification))
        if ev.rerank is not None:
            rows.append(ResultRow(f"{name} +rerank", ev.rerank, ev.chance))
        if ev.aqe is not None:
            rows.append(ResultRow(f"{name} +aqe", ev.aqe, ev.chance))
    return rows


def format_results(evals: Dict[str, TestSetResult]) -> str:
    """The results table as text, for logs, with a note for each set not scored by the cross-camera protocol."""
    notes = [f"{name}: {ev.protocol.name} ({ev.protocol.reason})" for name, ev in evals.items()
             if not ev.protocol.cross_camera]
    return format_rows(result_rows(evals)) + "".join(f"\n{note}" for note in notes)
