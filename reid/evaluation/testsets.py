"""A model on the configured test sets: embed query + gallery, score (and re-rank), ``metrics.json``, the table.

Under DDP (torchrun) the test images are embedded by all ranks, each a contiguous share, and scored once by rank 0.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import ImageRecord, TestSet, build_test_loader, build_test_set, subset_loader
from ..data.datasets import TrackletRecord
from ..utils.distributed import all_gather_rows, broadcast_buffers, dist_info, shard_bounds
from ..utils.errors import ReIDError
from ..utils.outputs import METRICS
from .chance import ChanceLevel, chance_level
from .distance import compute_distance
from .extract import Features, extract_features
from .histogram import DistanceHistogram, PairHistogram, distance_bound
from .protocol import JUNK_PID, Protocol
from .query_expansion import alpha_query_expansion
from .rank import evaluate, observed, rank_blocks, reranker
from .results import RankResult
from .retrieval import RetrievalCounter, retrieval_nmi
from .single_shot import SingleShotCMC
from .split_mean import SplitMean
from .table import ResultRow, RetrievalRow, format_retrieval_rows, format_rows
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
    datasets' names of the identities, "" where a dataset has none (show the pid then). ``retrieval``: the metric
    learning metrics of a retrieval set (:func:`reid.evaluation.retrieval.evaluate_retrieval`'s dict: Recall@K for
    TEST.RECALL_KS, MAP@R, R-precision, NMI with TEST.NMI, the counts); under leave-one-out ``gallery`` is
    ``query``.
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
    # A protocol with several splits: which split this result (its features, pictures) is, and the metrics
    # averaged over every split evaluated (metrics.json, the results table and the CMC plot show the mean).
    split_id: Optional[int] = None
    split_mean: Optional[SplitMean] = None
    single_shot: bool = False  # the CMCs are single-shot ones (TEST.SINGLE_SHOT_CMC)
    # Video sets: each tracklet's frames by its path (its first frame), to draw a tracklet as a strip of frames.
    tracklet_frames: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    retrieval: Optional[Dict[str, float | int]] = None

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
        loader = subset_loader(loader, part)
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
    Under DDP the scoring runs once, on rank 0; the other ranks return None. A test set with ``more_splits`` is
    scored on each split (:func:`evaluate_splits`).
    """
    if test_set.more_splits:
        return evaluate_splits(cfg, model, device, test_set, keep_rows)
    name, records = test_set.name, test_set.records
    # Leave-one-out: the gallery records are the query records, embedded once.
    ranked = [i for i, r in enumerate(records[:test_set.num_query] if test_set.leave_one_out else records)
              if r.pid != JUNK_PID]
    feats = _extract(cfg, model, test_set.loader, records, ranked, device, f"{name} features")
    junk_feats = _junk_features(cfg, model, device, test_set)
    if feats is None:
        return None
    return _score(cfg, test_set, ranked, feats, junk_feats, keep_rows)


def _junk_features(cfg, model: nn.Module, device: torch.device, test_set: TestSet) -> Optional[Features]:
    """The gallery's junk (``DATASETS.KEEP_JUNK``), embedded in a pass of its own, for pictures; None without."""
    records, num_query = test_set.records, test_set.num_query
    junk = [i for i in range(num_query, len(records)) if records[i].pid == JUNK_PID]
    return _extract(cfg, model, test_set.loader, records, junk, device, f"{test_set.name} junk features",
                    shard=False) if junk else None


def evaluate_splits(cfg, model: nn.Module, device: torch.device, test_set: TestSet,
                    keep_rows: Optional[RowSelector] = None) -> Optional[TestSetResult]:
    """``test_set`` and its ``more_splits``, each scored, metrics averaged: the first split's result (its
    features, pictures and kept re-ranked rows) with ``split_mean``. Each distinct image (tracklet) of all the
    splits is embedded once (VehicleID's gallery draws share every image)."""
    sets = [replace(test_set, more_splits=[]), *test_set.more_splits]
    union = list(dict.fromkeys(r for s in sets for r in s.records if r.pid != JUNK_PID))
    feats = _extract(cfg, model, build_test_loader(cfg, union), union, list(range(len(union))), device,
                     f"{test_set.name} features ({len(sets)} splits)")
    junk_feats = _junk_features(cfg, model, device, test_set)
    if feats is None:
        return None
    row = {r: i for i, r in enumerate(union)}
    evals = []
    for k, split in enumerate(sets):
        ranked = [i for i, r in enumerate(split.records) if r.pid != JUNK_PID]
        index = torch.tensor([row[split.records[i]] for i in ranked])
        split_feats = Features(feats.feats[index.to(feats.feats.device)], feats.pids[index], feats.camids[index],
                               [feats.paths[i] for i in index.tolist()])
        evals.append(_score(cfg, split, ranked, split_feats, junk_feats if k == 0 else None,
                            keep_rows if k == 0 else None))
    ids = [s.split_id for s in sets]
    first = evals[0]
    first.split_mean = SplitMean.of(ids, evals, [_entry(ev) for ev in evals])
    return first


