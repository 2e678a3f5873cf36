"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), exact and sparse, memory-bounded on any torch device.

Same definition as the authors' code, on all N = query + gallery samples:
  d(i, j)   squared Euclidean distance of the given features, each row divided by its maximum
            (for L2-normalised features: (2 - 2 cos) / row max);
  N(i, k)   the k nearest samples of i in (distance, index) order, i itself included; R(i) = the j in N(i, k1 + 1)
            with i in N(j, k1 + 1); R*(i) = R(i) plus the R_half(c) (k = round(k1 / 2) + 1) of every c in R(i)
            that shares more than 2/3 of its members with R(i);
  V(i, j)   exp(-d(i, j)) on R*(i), normalised to sum 1; local query expansion: V(i) <- mean of V(j), j in N(i, k2);
  final     (1 - lambda) * Jaccard + lambda * d, Jaccard(i, j) = 1 - m / (2 - m), m = sum_t min(V(i, t), V(j, t)).

Why sparse: V has at most a few tens of non-zeros per row, so instead of the textbook's several N x N matrices
(MSMT17: N = 93,820) this keeps N x (k1 + 1) neighbours, V as padded rows, and only the query x gallery output.
The one N x N pass (distances for the neighbour lists and row maxima) is done block by block on the device.
`Reranker` computes the output rows on demand, so that an evaluation need not hold the query x gallery matrix
(MSMT17: 3.6 GiB) at all: it then recomputes each block's original distances (one more query x gallery product).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from reid.evaluation.distance import (DISTANCE_ELEMS, EvaluationError, as_features, block_rows, check_finite,
                                      check_pair, exact_mm)

# Query x gallery sizes up to which a Reranker holds the original distances of its neighbour pass (1 GiB of
# float32) instead of recomputing them per block (one more query x gallery product, MSMT17: ~13 s on 2 CPU cores).
HOLD_ELEMS = 1 << 28


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1:
        raise EvaluationError(f"re-ranking k1 must be at least 1, got {k1} (paper default 20).")
    if not 1 <= k2 <= k1 + 1:
        raise EvaluationError(f"re-ranking k2 must be in [1, k1 + 1] = [1, {k1 + 1}], got {k2} (paper default 6).")
    if not 0.0 <= lambda_value <= 1.0:
        raise EvaluationError(f"re-ranking lambda_value must be in [0, 1], got {lambda_value} (paper default 0.3).")


class _Nearest:
    """Per row, the `keep` smallest keys seen so far (values, indices) and the largest, merged block by block.

    A row's key for column j is sq_j - 2 <x_i, x_j>: its squared distance less the row constant sq_i.
    """

    def __init__(self, num: int, keep: int, like: torch.Tensor) -> None:
        self.vals = torch.full((num, keep), float("inf"), dtype=like.dtype, device=like.device)
        self.idx = torch.zeros(num, keep, dtype=torch.int64, device=like.device)
        self.max = torch.full((num,), float("-inf"), dtype=like.dtype, device=like.device)

    def update(self, rows: slice, keys: torch.Tensor, first_col: int) -> None:
        """Merge a block of keys (rows, columns from `first_col`): the block's own top k, then the union's."""
        self.max[rows] = torch.maximum(self.max[rows], keys.amax(1))
        vals, idx = torch.topk(keys, min(self.vals.shape[1], keys.shape[1]), dim=1, largest=False, sorted=False)
        vals, idx = torch.cat([self.vals[rows], vals], 1), torch.cat([self.idx[rows], idx + first_col], 1)
        vals, pick = torch.topk(vals, self.vals.shape[1], dim=1, largest=False)
        self.vals[rows], self.idx[rows] = vals, idx.gather(1, pick)


