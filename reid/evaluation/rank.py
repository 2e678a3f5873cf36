"""CMC, mAP and mINP without sorting the gallery, exact and memory-bounded, on any torch device.

Protocol (Market-1501 / MSMT17): for each query, gallery samples with the same pid and the same camera are
removed, and junk (pid -1) is removed; a query with no remaining true match is skipped and counted. With
`cross_camera=False` (sets without camera ids, or from one camera) only the query's own image is removed: the
gallery sample with the same pid and the same image id, when image ids are given.

Tie rule: the gallery is ranked by (distance, gallery index), i.e. equal distances rank by gallery index,
exactly as a stable argsort of each row would order it.

How: only the positions of the true matches matter. For each query the true matches are sorted by
(distance, index) (a handful per query), then every valid gallery item no farther than the hardest match is
bucketed between them with one `searchsorted`; a cumulative count of the buckets gives the 1-based rank of
each true match. Items farther than the hardest match cannot change any rank, so with a reasonable model
almost nothing beyond a single comparison pass over the distances is done.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from reid.evaluation.distance import EvaluationError, as_features, block_rows, check_metric, iter_distance_blocks
from reid.evaluation.reranking import re_ranking
from reid.registry import SCORE_REGISTRY

IdsLike = torch.Tensor | np.ndarray | Iterable[int]
# Called with every (first_query_row, block) of distances that `evaluate` ranks: other metrics share its pass.
BlockObserver = Callable[[int, torch.Tensor], None]


@dataclass
class RankResult:
    """Ranking metrics as fractions; per query: `ap` and `inp` (NaN for the queries that were skipped) and
    `first_match`, the 1-based rank of the first true match (0 for skipped queries)."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int
    num_query: int
    num_gallery: int
    num_skipped: int
    ap: np.ndarray
    inp: np.ndarray
    first_match: np.ndarray

    def as_dict(self) -> dict[str, float | int]:
        """Plain Python numbers for metrics.json: every registered score (ranks beyond `len(cmc)` are left out)
        and the query / gallery counts."""
        out: dict[str, float | int] = {
            name: value for name, score in SCORE_REGISTRY.items() if (value := score(self)) is not None
        }
        out.update(
            num_query=int(self.num_query),
            num_gallery=int(self.num_gallery),
            num_valid_query=int(self.num_valid),
        )
        return out


class TopK(NamedTuple):
    """Per query, the k nearest valid gallery items: indices (-1 where fewer exist) and distances (inf there)."""

    indices: np.ndarray
    distances: np.ndarray


class MatchRanks(NamedTuple):
    """One query's true matches in rank order: their gallery indices and 1-based ranks among the valid items."""

    gallery: np.ndarray
    ranks: np.ndarray


class ChanceLevel(NamedTuple):
    """Expected rank-1 and mAP under a uniformly random ranking of each valid query's valid gallery items."""

    rank1: float
    mAP: float
    num_valid: int


def _as_ids(ids: IdsLike, name: str, length: int | None, device: torch.device) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids)
    if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
        raise EvaluationError(f"{name} must be a 1-D array of integer ids, got shape {tuple(ids.shape)} {ids.dtype}.")
    if length is not None and ids.numel() != length:
        raise EvaluationError(f"{name} has {ids.numel()} entries but {length} were expected (one per "
                              f"{'query' if name.startswith('q') else 'gallery'} image).")
    return ids.to(device=device, dtype=torch.int64)


def _cmc_at(k: int):
    """The score rank-k: CMC at k, or None when the curve is shorter (TEST.MAX_RANK < k)."""
    return lambda result: float(result.cmc[k - 1]) if k <= len(result.cmc) else None


# Scores of a RankResult, in metrics.json's order; TEST.BEST_METRIC names one (the checkpoint kept as best).
SCORE_REGISTRY.register("rank1", _cmc_at(1))
SCORE_REGISTRY.register("rank5", _cmc_at(5))
SCORE_REGISTRY.register("rank10", _cmc_at(10))
SCORE_REGISTRY.register("mAP", lambda result: float(result.mAP))
SCORE_REGISTRY.register("mINP", lambda result: float(result.mINP))