def _score(cfg, test_set: TestSet, ranked: List[int], feats: Features, junk_feats: Optional[Features],
           keep_rows: Optional[RowSelector]) -> TestSetResult:
    """Score the embedded ``ranked`` records (query then gallery) of ``test_set``: ranking, verification,
    histogram, chance level, then re-ranking and query expansion when enabled."""
    name, records, num_query = test_set.name, test_set.records, test_set.num_query
    q_ranked = [i for i in ranked if i < num_query]
    g_ranked = q_ranked if test_set.leave_one_out else [i for i in ranked if i >= num_query]
    query, gallery = (feats, feats) if test_set.leave_one_out else feats.split(len(q_ranked))
    protocol = _protocol(test_set, query, gallery, q_ranked, g_ranked).to(query.feats.device)
    metric, max_rank = cfg.TEST.METRIC, cfg.TEST.MAX_RANK
    # Verification metrics, the distance histogram and the retrieval metrics are counted from the blocks the
    # ranking pass computes.
    counter = VerificationCounter(protocol, far=cfg.TEST.VERIFY_FAR, device=query.feats.device)
    histogram = PairHistogram(protocol, upper=distance_bound(query.feats, gallery.feats, metric),
                              max_queries=cfg.VIS.HIST_MAX_QUERIES)
    single = bool(cfg.TEST.SINGLE_SHOT_CMC)  # then every CMC below is the single-shot one, from the same distances
    shot = SingleShotCMC(protocol, max_rank=max_rank) if single else None
    retrieval = RetrievalCounter(query.pids, gallery.pids, cfg.TEST.RECALL_KS, test_set.leave_one_out,
                                 query.feats.device) if test_set.retrieval else None
    observers = (counter.add, histogram.add) + ((shot.add,) if shot else ()) + ((retrieval.add,) if retrieval else ())
    result = evaluate(query.feats, gallery.feats, metric=metric, max_rank=max_rank, observe=observers,
                      protocol=protocol)
    names = [records[i].identity_name for i in ranked]
    ev = TestSetResult(name, shot.apply(result) if shot else result, None, query, gallery, chance_level(protocol),
                       metric, junk_feats, protocol=protocol,
                       identity_names=names * 2 if test_set.leave_one_out else names, verification=counter.result(),
                       histogram=histogram.result(), split_id=test_set.split_id, single_shot=single,
                       tracklet_frames={records[i].path: records[i].paths for i in ranked
                                        if isinstance(records[i], TrackletRecord)})
    if retrieval is not None:
        nmi = retrieval_nmi(query.feats, query.pids, metric, cfg.SEED) if cfg.TEST.NMI else None
        ev.retrieval = retrieval.result(nmi)
    if cfg.TEST.AQE.ENABLED:
        a = cfg.TEST.AQE
        q_aqe, g_aqe = alpha_query_expansion(query.feats, gallery.feats, a.QE_TIME, a.QE_K, a.ALPHA)
        shot = SingleShotCMC(protocol, max_rank=max_rank) if single else None
        ev.aqe = evaluate(q_aqe, g_aqe, metric=metric, max_rank=max_rank, protocol=protocol,
                          observe=(shot.add,) if shot else ())
        ev.aqe = shot.apply(ev.aqe) if shot else ev.aqe
    if cfg.TEST.RERANK.ENABLED:
        r = cfg.TEST.RERANK
        # ranked block by block: MSMT17's re-ranked query x gallery matrix (3.6 GiB) is never held whole
        rr = reranker(query.feats, gallery.feats, metric, k1=r.K1, k2=r.K2, lambda_value=r.LAMBDA)
        shot = SingleShotCMC(protocol, max_rank=max_rank) if single else None
        ev.rerank = rank_blocks(observed(rr.blocks(), (shot.add,) if shot else ()), protocol, max_rank)
        ev.rerank = shot.apply(ev.rerank) if shot else ev.rerank
        if keep_rows is not None:
            idx = np.asarray(list(keep_rows(ev)), dtype=np.int64)
            ev.rerank_rows = QueryRows(idx, rr.rows(idx).cpu())
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
    at TEST.VERIFY_FAR, ``far``). ``single_shot_cmc`` is true where the CMCs are single-shot ones
    (TEST.SINGLE_SHOT_CMC). A test set evaluated on several splits of its protocol has the mean of every number
    over them and a ``splits`` block (ids, ``std`` of the scores, ``per_split`` entries; see
    :mod:`reid.evaluation.split_mean`); one evaluated on one split of several has ``split_id``. A retrieval set's
    entry starts with its retrieval metrics (``recall@K`` for each K of TEST.RECALL_KS, ``map@r``, ``r_precision``,
    ``nmi`` with TEST.NMI); its rank-k / mAP are those of the same ranking (rank-k = Recall@k).
    """
    per = {name: ev.split_mean.entry() if ev.split_mean is not None else _entry(ev) for name, ev in evals.items()}
    first = next(iter(per.values()))
    return {**first, "dataset": next(iter(per)), "datasets": per}


def _entry(ev: TestSetResult) -> dict:
    """The metrics.json entry of one scored split."""
    entry = {**(ev.retrieval or {}), **ev.result.as_dict(), "protocol": ev.protocol.name,
             "protocol_reason": ev.protocol.reason}
    if ev.split_id is not None:
        entry["split_id"] = ev.split_id
    if ev.single_shot:
        entry["single_shot_cmc"] = True
    if ev.chance is not None:
        entry["chance"] = {"rank1": ev.chance.rank1, "mAP": ev.chance.mAP}
    if ev.rerank is not None:
        entry["rerank"] = ev.rerank.as_dict()
    if ev.aqe is not None:
        entry["aqe"] = ev.aqe.as_dict()
    if ev.verification is not None:
        entry["verification"] = ev.verification.as_dict()
    return entry


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
        mean = ev.split_mean
        if mean is not None:  # the mean over the splits (no verification row: its ROC is per split)
            name = f"{name} (mean of {len(mean.ids)} splits)"
        shown = mean if mean is not None else ev
        rows.append(ResultRow(name, shown.result, shown.chance, ev.verification if mean is None else None))
        if shown.rerank is not None:
            rows.append(ResultRow(f"{name} +rerank", shown.rerank, shown.chance))
        if shown.aqe is not None:
            rows.append(ResultRow(f"{name} +aqe", shown.aqe, shown.chance))
    return rows


def retrieval_rows(evals: Dict[str, TestSetResult]) -> List[RetrievalRow]:
    """The retrieval table's rows: the metric learning test sets."""
    return [RetrievalRow(name, ev.retrieval) for name, ev in evals.items() if ev.retrieval is not None]