def _neighbours(x: torch.Tensor, sq: torch.Tensor, num_query: int, k: int, chunk_size: int | None,
                hold: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One pass over the upper triangle of the N x N distances, in square blocks (each dot product once).

    Returns the k nearest neighbours of every sample in (distance, index) order (N, k) with their squared
    distances (N, k), the row maxima of the squared distances (N,) and, with `hold`, the row-normalised query x
    gallery distances (else None).
    """
    num = x.shape[0]
    near = _Nearest(num, min(k + 1, num), x)  # one extra, to see ties at the k-th place
    out = torch.empty(num_query, num - num_query, dtype=x.dtype, device=x.device) if hold else None
    size = chunk_size or math.isqrt(block_rows(1, x.device, None))
    # two blocks reused throughout: a fresh one per block would be page-faulted in again each time on a CPU
    buffers = torch.empty(2, min(size, num) ** 2, dtype=x.dtype, device=x.device)
    for a in range(0, num, size):
        rows = slice(a, min(a + size, num))
        for b in range(a, num, size):
            cols = slice(b, min(b + size, num))
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            dots = exact_mm(x[rows], x[cols].T, out=buffers[0, : shape[0] * shape[1]].view(shape))
            keys = torch.add(sq[cols], dots, alpha=-2.0, out=buffers[1, : shape[0] * shape[1]].view(shape))
            if a == b:
                keys.diagonal().copy_(-sq[rows])  # exactly d(i, i) = 0
            near.update(rows, keys, b)
            if out is not None:
                _copy_query_gallery(out, keys, rows, cols, sq)
            if b != a:  # the same formula, key = sq(column sample) - 2 <x_i, x_j>, for the columns' rows;
                # copied transposed (a blocked copy) so that every reduction runs along contiguous rows
                torch.add(sq[rows, None], dots, alpha=-2.0, out=dots)
                near.update(cols, buffers[1, : shape[0] * shape[1]].view(shape[::-1]).copy_(dots.T), a)
    row_max = (near.max + sq).clamp_(min=torch.finfo(x.dtype).tiny)
    if out is not None:
        out.div_(row_max[:num_query, None])
    nbrs, d2 = _stable_order(near, x, sq, k)
    return nbrs, d2, row_max, out


def _copy_query_gallery(out: torch.Tensor, keys: torch.Tensor, rows: slice, cols: slice, sq: torch.Tensor) -> None:
    """Squared distances of the block's query rows to its gallery columns, into `out` (num_query x num_gallery)."""
    num_query = out.shape[0]
    r1, c0 = min(rows.stop, num_query), max(cols.start, num_query)
    if rows.start < r1 and c0 < cols.stop:
        _squared(keys[: r1 - rows.start, c0 - cols.start :], sq[rows.start : r1],
                 out[rows.start : r1, c0 - num_query : cols.stop - num_query])


def _squared(keys: torch.Tensor, sq_rows: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Squared distances from a block's keys (sq(column) - 2 <x_i, x_j>): plus sq(row), clamped at 0 (rounding);
    the one formula of the held and the recomputed query x gallery distances."""
    return torch.add(keys, sq_rows[:, None], out=out).clamp_(min=0.0)


def _stable_order(near: _Nearest, x: torch.Tensor, sq: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest in (distance, index) order, as a stable argsort of the row gives them, and their distances."""
    idx, by_idx = near.idx.sort(1)
    vals = near.vals.gather(1, by_idx)
    by_val = torch.argsort(vals, dim=1, stable=True)
    idx, vals = idx.gather(1, by_val), vals.gather(1, by_val)
    if vals.shape[1] > k:
        # topk picks arbitrarily among keys tied at the k-th place: settle those rows with a stable argsort.
        tied_rows = (vals[:, k - 1] == vals[:, k]).nonzero().squeeze(1)
        for tied in tied_rows.split(block_rows(x.shape[0], x.device)):
            keys = exact_mm(x[tied], x.T).mul_(-2.0).add_(sq)
            keys[torch.arange(tied.numel(), device=x.device), tied] = -sq[tied]
            order = torch.argsort(keys, dim=1, stable=True)[:, :k]
            idx[tied, :k], vals[tied, :k] = order, keys.gather(1, order)
    return idx[:, :k], (vals[:, :k] + sq[:, None]).clamp_(min=0.0)


def _reciprocal(nbrs: torch.Tensor, width: int, chunk_size: int | None) -> torch.Tensor:
    """(N, width) mask: nbrs[i, a] has i among its own first `width` neighbours."""
    num = nbrs.shape[0]
    out = torch.empty(num, width, dtype=torch.bool, device=nbrs.device)
    rows = block_rows(width * width, nbrs.device, chunk_size)
    for start in range(0, num, rows):
        fwd = nbrs[start : start + rows, :width]
        me = torch.arange(start, start + fwd.shape[0], device=nbrs.device)
        out[start : start + rows] = (nbrs[fwd, :width] == me[:, None, None]).any(2)
    return out


def _unique_rows(idx: torch.Tensor, sentinel: int) -> torch.Tensor:
    """Each row's distinct values in ascending order, padded with `sentinel` (which must be the largest)."""
    idx = idx.sort(1).values
    repeat = torch.zeros_like(idx, dtype=torch.bool)
    repeat[:, 1:] = idx[:, 1:] == idx[:, :-1]
    idx = idx.masked_fill(repeat, sentinel).sort(1).values
    return idx[:, : int((idx != sentinel).sum(1).max())]


def _expansion_sets(nbrs: torch.Tensor, rec: torch.Tensor, rec_half: torch.Tensor, rows: slice) -> torch.Tensor:
    """R*(i) for a block of rows: (B, W) indices padded with N."""
    num, half = nbrs.shape[0], rec_half.shape[1]
    fwd, is_rec = nbrs[rows], rec[rows]
    r_set = torch.where(is_rec, fwd, num).sort(1).values  # (B, K) R(i) ascending, padded with N
    cand = nbrs[fwd, :half]  # (B, K, half): R_half of each candidate, masked by rec_half
    cand_ok = rec_half[fwd]
    # |R_half(c) & R(i)| by binary search in the sorted R(i): O(K half log K) per row, not O(K half K)
    shared = (_member(r_set, cand.flatten(1))[0].view_as(cand) & cand_ok).sum(-1)
    take = is_rec & (3 * shared > 2 * cand_ok.sum(-1))  # |R_half(c) & R(i)| > 2/3 |R_half(c)|, in integers
    members = torch.cat([r_set, torch.where(take[..., None] & cand_ok, cand, num).flatten(1)], 1)
    return _unique_rows(members, num)


def _member(sorted_rows: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, whether each of `values` is in that row of `sorted_rows` (ascending), and where (a valid index)."""
    pos = torch.searchsorted(sorted_rows, values.contiguous()).clamp_(max=sorted_rows.shape[1] - 1)
    return sorted_rows.gather(1, pos) == values, pos


def _squared_distances(x: torch.Tensor, sq: torch.Tensor, nbrs: torch.Tensor, nbr_d2: torch.Tensor,
                       idx: torch.Tensor, rows: slice) -> torch.Tensor:
    """d^2(i, e) for e in R*(i): looked up among i's k nearest, recomputed (dot products) for the few others."""
    num = x.shape[0]
    own, order = nbrs[rows].sort(1)
    hit, pos = _member(own, idx)
    out = torch.where(hit, nbr_d2[rows].gather(1, order.gather(1, pos)), 0.0)
    miss_row, miss_col = ((idx < num) & ~hit).nonzero(as_tuple=True)
    pairs = block_rows(2 * x.shape[1], x.device, None)  # bounds the gathered features
    for lo in range(0, miss_row.numel(), pairs):
        r, c = miss_row[lo : lo + pairs], miss_col[lo : lo + pairs]
        i, e = r + rows.start, idx[r, c]
        out[r, c] = (sq[i] + sq[e] - 2.0 * (x[i] * x[e]).sum(1)).clamp_(min=0.0)
    return out


def _pad_cat(parts: list[torch.Tensor], fill: float | int) -> torch.Tensor:
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=fill) for p in parts])


