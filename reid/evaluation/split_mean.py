"""Metrics averaged over the splits of a protocol (VIPeR's, CUHK03 classic's, VehicleID's gallery draws ...).

One rule for every number: a split's metrics are a ``metrics.json`` entry, and the mean entry holds the mean of
each number all splits have (the CMC ranks, mAP, mINP, counts, the re-ranked / query-expanded / chance /
verification values alike), the text both agree on (the protocol), and a ``splits`` block with the split ids,
the standard deviation of the scores and every split's own entry. The same function averages the splits one
evaluation scored (:mod:`reid.evaluation.testsets`) and the runs of ``reid-train --all-splits``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .chance import ChanceLevel
from .results import RankResult

SCORES = ("rank1", "rank5", "rank10", "mAP", "mINP")  # the numbers whose spread over the splits is reported


def mean_entry(entries: Mapping[int, Mapping[str, Any]]) -> Dict[str, Any]:
    """The mean of per-split metrics entries (split id -> entry); see the module docstring."""
    ids = sorted(entries)
    out = _mean([entries[i] for i in ids])
    std = {k: float(np.std([entries[i][k] for i in ids])) for k in SCORES
           if all(isinstance(entries[i].get(k), (int, float)) for i in ids)}
    out["splits"] = {"ids": ids, "count": len(ids), "std": std,
                     "per_split": {str(i): dict(entries[i]) for i in ids}}
    return out


def _mean(values: Sequence[Any]) -> Any:
    first = values[0]
    if isinstance(first, Mapping):
        keys = [k for k in first if k not in ("splits", "split_id")
                and all(isinstance(v, Mapping) and k in v for v in values)]
        return {k: m for k in keys if (m := _mean([v[k] for v in values])) is not None}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return float(np.mean(values))
    if all(v == first for v in values):
        return first
    return None  # differing text or a missing value: left out of the mean


def split_entries(entry: Mapping[str, Any], fallback_id: int) -> Dict[int, Mapping[str, Any]]:
    """The per-split entries a metrics.json entry holds: its ``splits.per_split``, or the entry itself as split
    ``fallback_id`` (a test set with one split)."""
    if "splits" in entry:
        return {int(i): e for i, e in entry["splits"]["per_split"].items()}
    return {fallback_id: entry}


def mean_result(results: Sequence[RankResult]) -> RankResult:
    """A RankResult whose CMC, mAP, mINP and counts are the means over ``results`` (counts rounded); it has no
    queries of its own (empty per-query arrays): the results table and the CMC plot read it."""
    empty = np.zeros(0)
    return RankResult(cmc=np.mean([r.cmc for r in results], axis=0), mAP=float(np.mean([r.mAP for r in results])),
                      mINP=float(np.mean([r.mINP for r in results])),
                      num_valid=round(float(np.mean([r.num_valid for r in results]))),
                      num_query=round(float(np.mean([r.num_query for r in results]))),
                      num_gallery=round(float(np.mean([r.num_gallery for r in results]))),
                      num_skipped=round(float(np.mean([r.num_skipped for r in results]))),
                      ap=empty, inp=empty, first_match=empty.astype(np.int64))


@dataclass
class SplitMean:
    """The mean over the evaluated splits ``ids`` of a test set: ``result`` / ``rerank`` / ``aqe`` / ``chance`` as
    a TestSetResult has them, and each split's metrics entry (``entries``, for metrics.json)."""

    ids: List[int]
    entries: Dict[int, Dict[str, Any]]
    result: RankResult
    rerank: Optional[RankResult]
    aqe: Optional[RankResult]
    chance: Optional[ChanceLevel]

    @classmethod
    def of(cls, ids: Sequence[int], evals: Sequence[Any], entries: Sequence[Dict[str, Any]]) -> "SplitMean":
        """From the per-split TestSetResults ``evals`` and their metrics entries, in the order of ``ids``."""
        def mean(attr: str) -> Optional[RankResult]:
            found = [getattr(ev, attr) for ev in evals]
            return mean_result(found) if all(r is not None for r in found) else None

        chances = [ev.chance for ev in evals]
        chance = None if any(c is None for c in chances) else ChanceLevel(
            float(np.mean([c.rank1 for c in chances])), float(np.mean([c.mAP for c in chances])),
            round(float(np.mean([c.num_valid for c in chances]))))
        return cls(list(ids), dict(zip(ids, entries)), mean("result"), mean("rerank"), mean("aqe"), chance)

    def entry(self) -> Dict[str, Any]:
        """The metrics.json entry: :func:`mean_entry` of the splits' entries."""
        return mean_entry(self.entries)
