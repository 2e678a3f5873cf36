"""The ranking kernel: exact 1-based ranks of each query's true matches in a block of distance rows, sort-free.

Tie rule: the gallery is ranked by (distance, gallery index), i.e. equal distances rank by gallery index,
exactly as a stable argsort of each row would order it.

How: only the positions of the true matches matter. For each query the true matches are sorted by
(distance, index) (a handful per query), then every valid gallery item no farther than the hardest match is
bucketed between them with one `searchsorted`; a cumulative count of the buckets gives the 1-based rank of
each true match. Items farther than the hardest match cannot change any rank, so with a reasonable model
almost nothing beyond a single comparison pass over the distances is done.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from reid.evaluation.protocol import Protocol


class BlockRanks(NamedTuple):
    """Per query row of a block: the number of true matches ``n`` (B,), the 1-based ranks of its true matches in
    (distance, index) order (B, M) and their gallery indices (B, M); entries beyond a row's n are padding."""

    n: torch.Tensor
    ranks: torch.Tensor
    gallery: torch.Tensor


def ordered_key(x: torch.Tensor) -> torch.Tensor:
    """int64 key in [0, 2^32) with the order of float32(x); -0.0 and +0.0 share a key (they compare equal)."""
    bits = x.float().view(torch.int32).to(torch.int64)
    return torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF)) + (1 << 31)


def _sorted_matches(
    dist: torch.Tensor, cand: torch.Tensor, match: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's true matches in (distance, index) order (B, M), padded at the end, with their number (B,)."""
    d = dist.gather(1, cand)
    by_dist = torch.argsort(d, dim=1, stable=True)  # cand is ascending, so ties keep index order
    d, cand, match = d.gather(1, by_dist), cand.gather(1, by_dist), match.gather(1, by_dist)
    n = match.sum(1)
    keep = torch.argsort((~match).to(torch.uint8), dim=1, stable=True)[:, : int(n.max())]  # matches first
    return d.gather(1, keep), cand.gather(1, keep), n


def rank_block(dist: torch.Tensor, rows: slice, protocol: Protocol) -> BlockRanks:
    """The ranks of the true matches of queries ``rows`` from their contiguous distance rows ``dist`` (B, G),
    under ``protocol`` (on the block's device)."""
    bsz, num_gallery = dist.shape
    cand, match, removed = protocol.candidates(rows)
    s, s_idx, n = _sorted_matches(dist, cand, match)
    width = s.shape[1]
    if width == 0:
        return BlockRanks(n, torch.zeros(bsz, 0, dtype=torch.int64, device=dist.device), s_idx)
    # Gallery items no farther than the row's hardest true match; the rest cannot move any rank.
    hardest = s.gather(1, (n - 1).clamp(min=0)[:, None])
    relevant = dist <= torch.where(n[:, None] > 0, hardest, torch.full_like(hardest, float("nan")))
    relevant[torch.arange(bsz, device=dist.device)[:, None].expand_as(cand)[removed], cand[removed]] = False
    row, col = relevant.nonzero(as_tuple=True)
    x = dist.reshape(-1).index_select(0, row * num_gallery + col)
    # bin = row * (width + 1) + matches before the item; junk goes to the row's last bin, which no rank reads.
    bins = row + _matches_before(x, row, col, s, s_idx, n)
    if protocol.has_junk:
        bins = torch.where(protocol.junk.index_select(0, col), (row + 1) * (width + 1) - 1, bins)
    counts = torch.bincount(bins, minlength=bsz * (width + 1)).view(bsz, width + 1)
    return BlockRanks(n, torch.cumsum(counts[:, :width], 1), s_idx)


def _matches_before(x: torch.Tensor, row: torch.Tensor, col: torch.Tensor, s: torch.Tensor, s_idx: torch.Tensor,
                    n: torch.Tensor) -> torch.Tensor:
    """row * width + how many of its row's true matches precede each item (row, col, distance x).

    One 1-D searchsorted over (row, float32 key) composite keys; items whose float32 key equals a match's
    (exact ties, or float64 values that round together) are then settled exactly against those matches.
    """
    bsz, width = s.shape
    padding = torch.arange(width, device=s.device) >= n[:, None]
    seq = torch.arange(bsz, device=s.device)[:, None] << 32 | ordered_key(s).masked_fill_(padding, (1 << 32) - 1)
    # Ascending: rows in order, each row's matches in (distance, index) order, then padding; one more at the end.
    seq = torch.cat([seq.view(-1), seq.new_full((1,), torch.iinfo(torch.int64).max)])
    key = row << 32 | ordered_key(x)
    pos = torch.searchsorted(seq, key)
    tie = seq.index_select(0, pos) == key
    if bool(tie.any()):
        t = tie.nonzero().squeeze(1)
        t_row, t_x, t_col = row[t], x[t], col[t]
        same_key = seq[:-1].view(bsz, width)[t_row] == key[t, None]
        rs = s[t_row]
        before = (rs < t_x[:, None]) | ((rs == t_x[:, None]) & (s_idx[t_row] < t_col[:, None]))
        pos[t] += (same_key & before).sum(1)
    return pos