def format_results(evals: Dict[str, TestSetResult]) -> str:
    """The results table as text, for logs, with a note for each set not scored by the cross-camera protocol,
    then the retrieval table of the metric learning sets (when there are any)."""
    notes = [f"{name}: {ev.protocol.name} ({ev.protocol.reason})" for name, ev in evals.items()
             if not ev.protocol.cross_camera]
    notes += [f"{name}: single-shot CMC (one random gallery image per identity, exact expectation)"
              for name, ev in evals.items() if ev.single_shot]
    notes += [split_note(name, ev) for name, ev in evals.items() if ev.split_mean is not None]
    retrieval = retrieval_rows(evals)
    return (format_rows(result_rows(evals)) + "".join(f"\n{note}" for note in notes)
            + (f"\n\n{format_retrieval_rows(retrieval)}" if retrieval else ""))


def split_note(name: str, ev: TestSetResult) -> str:
    """One line on a split-averaged result: which splits, the spread of rank-1 and mAP, which split is drawn."""
    mean = ev.split_mean
    std = mean.entry()["splits"]["std"]
    spread = ", ".join(f"{k} std {100 * std[k]:.2f}" for k in ("rank1", "mAP") if k in std)
    return (f"{name}: mean of splits {', '.join(map(str, mean.ids))} ({spread}; per split in metrics.json); "
            f"pictures and verification of split {ev.split_id}")
