"""Distances of true and false pairs as a histogram, counted in the evaluation's own pass.

:class:`PairHistogram` is an observer of the ranking pass (pass its ``add`` to ``evaluate(observe=...)``, as
``VerificationCounter.add`` is): it counts the distance blocks the evaluation computes anyway, so the report
draws the histogram without computing a single distance of its own. Valid pairs are the split's
:class:`~reid.evaluation.protocol.Protocol`'s: junk gallery images and the gallery items the protocol removes
(same id and camera, or the query's own image) are left out, and so are junk queries. True = same pid, false =
any other valid pair (distractors included).

Per block: one ``histc`` of all its distances, less the few true and removed ones (and the junk columns), which
are gathered by the protocol's candidate lists; counts are exact (float64 sums of float32 ``histc`` counts of at
most 2^24 values each).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

import numpy as np
import torch

from reid.evaluation.protocol import JUNK_PID, IdsLike, Protocol, resolve_protocol

_HISTC_VALUES = 1 << 24  # float32 counts are exact up to 2^24


@dataclass
class DistanceHistogram:
    """Counts of true-match and false-match distances over shared fine bins (valid pairs only)."""

    edges: np.ndarray
    true_counts: np.ndarray
    false_counts: np.ndarray
    num_queries: int
    num_query_total: int

    @property
    def num_true(self) -> int:
        return int(self.true_counts.sum())

    @property
    def num_false(self) -> int:
        return int(self.false_counts.sum())

    def equal_error(self) -> Optional[Tuple[float, float]]:
        """(threshold, rate) where the share of true pairs above the threshold equals the share of false pairs at
        or below it (the equal-error point of "same person if distance <= threshold"); None without both kinds."""
        if self.num_true == 0 or self.num_false == 0:
            return None
        miss = 1 - np.cumsum(self.true_counts) / self.num_true  # true pairs beyond each bin's right edge
        accept = np.cumsum(self.false_counts) / self.num_false  # false pairs up to it
        i = int(np.argmin(np.abs(miss - accept)))
        return float(self.edges[i + 1]), float((miss[i] + accept[i]) / 2)


def distance_bound(q_feats: torch.Tensor, g_feats: torch.Tensor, metric: str) -> float:
    """The largest distance ``metric`` can give between these features: 2 for cosine, max |q| + max |g| for
    Euclidean (a histogram's range)."""
    if metric == "cosine":
        return 2.0
    return float(q_feats.float().norm(dim=1).max() + g_feats.float().norm(dim=1).max())


class PairHistogram:
    """Counts the valid pairs' distances of ``(first_query_row, block)`` distance blocks, one block at a time.

    ``split``: the split's :class:`Protocol`, or ``q_pids, g_pids, q_camids, g_camids`` with ``evaluate_rank``'s
    rule keywords. ``upper`` bounds the distances (``bins`` equal bins over [0, upper]; values beyond either end
    land in the first / last bin). ``max_queries`` > 0 counts only that many queries, evenly spaced (a cost bound
    on large test sets); the blocks still come for every query.
    """

    def __init__(self, *split: Protocol | IdsLike, upper: float, bins: int = 2000, max_queries: int = 0,
                 **rule: Any) -> None:
        protocol = resolve_protocol(split, rule)
        self.num_query_total = protocol.num_query
        self.rows: Optional[np.ndarray] = None  # the counted queries (sorted), None = all
        if max_queries and protocol.num_query > max_queries:
            self.rows = torch.linspace(0, protocol.num_query - 1, max_queries).round().long().numpy()
            protocol = protocol.subset(self.rows)
        self.protocol = protocol
        self.upper = float(upper) if upper > 0 and math.isfinite(upper) else 1.0
        self.bins = bins
        self.true_counts = torch.zeros(bins, dtype=torch.float64)
        self.false_counts = torch.zeros(bins, dtype=torch.float64)

    def _histc(self, values: torch.Tensor) -> torch.Tensor:
        """Exact float64 counts of ``values`` (clamped into [0, upper]) in the bins, on their device."""
        flat = values.reshape(-1).float().clamp(0.0, self.upper)
        counts = torch.zeros(self.bins, dtype=torch.float64, device=values.device)
        for part in flat.split(_HISTC_VALUES):
            counts += torch.histc(part, bins=self.bins, min=0.0, max=self.upper).double()
        return counts

    def add(self, start: int, block: torch.Tensor) -> None:
        """Count the distances of query rows ``start .. start + len(block) - 1`` to the whole gallery."""
        protocol = self.protocol = self.protocol.to(block.device)
        if self.rows is None:
            rows = slice(start, start + block.shape[0])
        else:  # the counted queries among this block's rows: a contiguous run of the subset's queries
            first, last = np.searchsorted(self.rows, [start, start + block.shape[0]])
            if first == last:
                return
            local = torch.as_tensor(self.rows[first:last] - start, device=block.device)
            block, rows = block.index_select(0, local), slice(int(first), int(last))
        cand, true, removed = protocol.candidates(rows)
        real = protocol.q_pids[rows] != JUNK_PID  # junk queries take no part
        near = block.gather(1, cand)
        true_counts = self._histc(near[true & real[:, None]])
        counted = block if bool(real.all()) else block[real]
        false_counts = self._histc(counted) - true_counts - self._histc(near[removed & real[:, None]])
        if protocol.has_junk:
            false_counts -= self._histc(counted[:, protocol.junk])
        self.true_counts += true_counts.cpu()
        self.false_counts += false_counts.cpu()

    def result(self) -> DistanceHistogram:
        """The histogram of every block added so far."""
        counted = self.protocol.num_query
        return DistanceHistogram(np.linspace(0.0, self.upper, self.bins + 1), self.true_counts.numpy().copy(),
                                 self.false_counts.numpy().copy(), counted, self.num_query_total)


def distance_histogram(blocks: Iterable[Tuple[int, torch.Tensor]], *split: Protocol | IdsLike, upper: float,
                       bins: int = 2000, **rule: Any) -> DistanceHistogram:
    """:class:`PairHistogram` of the given distance blocks (``split`` and ``rule`` as there)."""
    histogram = PairHistogram(*split, upper=upper, bins=bins, **rule)
    for start, block in blocks:
        histogram.add(start, block)
    return histogram.result()