class _Protocol:
    """Query/gallery ids on the device and the gallery grouped by pid, shared by all blocks of queries.

    A gallery item of the query's pid is removed when its *key* equals the query's: the camera under the
    cross-camera protocol, the image id under same-image removal (no key: nothing but junk is removed).
    """

    def __init__(self, ids: tuple[IdsLike, IdsLike, IdsLike, IdsLike], shape: tuple[int, int],
                 device: torch.device, cross_camera: bool = True,
                 image_ids: tuple[IdsLike | None, IdsLike | None] = (None, None)) -> None:
        q_pids, g_pids, q_camids, g_camids = ids
        self.q_pids = _as_ids(q_pids, "q_pids", shape[0], device)
        self.g_pids = _as_ids(g_pids, "g_pids", shape[1], device)
        self.q_camids = _as_ids(q_camids, "q_camids", shape[0], device)
        self.g_camids = _as_ids(g_camids, "g_camids", shape[1], device)
        self.q_keys: torch.Tensor | None = self.q_camids
        self.g_keys: torch.Tensor | None = self.g_camids
        self.rule = "same pid, other camera, not junk"
        if not cross_camera:
            self.rule = "same pid, not the query's own image, not junk"
            if (image_ids[0] is None) != (image_ids[1] is None):
                raise EvaluationError("give both q_image_ids and g_image_ids (or neither) for same-image removal.")
            self.q_keys = None if image_ids[0] is None else _as_ids(image_ids[0], "q_image_ids", shape[0], device)
            self.g_keys = None if image_ids[1] is None else _as_ids(image_ids[1], "g_image_ids", shape[1], device)
        if shape[0] == 0:
            raise EvaluationError("the query set is empty; check the dataset's query folder.")
        self.junk = self.g_pids == -1
        self.has_junk = bool(self.junk.any())
        if bool(self.junk.all()):
            raise EvaluationError(f"the gallery has no usable sample ({shape[1]} samples, none with a pid other "
                                  "than -1 (junk)); check the dataset's gallery folder.")
        # Non-junk gallery positions grouped by pid, ascending index inside a pid (a stable sort).
        order = torch.argsort(self.g_pids, stable=True)
        self.order = order[~self.junk[order]]
        self.pids, self.counts = torch.unique_consecutive(self.g_pids[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def candidates(self, rows: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gallery positions with each query's pid (B, W), padded; which are true matches, which are removed
        (same camera, or the query's own image)."""
        q_pids = self.q_pids[rows]
        slot = torch.searchsorted(self.pids, q_pids).clamp_(max=self.pids.numel() - 1)
        count = torch.where(self.pids[slot] == q_pids, self.counts[slot], 0)
        col = torch.arange(int(count.max()), device=q_pids.device)
        in_pid = col < count[:, None]
        cand = self.order[(self.starts[slot][:, None] + col).clamp_(max=self.order.numel() - 1)]
        if self.q_keys is None or self.g_keys is None:
            same = torch.zeros_like(in_pid)
        else:
            same = self.g_keys[cand] == self.q_keys[rows][:, None]
        return cand, in_pid & ~same, in_pid & same

    def removed(self, rows: slice) -> torch.Tensor:
        """(B, num_gallery) mask of the gallery items the protocol removes for queries ``rows`` (dense)."""
        if self.q_keys is None or self.g_keys is None:
            return self.junk.expand(self.q_pids[rows].numel(), -1)
        return self.junk | ((self.g_pids == self.q_pids[rows, None]) & (self.g_keys == self.q_keys[rows, None]))


def _ordered_key(x: torch.Tensor) -> torch.Tensor:
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


def _block_ranks(dist: torch.Tensor, rows: slice,
                 proto: _Protocol) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query row: number of true matches n (B,), the 1-based ranks of its sorted true matches (B, M) and
    their gallery indices (B, M); entries beyond a row's n are padding."""
    bsz, num_gallery = dist.shape
    cand, match, same_cam = proto.candidates(rows)
    s, s_idx, n = _sorted_matches(dist, cand, match)
    width = s.shape[1]
    if width == 0:
        return n, torch.zeros(bsz, 0, dtype=torch.int64, device=dist.device), s_idx
    # Gallery items no farther than the row's hardest true match; the rest cannot move any rank.
    hardest = s.gather(1, (n - 1).clamp(min=0)[:, None])
    relevant = dist <= torch.where(n[:, None] > 0, hardest, torch.full_like(hardest, float("nan")))
    relevant[torch.arange(bsz, device=dist.device)[:, None].expand_as(cand)[same_cam], cand[same_cam]] = False
    row, col = relevant.nonzero(as_tuple=True)
    x = dist.reshape(-1).index_select(0, row * num_gallery + col)
    # bin = row * (width + 1) + matches before the item; junk goes to the row's last bin, which no rank reads.
    bins = row + _matches_before(x, row, col, s, s_idx, n)
    if proto.has_junk:
        bins = torch.where(proto.junk.index_select(0, col), (row + 1) * (width + 1) - 1, bins)
    counts = torch.bincount(bins, minlength=bsz * (width + 1)).view(bsz, width + 1)
    return n, torch.cumsum(counts[:, :width], 1), s_idx


def _matches_before(x: torch.Tensor, row: torch.Tensor, col: torch.Tensor, s: torch.Tensor, s_idx: torch.Tensor,
                    n: torch.Tensor) -> torch.Tensor:
    """row * width + how many of its row's true matches precede each item (row, col, distance x).

    One 1-D searchsorted over (row, float32 key) composite keys; items whose float32 key equals a match's
    (exact ties, or float64 values that round together) are then settled exactly against those matches.
    """
    bsz, width = s.shape
    padding = torch.arange(width, device=s.device) >= n[:, None]
    seq = torch.arange(bsz, device=s.device)[:, None] << 32 | _ordered_key(s).masked_fill_(padding, (1 << 32) - 1)
    # Ascending: rows in order, each row's matches in (distance, index) order, then padding; one more at the end.
    seq = torch.cat([seq.view(-1), seq.new_full((1,), torch.iinfo(torch.int64).max)])
    key = row << 32 | _ordered_key(x)
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


def _rank_blocks(blocks: Iterator[tuple[int, torch.Tensor]], proto: _Protocol, max_rank: int,
                 num_gallery: int) -> RankResult:
    """Accumulate per-query AP, INP and first-match rank over blocks of distance rows."""
    num_query = proto.q_pids.numel()
    ap_parts, inp_parts, first_parts = [], [], []
    for start, block in blocks:
        block = _as_distances(block)
        if bool(torch.isnan(block.amax())):  # amax propagates NaN: one read-only pass
            raise EvaluationError(f"the distance matrix has NaN in query rows {start}..{start + block.shape[0] - 1}; "
                                  "check the features for NaN/inf.")
        n, ranks, _ = _block_ranks(block.contiguous(), slice(start, start + block.shape[0]), proto)
        ap, inp, first = _metrics(n, ranks)
        ap_parts.append(ap)
        inp_parts.append(inp)
        first_parts.append(first)
    ap = torch.cat(ap_parts).cpu().numpy()
    inp = torch.cat(inp_parts).cpu().numpy()
    first = torch.cat(first_parts).cpu().numpy()
    valid = ~np.isnan(ap)
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise EvaluationError(
            f"none of the {num_query} queries has a true match in the gallery ({proto.rule}); "
            "check that query and gallery come from the same dataset split and that pids/camids are parsed."
        )
    hist = np.bincount(np.minimum(first[valid], max_rank + 1).astype(np.int64), minlength=max_rank + 2)
    cmc = np.cumsum(hist[1 : max_rank + 1]) / num_valid
    return RankResult(cmc=cmc, mAP=float(ap[valid].mean()), mINP=float(inp[valid].mean()), num_valid=num_valid,
                      num_query=num_query, num_gallery=num_gallery, num_skipped=num_query - num_valid, ap=ap, inp=inp,
                      first_match=first.astype(np.int64))


def _metrics(n: torch.Tensor, ranks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AP = mean over true matches of (matches so far / rank); INP = matches / rank of the hardest; in float64."""
    nf = n.to(torch.float64)
    nan = torch.full_like(nf, float("nan"))
    if ranks.shape[1] == 0:
        return nan, nan, torch.zeros_like(n)
    r = ranks.to(torch.float64)
    hits = torch.arange(1, r.shape[1] + 1, device=r.device, dtype=torch.float64)
    in_row = hits <= nf[:, None]
    ap = torch.where(in_row, hits / r, 0.0).sum(1) / nf
    inp = nf / r.gather(1, (n - 1).clamp(min=0)[:, None]).squeeze(1)
    has = n > 0
    return torch.where(has, ap, nan), torch.where(has, inp, nan), torch.where(has, ranks[:, 0], 0)


def _as_distances(block: torch.Tensor) -> torch.Tensor:
    if block.dtype in (torch.float32, torch.float64):
        return block
    return block.to(torch.float64)


def _as_distmat(distmat: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(distmat, np.ndarray):
        distmat = torch.from_numpy(distmat)
    if not isinstance(distmat, torch.Tensor) or distmat.dim() != 2:
        raise EvaluationError("distmat must be a 2-D (num_query, num_gallery) tensor or array.")
    return distmat


def _row_blocks(distmat: torch.Tensor, chunk_size: int | None) -> Iterator[tuple[int, torch.Tensor]]:
    rows = block_rows(distmat.shape[1], distmat.device, chunk_size)
    for start in range(0, distmat.shape[0], rows):
        yield start, distmat[start : start + rows]


def _check_max_rank(max_rank: int) -> None:
    if max_rank < 1:
        raise EvaluationError(f"max_rank must be at least 1, got {max_rank}.")


def evaluate_rank(
    distmat: torch.Tensor | np.ndarray,
    q_pids: IdsLike,
    g_pids: IdsLike,
    q_camids: IdsLike,
    g_camids: IdsLike,
    max_rank: int = 50,
    chunk_size: int | None = None,
    *,
    cross_camera: bool = True,
    q_image_ids: IdsLike | None = None,
    g_image_ids: IdsLike | None = None,
) -> RankResult:
    """CMC (length `max_rank`), mAP and mINP of a (num_query, num_gallery) distance matrix, on its device.

    `chunk_size` is the number of query rows per block (default: a device-dependent element budget).
    `cross_camera=False` replaces the same-camera removal with same-image removal: a gallery item with the query's
    pid and its image id (`q_image_ids`, `g_image_ids`: equal ids = the same file) is removed; without image ids
    nothing but junk is.
    """
    _check_max_rank(max_rank)
    distmat = _as_distmat(distmat)
    proto = _Protocol((q_pids, g_pids, q_camids, g_camids), distmat.shape, distmat.device, cross_camera,
                      (q_image_ids, g_image_ids))
    return _rank_blocks(_row_blocks(distmat, chunk_size), proto, max_rank, distmat.shape[1])


def evaluate(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    q_pids: IdsLike,
    g_pids: IdsLike,
    q_camids: IdsLike,
    g_camids: IdsLike,
    metric: str = "cosine",
    rerank: bool = False,
    max_rank: int = 50,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    cross_camera: bool = True,
    q_image_ids: IdsLike | None = None,
    g_image_ids: IdsLike | None = None,
    observe: BlockObserver | None = None,
) -> RankResult:
    """Evaluate from features on their device; without re-ranking, distances are consumed block by block.

    With `rerank`, k-reciprocal re-ranking (`re_ranking`) is applied, to L2-normalised features when
    `metric="cosine"` and to the raw features when `metric="euclidean"`. `cross_camera`, `q_image_ids` and
    `g_image_ids` choose the protocol as in `evaluate_rank`. `observe(first_row, block)` sees every block of
    distances that is ranked (e.g. `VerificationCounter.add`: verification metrics from the same pass).
    """
    _check_max_rank(max_rank)
    q_feats, g_feats = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    proto = _Protocol((q_pids, g_pids, q_camids, g_camids), (q_feats.shape[0], g_feats.shape[0]), q_feats.device,
                      cross_camera, (q_image_ids, g_image_ids))
    if not rerank:
        blocks = iter_distance_blocks(q_feats, g_feats, metric, chunk_size)
    else:
        distmat = reranked_distances(q_feats, g_feats, metric, k1=k1, k2=k2, lambda_value=lambda_value,
                                     chunk_size=chunk_size)
        blocks = _row_blocks(distmat, chunk_size)
    if observe is not None:
        blocks = _observed(blocks, observe)
    return _rank_blocks(blocks, proto, max_rank, g_feats.shape[0])


def _observed(blocks: Iterator[tuple[int, torch.Tensor]],
              observe: BlockObserver) -> Iterator[tuple[int, torch.Tensor]]:
    for start, block in blocks:
        observe(start, block)
        yield start, block


def reranked_distances(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    metric: str = "cosine",
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The (num_query, num_gallery) k-reciprocal re-ranked distances that `evaluate(rerank=True)` ranks:
    `re_ranking` of L2-normalised features for `metric="cosine"`, of the raw features for `"euclidean"`."""
    check_metric(metric)
    q_feats, g_feats = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    if metric == "cosine":
        q_feats, g_feats = F.normalize(q_feats, dim=1), F.normalize(g_feats, dim=1)
    return re_ranking(q_feats, g_feats, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=chunk_size)


def match_ranks(
    distmat: torch.Tensor | np.ndarray,
    q_pids: IdsLike,
    g_pids: IdsLike,
    q_camids: IdsLike,
    g_camids: IdsLike,
    chunk_size: int | None = None,
    *,
    cross_camera: bool = True,
    q_image_ids: IdsLike | None = None,
    g_image_ids: IdsLike | None = None,
) -> list[MatchRanks]:
    """Per query row, its true matches in rank order with their exact 1-based ranks, as the evaluator counts them.

    For the rows of a few chosen queries (plain or re-ranked distances): the ranks and gallery indices behind
    a ranked-list picture, by the evaluator's own sort-free count. The protocol keywords are `evaluate_rank`'s.
    """
    distmat = _as_distmat(distmat)
    proto = _Protocol((q_pids, g_pids, q_camids, g_camids), distmat.shape, distmat.device, cross_camera,
                      (q_image_ids, g_image_ids))
    out: list[MatchRanks] = []
    for start, block in _row_blocks(distmat, chunk_size):
        n, ranks, idx = _block_ranks(_as_distances(block).contiguous(), slice(start, start + block.shape[0]), proto)
        for count, r, g in zip(n.tolist(), ranks.cpu().numpy(), idx.cpu().numpy()):
            out.append(MatchRanks(g[:count].astype(np.int64), r[:count].astype(np.int64)))
    return out


def chance_level(q_pids: IdsLike, g_pids: IdsLike, q_camids: IdsLike, g_camids: IdsLike, *,
                 cross_camera: bool = True, q_image_ids: IdsLike | None = None,
                 g_image_ids: IdsLike | None = None) -> ChanceLevel:
    """Exact expected rank-1 and mAP of a uniformly random ranking, under the protocol's removals (the protocol
    keywords are `evaluate_rank`'s).

    A valid query with n true matches among N valid gallery items: E[rank-1] = n / N and, since
    AP = 1/n sum_j rel_j (sum_{i<=j} rel_i) / j with E[rel_j] = n / N and E[rel_i rel_j] = n (n-1) / (N (N-1)),
    E[AP] = H_N / N + (n - 1) (N - H_N) / (N (N - 1))   (H_N = 1 + 1/2 + ... + 1/N; E[AP] = 1 when N = 1).
    Both are averaged over the valid queries, as CMC and mAP are.
    """
    cpu = torch.device("cpu")
    proto = _Protocol((q_pids, g_pids, q_camids, g_camids), (len(q_pids), len(g_pids)), cpu, cross_camera,
                      (q_image_ids, g_image_ids))
    # Per query: its true matches and the gallery items of its identity the protocol removes, a block of queries
    # at a time (a block's candidates are at most block x gallery).
    step = block_rows(proto.g_pids.numel(), cpu)
    matches, removals = [], []
    for start in range(0, proto.q_pids.numel(), step):
        _, match, removed = proto.candidates(slice(start, start + step))
        matches.append(match.sum(1))
        removals.append(removed.sum(1))
    n, removed = torch.cat(matches).numpy(), torch.cat(removals).numpy()
    valid = n > 0
    if not valid.any():
        raise EvaluationError(f"none of the {len(valid)} queries has a true match in the gallery ({proto.rule}); "
                              "chance level is undefined.")
    usable = int((~proto.junk).sum())
    n, size = n[valid].astype(np.float64), (usable - removed[valid]).astype(np.float64)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(size.max()) + 1))])[size.astype(np.int64)]
    pairs = np.where(size > 1, (n - 1) * (size - harmonic) / np.maximum(size * (size - 1), 1.0), 0.0)
    return ChanceLevel(float(np.mean(n / size)), float(np.mean(harmonic / size + pairs)), int(valid.sum()))


def topk_valid(
    distmat: torch.Tensor | np.ndarray,
    q_pids: IdsLike,
    g_pids: IdsLike,
    q_camids: IdsLike,
    g_camids: IdsLike,
    k: int = 10,
    chunk_size: int | None = None,
    *,
    cross_camera: bool = True,
    q_image_ids: IdsLike | None = None,
    g_image_ids: IdsLike | None = None,
) -> TopK:
    """The k nearest gallery items of each query after the protocol's removals, in (distance, index) order.

    For ranked-list pictures; a stable sort of each row, so meant for a handful of queries or small galleries.
    The protocol is chosen as in `evaluate_rank`.
    """
    distmat = _as_distmat(distmat)
    proto = _Protocol((q_pids, g_pids, q_camids, g_camids), distmat.shape, distmat.device, cross_camera,
                      (q_image_ids, g_image_ids))
    idx_parts, dist_parts = [], []
    for start, block in _row_blocks(distmat, chunk_size):
        rows = slice(start, start + block.shape[0])
        removed = proto.removed(rows)
        order = torch.argsort(_as_distances(block), dim=1, stable=True)
        order = order.gather(1, torch.argsort(removed.gather(1, order).to(torch.uint8), dim=1, stable=True))
        order = order[:, :k]
        dist = block.gather(1, order)
        gone = removed.gather(1, order)
        idx_parts.append(order.masked_fill(gone, -1))
        dist_parts.append(dist.masked_fill(gone, float("inf")))
    return TopK(torch.cat(idx_parts).cpu().numpy(), torch.cat(dist_parts).cpu().numpy())
