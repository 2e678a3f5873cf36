"""Verification metrics: "same person?" decisions by a distance threshold, over every valid query-gallery pair.

Pairs are the split's :class:`~reid.evaluation.protocol.Protocol` (the ranking's, never re-implemented): junk
gallery items and the gallery items the protocol removes (same pid and same camera, or the query's own image) take
no part. A *true*
pair is a query and a gallery item of the same pid; a *false* pair is any other valid pair (distractors included).
Junk queries (pid -1) take no part. A pair is accepted at threshold t when its distance d <= t.

Definitions (N_true / N_false pairs; FAR(t) = #false with d <= t / N_false, TAR(t) = #true with d <= t / N_true,
FRR = 1 - TAR):

- AUC = P(d_true < d_false) + 1/2 P(d_true = d_false) (the Mann-Whitney statistic; ties count one half), which is
  the area under the ROC polyline below.
- ROC: the operating points (FAR(t), TAR(t)) for every distance t that occurs, joined by straight segments (a
  threshold passing a true and a false pair of equal distance moves diagonally).
- ``threshold_at_far[f]``: the largest float32 t with FAR(t) <= f, i.e. the float32 number just below the
  (m+1)-th smallest false distance, m = floor(f x N_false) computed exactly (f read as the decimal it prints as);
  ``tar_at_far[f]`` = TAR at that t.
- EER: the FAR (equal to the FRR there) where the ROC polyline crosses FAR = FRR, linearly interpolated between
  the two neighbouring operating points.

Distances are float32 numbers: what evaluating float32 features gives; other inputs are rounded to float32 (a
monotone rounding: it can only create ties), and thresholds are float32 numbers.

How, exactly and in one pass over the distance blocks, without sorting the pairs: the few true (and removed)
distances are kept as values; every pair distance is counted in an exact histogram with one counter per float32
value over a window of 2^25 consecutive float32 numbers (four binades, placed from the first block), and the values
outside the window are kept as values. The false pairs are then that multiset minus the kept true and removed
values, so the counts of false distances below / equal to each true distance (hence AUC, ROC and EER) and the
k-th smallest false distance (hence the thresholds) are exact integer counts. Memory: 128 MiB of counters
(int64 beyond 2^31 pairs) per counting thread (up to 4 on a CPU) plus the kept values; time: one scatter-add per
pair, on the blocks' device.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, Optional

import numpy as np
import torch

from .distance import EvaluationError, as_distmat, as_features, iter_distance_blocks, row_blocks
from .protocol import IdsLike, Protocol, resolve_protocol
from .ranking import ordered_key

# The FARs of metrics.json's ``tar_at_far`` / ``threshold_at_far`` (TEST.VERIFY_FAR is added when not among them).
FARS = (1e-2, 1e-3, 1e-4)
WINDOW = 1 << 25  # float32 values counted one by one: 4 binades (e.g. [0.125, 2)), 128 MiB of int32 counters
_SAMPLE = 1 << 20  # block elements the window is placed from
_OFFSET = 1 << 31  # ordered_key of +0.0
_MAX_PARTS = 4  # CPU threads counting at once (each with its own counters)
_CHUNK = 1 << 22  # values whose counter indices are computed at once (a 16 MiB buffer, used again)


def far_key(far: float) -> str:
    """How a FAR is written as a key of metrics.json: 1e-3 -> "1e-3", 5e-4 -> "5e-4", 0.25 -> "2.5e-1"."""
    mantissa, exponent = f"{far:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def check_fars(fars: Sequence[float], what: str = "FAR") -> tuple[float, ...]:
    """FARs as floats in (0, 1); anything else is an EvaluationError naming ``what``."""
    out = []
    for far in fars:
        if not isinstance(far, (int, float)) or not 0.0 < float(far) < 1.0:
            raise EvaluationError(f"{what} must be a false-accept rate in (0, 1), e.g. 1e-3; got {far!r}.")
        out.append(float(far))
    return tuple(out)


@dataclass
class VerificationResult:
    """AUC, EER, TAR and thresholds at FARs (keys as :func:`far_key`), the ROC polyline and the pair counts.

    ``far`` is the FAR whose threshold a model keeps (TEST.VERIFY_FAR): ``threshold`` is ``threshold_at_far``
    there. Values are NaN (None in :meth:`as_dict`) when there are no true or no false pairs.
    """

    auc: float
    eer: float
    tar_at_far: Dict[str, float]
    threshold_at_far: Dict[str, float]
    num_true: int
    num_false: int
    far: float
    roc_far: np.ndarray = field(repr=False)
    roc_tar: np.ndarray = field(repr=False)

    @property
    def threshold(self) -> float:
        return self.threshold_at_far[far_key(self.far)]

    def as_dict(self) -> dict:
        """Plain numbers for metrics.json (NaN becomes None)."""
        def num(x: float) -> Optional[float]:
            return None if math.isnan(x) else float(x)

        return {"auc": num(self.auc), "eer": num(self.eer),
                "tar_at_far": {k: num(v) for k, v in self.tar_at_far.items()},
                "threshold_at_far": {k: num(v) for k, v in self.threshold_at_far.items()},
                "far": far_key(self.far), "threshold": num(self.threshold),
                "num_true_pairs": self.num_true, "num_false_pairs": self.num_false}


def _code(x: np.float32) -> int:
    """An integer with the order of float32 values (-0.0 and +0.0 share one)."""
    return int(ordered_key(torch.tensor([float(x)], dtype=torch.float32))[0])


def _from_code(code: int) -> np.float32:
    bits = code - _OFFSET
    bits = bits if bits >= 0 else -bits | -(1 << 31)  # back to the float's int32 bit pattern
    return np.array([bits], dtype=np.int64).astype(np.int32).view(np.float32)[0]


class _Float32Counts:
    """An exact multiset of float32 values: a counter per value in a window of consecutive float32 numbers, the
    values outside the window kept as they are. ``-0.0`` counts as ``+0.0``.

    On a CPU the counters are bytes (32 MiB for the window, per counting thread): the scatter-add is bound by cache
    misses, and a quarter of the memory makes it about twice as fast as int32 counters. Bytes wrap at 256, which is
    detected exactly: after each :meth:`add` the sum of each part's window bytes is compared with the number of
    values it counted there since the bytes were last emptied (a wrap loses 256). On a wrap the add is undone
    (adding 255 per value subtracts 1 mod 256), the bytes are emptied into exact totals (int32, int64 beyond 2^31
    values) and the add is redone; an add that wraps a byte by itself (256 equal distances in one block) is
    counted into the totals directly. A GPU counts into exact totals directly (its atomics are not cache-bound).
    """

    def __init__(self, device: torch.device, num_values: int) -> None:
        self.device = device
        self.dtype = torch.int64 if num_values >= 1 << 31 else torch.int32
        self.narrow = device.type == "cpu"
        # A scatter-add runs on one CPU core: with several, each thread counts a share of the rows into its own
        # counters (summed at the end). A GPU's atomics are parallel already.
        self.parts = 1 if not self.narrow else max(1, min(torch.get_num_threads(), _MAX_PARTS))
        self.start = 0  # int32 bit pattern of the window's first value (>= 0: non-negative floats only)
        self.size = min(WINDOW, max(1 << 12, num_values))  # more counters than values would only cost memory
        self.skip = self.size + 2  # counters per part: [below, window..., above, skipped]; only the window is read
        self.counts: Optional[torch.Tensor] = None  # (parts, size + 3): uint8 on a CPU, else the exact dtype
        self.totals: Optional[torch.Tensor] = None  # (1, size + 3) exact, where full byte counters are emptied
        self.pending = [0] * self.parts  # values each part counted into its window bytes since they were emptied
        self.outside: list[torch.Tensor] = []

    def _place(self, values: torch.Tensor) -> None:
        """The window: from a low quantile of a sample of the first values, as far up as the sample goes, then
        downwards with the room left."""
        flat = values.reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLE)].float()
        sample = sample[sample >= 0]
        if sample.numel():
            lo = int(torch.kthvalue(sample.cpu(), max(1, sample.numel() // 1000)).values.view(torch.int32))
            hi = int(sample.max().cpu().view(torch.int32))
            start = lo - max(0, self.size - (hi - lo) * 3 // 2)  # room for half the span again above the maximum
            self.start = min(max(0, start), (1 << 31) - 2 - self.size)  # bit patterns stay int32
        self.counts = torch.zeros(self.parts, self.size + 3, dtype=torch.uint8 if self.narrow else self.dtype,
                                  device=self.device)

    def add(self, block: torch.Tensor, skip_cols: Optional[torch.Tensor] = None,
            skip_rows: Optional[torch.Tensor] = None) -> None:
        """Count the float32 values of the contiguous (rows, cols) ``block`` but those of the columns ``skip_cols``
        and the rows ``skip_rows`` (indices)."""
        if block.numel() == 0:
            return
        if self.counts is None:
            self._place(block)
        # A CPU computes the counter indices a chunk of rows at a time, in one buffer; a GPU all at once.
        rows = max(self.parts, _CHUNK // block.shape[1]) if self.narrow else block.shape[0]
        buffer = torch.empty(min(rows, block.shape[0]), block.shape[1], dtype=torch.int32, device=block.device)
        chunks = []
        for lo in range(0, block.shape[0], rows):
            local = None if skip_rows is None else skip_rows[(skip_rows >= lo) & (skip_rows < lo + rows)] - lo
            chunks.append((block[lo:lo + rows], local if local is None or local.numel() else None))
        job = (chunks, buffer, skip_cols)
        outside: list[torch.Tensor] = []
        counted = self._count(self.counts, job, 1, outside)
        if self.narrow and self._wrapped(counted):
            self._undo(job)  # empty the bytes into the totals, count again
            outside = []
            counted = self._count(self.counts, job, 1, outside)
            if self._wrapped(counted):  # the block wraps a byte by itself: count it into the totals
                self._undo(job)
                outside = []
                self._count(self.totals, job, 1, outside, parts=1)
                counted = [0] * self.parts
        self.pending = [a + b for a, b in zip(self.pending, counted)]
        self.outside.extend(outside)

    def _count(self, counts: torch.Tensor, job: tuple, step: int, outside: Optional[list] = None,
               parts: Optional[int] = None) -> list:
        """Add ``step`` per value of the job's chunks to ``counts``, each chunk's rows split between the parts'
        counters (counted in threads); values outside the window go to ``outside`` when it is given. Returns how
        many values each part counted in its window."""
        chunks, buffer, skip_cols = job
        parts = parts or self.parts
        one = torch.full((), step, dtype=counts.dtype, device=counts.device)
        counted = [0] * self.parts
        with ThreadPoolExecutor(parts) as pool:  # torch releases the GIL inside index_add_
            for values, skip_rows in chunks:
                bits = values.view(torch.int32)
                # Negative floats have negative bit patterns: they land below the window like every value under it.
                idx = torch.clamp(bits, self.start - 1, self.start + self.size, out=buffer[:values.shape[0]])
                idx.sub_(self.start - 1)
                if skip_cols is not None:
                    idx.index_fill_(1, skip_cols, self.skip)
                if skip_rows is not None:
                    idx.index_fill_(0, skip_rows, self.skip)
                shares = idx.chunk(parts)
                list(pool.map(lambda p: counts[p].index_add_(0, shares[p].view(-1), one.expand(shares[p].numel())),
                              range(len(shares))))
                low, high = torch.aminmax(bits)
                out = None
                if outside is not None and (int(low) < self.start or int(high) >= self.start + self.size):
                    out = (idx == 0) | (idx == self.size + 1)
                    outside.append(values[out] + 0.0)  # + 0.0: -0.0 becomes +0.0
                for p, share in enumerate(shares):
                    skipped = 0 if skip_cols is None else share.shape[0] * skip_cols.numel()
                    if skip_rows is not None:
                        mine = skip_rows - p * shares[0].shape[0]
                        junk = int(((mine >= 0) & (mine < share.shape[0])).sum())
                        skipped += junk * (share.shape[1] - (0 if skip_cols is None else skip_cols.numel()))
                    lost = 0 if out is None else int(out[p * shares[0].shape[0]:][:share.shape[0]].sum())
                    counted[p] += share.numel() - skipped - lost
        return counted

    def _wrapped(self, counted: list) -> bool:
        """Whether a byte counter wrapped in the last count: a part's window bytes sum to other than the values it
        counted there since they were last emptied (bytes are on the CPU: NumPy sums them into a wide integer
        about five times faster than torch's ``sum(dtype=...)``)."""
        return any(int(self.counts[p, 1:self.size + 1].numpy().sum(dtype=np.uint64))
                   != self.pending[p] + counted[p] for p in range(self.parts))

    def _undo(self, job: tuple) -> None:
        """Take the last count back (+255 per value = -1 mod 256) and empty the bytes into the exact totals."""
        self._count(self.counts, job, 255)
        self._empty()

    def _empty(self) -> None:
        """Add the byte counters to the exact totals and zero them."""
        if self.totals is None:
            self.totals = torch.zeros(1, self.size + 3, dtype=self.dtype, device=self.device)
        self.totals[0] += _sum_rows(self.counts, self.dtype)
        self.counts.zero_()
        self.pending = [0] * self.parts

    def finish(self, minus: torch.Tensor) -> "_Counted":
        """The multiset less the values ``minus`` (each of which was counted)."""
        if self.counts is None:
            self.counts = torch.zeros(1, self.size + 3, dtype=self.dtype, device=self.device)
        outside = torch.cat(self.outside).sort().values if self.outside else minus.new_zeros(0)
        if bool(torch.isnan(outside[-1:]).any()):
            raise EvaluationError("the distances contain NaN; check the features for NaN/inf.")
        window = _sum_rows(self.counts[:, 1:self.size + 1], self.dtype)
        if self.totals is not None:
            window += self.totals[0, 1:self.size + 1]
        return _Counted(self.start, window.cumsum_(0), outside, minus.sort().values)


def _sum_rows(counts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The column sums of counter rows in ``dtype`` (on a CPU through NumPy, about five times faster)."""
    if counts.device.type != "cpu":
        return counts.sum(0, dtype=dtype)
    wide = np.int64 if dtype == torch.int64 else np.int32
    return torch.from_numpy(counts.numpy().sum(0, dtype=wide))


@dataclass
class _Counted:
    """Counting queries on a finished :class:`_Float32Counts` less some values (sorted float32 ``minus``)."""

    start: int
    cum: torch.Tensor  # inclusive cumulative counts over the window
    outside: torch.Tensor  # sorted values outside the window
    minus: torch.Tensor  # sorted values to leave out

    def _window_le(self, x: torch.Tensor, strict: bool) -> torch.Tensor:
        """Counts of window values < x (``strict``) or <= x."""
        pos = ordered_key(x) - (self.start + _OFFSET)  # window index of x (any value, any side of the window)
        last = pos - 1 if strict else pos
        got = self.cum.index_select(0, last.clamp(0, self.cum.numel() - 1))
        return torch.where(last < 0, 0, got)

    def count(self, x: torch.Tensor, strict: bool) -> torch.Tensor:
        """For each float32 value of ``x``: how many values of the multiset are < x (``strict``) or <= x."""
        x = x.to(self.cum.device) + 0.0
        right = not strict
        return (self._window_le(x, strict) + torch.searchsorted(self.outside, x, right=right)
                - torch.searchsorted(self.minus, x, right=right))

    def smallest(self, k: int) -> np.float32:
        """The k-th smallest value (1-based; k <= the multiset's size), by bisection over the float32 order."""
        lo, hi = _code(np.float32(-np.inf)), _code(np.float32(np.inf))
        while lo < hi:  # the smallest code whose value has >= k values at or below it
            mid = (lo + hi) // 2
            x = torch.tensor([float(_from_code(mid))], dtype=torch.float32)
            if int(self.count(x, strict=False)[0]) >= k:
                hi = mid
            else:
                lo = mid + 1
        return _from_code(lo)


class VerificationCounter:
    """Accumulates verification metrics from the ``(first_query_row, block)`` distance blocks of a query x gallery
    split, one block at a time (pass :meth:`add` as ``observe`` to ``evaluate`` to share its pass).

    ``split``: the split's :class:`Protocol`, or ``q_pids, g_pids, q_camids, g_camids`` with ``evaluate_rank``'s
    rule keywords; ``device``: the blocks' device.
    """

    def __init__(self, *split: Protocol | IdsLike, far: float = 1e-3, fars: Sequence[float] = FARS,
                 device: torch.device | str = "cpu", **rule: Any) -> None:
        self.far = check_fars([far], "the FAR of the kept threshold")[0]
        self.fars = tuple(sorted(set(check_fars(fars)) | {self.far}, reverse=True))
        self.protocol = resolve_protocol(split, rule, device)
        self.junk_cols = self.protocol.junk.nonzero().squeeze(1) if self.protocol.has_junk else None
        self.num_cols = self.protocol.num_gallery - (0 if self.junk_cols is None else self.junk_cols.numel())
        self.counts = _Float32Counts(self.protocol.device, self.protocol.num_query * self.protocol.num_gallery)
        self.trues: list[torch.Tensor] = []
        self.removed: list[torch.Tensor] = []
        self.num_all = 0

    def add(self, start: int, block: torch.Tensor) -> None:
        """Count the distances of query rows ``start .. start + len(block) - 1`` to the whole gallery."""
        rows = slice(start, start + block.shape[0])
        block = block.to(torch.float32).contiguous()
        cand, true, removed = self.protocol.candidates(rows)
        if cand.numel():
            near = block.gather(1, cand)
            self.trues.append(near[true])
            self.removed.append(near[removed])
        junk_rows = (self.protocol.q_pids[rows] == -1).nonzero().squeeze(1)  # junk queries take no part
        self.counts.add(block, self.junk_cols, junk_rows if junk_rows.numel() else None)
        self.num_all += (block.shape[0] - junk_rows.numel()) * self.num_cols

    def result(self) -> VerificationResult:
        """The metrics of every block added so far."""
        device = self.protocol.q_pids.device
        trues = torch.cat(self.trues) + 0.0 if self.trues else torch.zeros(0, device=device)
        removed = torch.cat(self.removed) + 0.0 if self.removed else torch.zeros(0, device=device)
        false = self.counts.finish(torch.cat([trues, removed]))
        num_true, num_false = trues.numel(), self.num_all - trues.numel() - removed.numel()
        return _metrics(trues.sort().values, false, num_true, num_false, self.fars, self.far)


def _metrics(trues: torch.Tensor, false: _Counted, num_true: int, num_false: int, fars: Sequence[float],
             far: float) -> VerificationResult:
    """AUC, ROC, EER and thresholds from the sorted true distances and the false ones' counting queries."""
    nan = float("nan")
    if num_true == 0 or num_false == 0:
        empty = {far_key(f): nan for f in fars}
        return VerificationResult(nan, nan, dict(empty), dict(empty), num_true, num_false, far, np.zeros(0),
                                  np.zeros(0))
    values, mult = torch.unique_consecutive(trues, return_counts=True)
    below = false.count(values, strict=True)
    equal = false.count(values, strict=False) - below
    mult, below, equal = (t.cpu().numpy().astype(np.int64) for t in (mult, below, equal))
    # AUC: each true pair against the false ones farther away (one half for equal ones), exactly in integers.
    wins = int(np.sum(mult * (2 * (num_false - below - equal) + equal)))
    auc = float(Fraction(wins, 2 * num_true * num_false))
    # ROC vertices: before and after each distinct true distance (false-only stretches between them are straight).
    true_before = np.concatenate([[0], np.cumsum(mult)[:-1]])
    roc_far = np.concatenate([[0.0], np.stack([below, below + equal], 1).reshape(-1) / num_false, [1.0]])
    roc_tar = np.concatenate([[0.0], np.stack([true_before, true_before + mult], 1).reshape(-1) / num_true, [1.0]])
    tar_at, thr_at = {}, {}
    for f in fars:
        m = math.floor(Fraction(repr(f)) * num_false)  # the decimal f, not its binary approximation
        first_rejected = false.smallest(m + 1)
        threshold = np.nextafter(first_rejected, np.float32(-np.inf))
        accepted = int(torch.searchsorted(trues, torch.tensor([float(first_rejected)], device=trues.device))[0])
        tar_at[far_key(f)], thr_at[far_key(f)] = accepted / num_true, float(threshold)
    return VerificationResult(auc, _eer(roc_far, roc_tar), tar_at, thr_at, num_true, num_false, far, roc_far, roc_tar)


def _eer(far: np.ndarray, tar: np.ndarray) -> float:
    """Where the ROC polyline (FAR, TAR) crosses FAR = FRR = 1 - TAR: FAR + TAR grows along it from 0 to 2."""
    s = far + tar
    k = int(np.searchsorted(s, 1.0, side="left"))  # first vertex with FAR + TAR >= 1
    if k == 0 or s[k] == 1.0:
        return float(far[k])
    lam = (1.0 - s[k - 1]) / (s[k] - s[k - 1])
    return float(far[k - 1] + lam * (far[k] - far[k - 1]))


def _run(counter: VerificationCounter, blocks: Iterator[tuple[int, torch.Tensor]]) -> VerificationResult:
    for start, block in blocks:
        counter.add(start, block)
    return counter.result()


def evaluate_verification(distmat: torch.Tensor | np.ndarray, *split: Protocol | IdsLike, far: float = 1e-3,
                          fars: Sequence[float] = FARS, chunk_size: int | None = None,
                          **rule: Any) -> VerificationResult:
    """Verification metrics of a (num_query, num_gallery) distance matrix (see the module docstring); ``split`` as
    in :class:`VerificationCounter`."""
    distmat = as_distmat(distmat)
    protocol = resolve_protocol(split, rule, distmat.device, distmat.shape)
    return _run(VerificationCounter(protocol, far=far, fars=fars, device=distmat.device),
                row_blocks(distmat, chunk_size))


def verify(q_feats: torch.Tensor | np.ndarray, g_feats: torch.Tensor | np.ndarray, *split: Protocol | IdsLike,
           metric: str = "cosine", far: float = 1e-3, fars: Sequence[float] = FARS, chunk_size: int | None = None,
           **rule: Any) -> VerificationResult:
    """Verification metrics from features, one block of distances at a time (``iter_distance_blocks``); ``split``
    as in :class:`VerificationCounter`."""
    q_feats, g_feats = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    protocol = resolve_protocol(split, rule, q_feats.device, (q_feats.shape[0], g_feats.shape[0]))
    return _run(VerificationCounter(protocol, far=far, fars=fars, device=q_feats.device),
                iter_distance_blocks(q_feats, g_feats, metric, chunk_size, reuse=True))