def _weights(x: torch.Tensor, sq: torch.Tensor, nbrs: torch.Tensor, nbr_d2: torch.Tensor, row_max: torch.Tensor,
             k1: int, chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse V as padded rows: indices (N, W) (padding N) and values (N, W) (padding 0)."""
    num, k = nbrs.shape
    half = min(int(round(k1 / 2)) + 1, k)  # Python's round is half-to-even like np.around in the original code
    rec, rec_half = _reciprocal(nbrs, k, chunk_size), _reciprocal(nbrs, half, chunk_size)
    rows_per = block_rows(k * half * k, x.device, chunk_size)
    idx_parts, val_parts = [], []
    for start in range(0, num, rows_per):
        rows = slice(start, min(start + rows_per, num))
        idx = _expansion_sets(nbrs, rec, rec_half, rows)
        d = _squared_distances(x, sq, nbrs, nbr_d2, idx, rows) / row_max[rows, None]
        w = torch.where(idx < num, torch.exp(-d), 0.0)
        idx_parts.append(idx)
        val_parts.append(w / w.sum(1, keepdim=True))
    return _pad_cat(idx_parts, num), _pad_cat(val_parts, 0.0)


def _query_expansion(idx: torch.Tensor, val: torch.Tensor, nbrs: torch.Tensor, k2: int,
                     chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """V(i) <- mean of V(j) over the k2 nearest j (i included), merged into padded sparse rows."""
    num = idx.shape[0]
    width = k2 * idx.shape[1]
    rows_per = block_rows(width, idx.device, chunk_size)
    idx_parts, val_parts = [], []
    for start in range(0, num, rows_per):
        near = nbrs[start : start + rows_per, :k2]
        cols, order = idx[near].flatten(1).sort(1)
        vals = val[near].flatten(1).gather(1, order)
        new_run = torch.ones_like(cols, dtype=torch.bool)
        new_run[:, 1:] = cols[:, 1:] != cols[:, :-1]
        run = torch.cumsum(new_run, 1) - 1
        out_val = torch.zeros_like(vals).scatter_add_(1, run, vals) / k2
        out_idx = torch.full_like(cols, num).scatter_(1, run, cols)
        keep = int((out_idx != num).sum(1).max())
        idx_parts.append(out_idx[:, :keep])
        val_parts.append(out_val[:, :keep])
    return _pad_cat(idx_parts, num), _pad_cat(val_parts, 0.0)


def _inverted_index(idx: torch.Tensor, val: torch.Tensor, first_row: int) -> tuple[torch.Tensor, ...]:
    """Column-major view of the rows from `first_row` on: per column t, its (row - first_row, value) entries."""
    num = idx.shape[0]
    sub_idx, sub_val = idx[first_row:], val[first_row:]
    present = sub_idx < num
    rows = torch.arange(sub_idx.shape[0], device=idx.device)[:, None].expand_as(sub_idx)[present]
    cols, vals = sub_idx[present], sub_val[present]
    order = torch.argsort(cols, stable=True)
    counts = torch.bincount(cols, minlength=num)
    return torch.cumsum(counts, 0) - counts, counts, rows[order], vals[order]


def _jaccard(q_idx: torch.Tensor, q_val: torch.Tensor, inverted: tuple[torch.Tensor, ...], num: int,
             num_gallery: int) -> torch.Tensor:
    """Jaccard distances (B, num_gallery) of query rows given as sparse V rows (padding `num`), through the inverted
    index of the gallery rows."""
    col_start, col_count, g_rows, g_vals = inverted
    bsz = q_idx.shape[0]
    present = q_idx < num
    e_row = torch.arange(bsz, device=q_idx.device)[:, None].expand_as(q_idx)[present]
    e_col, e_val = q_idx[present], q_val[present]
    acc = torch.zeros(bsz * num_gallery, dtype=q_val.dtype, device=q_val.device)
    pairs = col_count[e_col]
    pair_budget = block_rows(8, q_idx.device, None)  # ~50 bytes per pair: an eighth of the element budget
    bounds = _split(pairs, pair_budget)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        _accumulate_min(acc, num_gallery, e_row[lo:hi], e_col[lo:hi], e_val[lo:hi], pairs[lo:hi],
                        (col_start, g_rows, g_vals))
    m = acc.view(bsz, num_gallery)
    return 1.0 - m / (2.0 - m)


def _split(sizes: torch.Tensor, budget: int) -> list[int]:
    """Boundaries that cut consecutive items into groups of about `budget` in total (no item is split)."""
    window = torch.div(torch.cumsum(sizes, 0) - 1, budget, rounding_mode="floor")
    return [0, *torch.unique_consecutive(window, return_counts=True)[1].cumsum(0).tolist()]


def _accumulate_min(acc: torch.Tensor, num_gallery: int, e_row: torch.Tensor, e_col: torch.Tensor,
                    e_val: torch.Tensor, pairs: torch.Tensor, inverted: tuple[torch.Tensor, ...]) -> None:
    """acc[q, g] += min(V(q, t), V(g, t)) for every query entry (q, t) and every gallery entry of column t."""
    col_start, g_rows, g_vals = inverted
    total = int(pairs.sum())
    # pair p of entry e reads gallery entry col_start[t_e] + (p - first pair of e): the per-entry offsets and
    # values are repeated per pair directly (no per-pair entry index to gather through)
    shift = col_start[e_col] - (torch.cumsum(pairs, 0) - pairs)
    src = torch.arange(total, device=acc.device).add_(torch.repeat_interleave(shift, pairs, output_size=total))
    dest = torch.repeat_interleave(e_row * num_gallery, pairs, output_size=total).add_(g_rows[src])
    vals = torch.minimum(torch.repeat_interleave(e_val, pairs, output_size=total), g_vals[src])
    acc.index_add_(0, dest, vals)


class Reranker:
    """k-reciprocal re-ranking of a query x gallery split, prepared once (neighbour lists, sparse V, the gallery's
    inverted index); its re-ranked query rows are computed on demand: all at once (:meth:`matrix`), block by
    block (:meth:`blocks`: what ``evaluate(rerank=True)`` ranks) or any rows (:meth:`rows`).

    ``hold``: keep the original query x gallery distances of the neighbour pass (4 bytes per pair) rather than
    recompute each block's (one more query x gallery product); None holds them up to HOLD_ELEMS pairs.
    ``normalize``: L2-normalise the features first (the usual cosine setting), in the one concatenated copy.
    Other arguments as in :func:`re_ranking`.
    """

    def __init__(self, q_feats: torch.Tensor | np.ndarray, g_feats: torch.Tensor | np.ndarray, k1: int = 20,
                 k2: int = 6, lambda_value: float = 0.3, chunk_size: int | None = None, *, normalize: bool = False,
                 hold: bool | None = None) -> None:
        _check_params(k1, k2, lambda_value)
        q, g = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
        check_pair(q, g)
        if q.shape[0] == 0 or g.shape[0] == 0:
            raise EvaluationError(f"re-ranking needs queries and gallery samples, got {q.shape[0]} and {g.shape[0]}.")
        check_finite(q, "q_feats")
        check_finite(g, "g_feats")
        self.num_query, self.num_gallery = q.shape[0], g.shape[0]
        self.lambda_value, self.chunk_size = lambda_value, chunk_size
        x = torch.cat([q, g])
        if normalize:  # torch.nn.functional.normalize's formula, in place
            x.div_(x.norm(2, 1, keepdim=True).clamp_min_(1e-12))
        sq = x.pow(2).sum(1)
        hold = self.num_query * self.num_gallery <= HOLD_ELEMS if hold is None else hold
        nbrs, nbr_d2, self._row_max, self._held = _neighbours(x, sq, self.num_query, min(k1 + 1, x.shape[0]),
                                                              chunk_size, hold)
        idx, val = _weights(x, sq, nbrs, nbr_d2, self._row_max, k1, chunk_size)
        if k2 > 1:
            idx, val = _query_expansion(idx, val, nbrs, min(k2, nbrs.shape[1]), chunk_size)
        self._x, self._sq = x, sq
        self._q_idx, self._q_val = idx[: self.num_query], val[: self.num_query]
        self._inverted = _inverted_index(idx, val, self.num_query)

    def _distances(self, rows: slice | torch.Tensor) -> torch.Tensor:
        """The original row-normalised squared distances of query ``rows`` (a new tensor), computed as the
        neighbour pass computes them, over the row maximum."""
        if self._held is not None:
            return self._held[rows].clone() if isinstance(rows, slice) else self._held[rows]
        nq = self.num_query
        dist = exact_mm(self._x[rows], self._x[nq:].T)
        keys = torch.add(self._sq[nq:], dist, alpha=-2.0, out=dist)
        return _squared(keys, self._sq[rows], dist).div_(self._row_max[rows][:, None])

    def _combine(self, dist: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
        """(1 - lambda) * Jaccard + lambda * ``dist`` for query ``rows``, into ``dist``."""
        q_idx, q_val = self._q_idx[rows], self._q_val[rows]
        per = block_rows(self.num_gallery, dist.device, self.chunk_size)
        for start in range(0, dist.shape[0], per):
            part = slice(start, start + per)
            jaccard = _jaccard(q_idx[part], q_val[part], self._inverted, self._x.shape[0], self.num_gallery)
            dist[part].mul_(self.lambda_value).add_(jaccard, alpha=1.0 - self.lambda_value)
        return dist

    def rows(self, query_rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The re-ranked distances (len(query_rows), num_gallery) of these query rows."""
        rows = torch.as_tensor(query_rows, dtype=torch.int64, device=self._x.device).reshape(-1)
        return self._combine(self._distances(rows), rows)

    def blocks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first_query_row, block)`` of re-ranked rows, in order (blocks of ``chunk_size`` rows, by default
        of the evaluator's distance-block size); each block is a new tensor."""
        per = block_rows(self.num_gallery, self._x.device, self.chunk_size, DISTANCE_ELEMS)
        for start in range(0, self.num_query, per):
            rows = slice(start, min(start + per, self.num_query))
            yield start, self._combine(self._distances(rows), rows)

    def matrix(self) -> torch.Tensor:
        """All re-ranked rows (num_query, num_gallery); held distances become the output in place (and are no
        longer held: later rows are recomputed)."""
        if self._held is None:
            out = torch.empty(self.num_query, self.num_gallery, dtype=self._x.dtype, device=self._x.device)
            for start, block in self.blocks():
                out[start : start + block.shape[0]] = block
            return out
        out, self._held = self._held, None
        return self._combine(out, slice(0, self.num_query))


def re_ranking(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Re-ranked (num_query, num_gallery) distances on the features' device (float32, or float64 for float64 input).

    Pass L2-normalised features for the usual cosine setting. Ties between distances rank by sample index
    (queries first, then gallery), as a stable argsort does. `chunk_size` is the side of the square distance
    blocks and the rows per block of the other passes (default: a device-dependent element budget); memory is
    the query x gallery output, O(N x k1) for neighbour lists and sparse rows, and blocks bounded by `chunk_size`.
    """
    return Reranker(q_feats, g_feats, k1, k2, lambda_value, chunk_size, hold=True).matrix()
