"""Ranked lists a person reads: the query, its top-k gallery images and the true matches it ranked lowest.

Two steps, both usable without a model:

1. :func:`rank_queries` turns distance rows of the chosen queries (any distance: plain or re-ranked) into
   :class:`RankedQuery` records. The protocol is the evaluator's: gallery images of the query's identity taken
   by the query's camera are removed, junk (pid -1) is ignored (shown greyed, without a rank, or hidden), ties
   rank by gallery index. Top-k comes from :func:`reid.evaluation.topk_valid` (blocked); the rank of every true
   match is counted by comparisons, never by sorting a gallery row; AP follows from those ranks.
2. :func:`draw_sheet` draws several queries per PNG: one row per query, the query tile (blue frame), then the
   top-k (green frame = true match, red = false match, grey = junk), then the lowest-ranked true matches, with
   "rank / distance" under each tile and the query's AP in the row title. The tiles are composed as pixels and
   placed unscaled (``figimage``), so a tile's frame is exactly its colour in the PNG; :class:`SheetLayout` gives
   each tile's pixel box (tests read the colours there).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..evaluation import topk_valid
from ..utils.errors import ReIDError

logger = logging.getLogger("reid")

# Frame colours (RGB). Besides the colour, labels carry a mark (✓ / ✗) for readers who cannot tell red from green.
MATCH_RGB = (26, 150, 65)
FALSE_RGB = (215, 25, 28)
JUNK_RGB = (150, 150, 150)
QUERY_RGB = (43, 108, 176)
KIND_RGB = {"match": MATCH_RGB, "false": FALSE_RGB, "junk": JUNK_RGB, "query": QUERY_RGB}

TILE_H, TILE_W = 128, 64  # image area of a tile (Market-1501 crops are 128 x 64)
BORDER = 5  # frame width in pixels
GAP = 6  # between tiles of a section
SECTION_GAP = 30  # between the query, the top-k and the missed matches (a thin rule is drawn in the middle)
MARGIN = 14
SHEET_TITLE_H = 44  # sheet title + legend
HEADER_H = 18  # section headers above the first row
ROW_TITLE_H = 24  # the query's line (file, pid, camera, AP) above its tiles
LABEL_H = 30  # two lines under each tile: rank, distance
ROW_GAP = 12
DPI = 100
MIN_WIDTH = 720


@dataclass
class Tile:
    """One gallery image in a ranked list."""

    gallery_index: int
    distance: float
    rank: Optional[int]  # 1-based rank among the protocol's valid gallery images; None for junk
    kind: str  # "match" (same pid, other camera), "false" or "junk" (pid -1, ignored by the protocol)


@dataclass
class RankedQuery:
    """A query's ranked list: top-k tiles and the lowest-ranked true matches that are not in the top-k."""

    query_index: int
    pid: int
    camid: int
    ap: float  # NaN when the gallery holds no true match for it
    num_matches: int
    first_match_rank: Optional[int]
    top: List[Tile]
    missed: List[Tile]
    path: str = ""
    dataset: str = ""

    @property
    def has_match(self) -> bool:
        return self.num_matches > 0


@dataclass
class TileBox:
    """Where a tile is in a sheet PNG: pixel box ``(x0, y0, x1, y1)`` of the framed tile, x1/y1 exclusive."""

    query_index: int
    section: str  # "query", "top" or "missed"
    kind: str  # "query", "match", "false", "junk"
    gallery_index: int  # -1 for the query tile
    box: Tuple[int, int, int, int]


@dataclass
class SheetLayout:
    path: str
    width: int
    height: int
    border: int
    tiles: List[TileBox] = field(default_factory=list)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _true_match_ranks(dist: np.ndarray, matches: np.ndarray, valid: np.ndarray, chunk: int = 64) -> np.ndarray:
    """1-based ranks of the true matches ``matches`` (gallery indices) among ``valid`` items, by (distance, index).

    Rank = 1 + the number of valid items that come before the match; counted by comparisons (match x gallery,
    a few matches at a time), never by sorting the row.
    """
    d_valid = dist[valid]
    i_valid = np.flatnonzero(valid)
    ranks = np.empty(len(matches), dtype=np.int64)
    for lo in range(0, len(matches), chunk):
        m = matches[lo:lo + chunk]
        dm = dist[m][:, None]
        before = (d_valid[None, :] < dm) | ((d_valid[None, :] == dm) & (i_valid[None, :] < m[:, None]))
        ranks[lo:lo + chunk] = before.sum(1) + 1
    return ranks


def average_precision(ranks: np.ndarray) -> float:
    """AP from the 1-based ranks of all true matches: mean over matches of (matches so far / rank)."""
    if len(ranks) == 0:
        return float("nan")
    r = np.sort(np.asarray(ranks, dtype=np.float64))
    return float(np.mean(np.arange(1, len(r) + 1) / r))


def rank_queries(
    dist_rows,
    query_indices: Sequence[int],
    q_pids,
    q_camids,
    g_pids,
    g_camids,
    topk: int = 10,
    num_missed: int = 3,
    show_junk: bool = True,
    q_paths: Optional[Sequence[str]] = None,
    dataset: str = "",
) -> List[RankedQuery]:
    """Ranked lists of the queries ``query_indices`` from their distance rows ``dist_rows`` (S x G).

    ``q_pids`` / ``q_camids`` cover the whole query set (indexed by ``query_indices``); ``g_pids`` / ``g_camids``
    the gallery. ``dist_rows`` may be a tensor on any device or an array; plain or re-ranked distances.
    """
    q_pids, q_camids, g_pids, g_camids = (_np(a).astype(np.int64) for a in (q_pids, q_camids, g_pids, g_camids))
    idx = np.asarray(list(query_indices), dtype=np.int64)
    rows = dist_rows if isinstance(dist_rows, torch.Tensor) else torch.as_tensor(np.asarray(dist_rows))
    if rows.dim() != 2 or rows.shape[0] != len(idx) or rows.shape[1] != len(g_pids):
        raise ReIDError(f"rank_queries: distance rows of shape {tuple(rows.shape)} do not fit {len(idx)} queries x "
                        f"{len(g_pids)} gallery images.")
    if len(idx) == 0:
        return []
    junk = g_pids == -1
    sel_pids, sel_cams = q_pids[idx], q_camids[idx]
    if show_junk and junk.any():
        # A pid no query has: the protocol then keeps junk in the list, and we grey it (it gets no rank).
        sentinel = int(min(q_pids.min(initial=0), g_pids.min(initial=0), -1)) - 1
        topk_pids = np.where(junk, sentinel, g_pids)
    else:
        topk_pids = g_pids
    k = max(0, min(int(topk), len(g_pids)))
    top = topk_valid(rows, sel_pids, topk_pids, sel_cams, g_camids, k=max(k, 1)) if k else None
    dist = _np(rows).astype(np.float64)
    out = []
    for s, qi in enumerate(idx):
        pid, cam = int(sel_pids[s]), int(sel_cams[s])
        removed = junk | ((g_pids == pid) & (g_camids == cam))
        valid = ~removed
        matches = np.flatnonzero(valid & (g_pids == pid))
        ranks = _true_match_ranks(dist[s], matches, valid)
        rank_of = dict(zip(matches.tolist(), ranks.tolist()))
        tiles: List[Tile] = []
        if top is not None:
            seen_valid = 0
            for gi, d in zip(top.indices[s][:k], top.distances[s][:k]):
                if gi < 0:
                    break
                gi = int(gi)
                if junk[gi]:
                    tiles.append(Tile(gi, float(d), None, "junk"))
                    continue
                seen_valid += 1
                tiles.append(Tile(gi, float(d), seen_valid, "match" if gi in rank_of else "false"))
        shown = {t.gallery_index for t in tiles}
        rest = [(r, g) for g, r in rank_of.items() if g not in shown]
        rest.sort()
        missed = [Tile(g, float(dist[s, g]), r, "match") for r, g in rest[max(0, len(rest) - num_missed):]] \
            if num_missed > 0 else []
        out.append(RankedQuery(
            query_index=int(qi), pid=pid, camid=cam, ap=average_precision(ranks), num_matches=len(matches),
            first_match_rank=int(ranks.min()) if len(ranks) else None, top=tiles, missed=missed,
            path=str(q_paths[qi]) if q_paths is not None else "", dataset=dataset,
        ))
    return out


# -- query selection ---------------------------------------------------------------------------------------------

def _name_keys(path: str) -> Tuple[str, str]:
    base = Path(path).name
    return base, Path(path).stem


def select_queries(
    q_paths: Sequence[str],
    ap: Optional[np.ndarray] = None,
    queries: Sequence[object] = (),
    worst: int = 0,
    random: int = 0,
    seed: int = 0,
    dataset: str = "the query set",
) -> List[int]:
    """Query indices to draw, in this order: ``queries`` (indices or file names), the ``worst`` lowest-AP queries
    with a true match (ties by index), then ``random`` others drawn with ``seed``; duplicates are dropped.

    A file name matches a query's full path, its base name or its base name without extension.
    """
    n = len(q_paths)
    chosen: List[int] = []
    names: Dict[str, List[int]] = {}
    for i, p in enumerate(q_paths):
        for key in {str(p), *_name_keys(str(p))}:
            names.setdefault(key, []).append(i)
    for q in queries:
        text = str(q).strip()
        if isinstance(q, (int, np.integer)) or text.lstrip("-").isdigit():
            i = int(text)
            if not 0 <= i < n:
                raise ReIDError(f"Query index {i} is out of range: {dataset} has {n} queries (indices 0..{n - 1}). "
                                f"Give an index in that range or a query file name.")
            chosen.append(i)
            continue
        hits = names.get(text)
        if not hits:
            import difflib

            close = difflib.get_close_matches(Path(text).name, sorted({Path(str(p)).name for p in q_paths}), n=5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ReIDError(f"No query file named {text!r} in {dataset} ({n} queries).{hint} Give a file name of the "
                            f"query folder (e.g. {Path(str(q_paths[0])).name!r}) or a query index 0..{n - 1}.")
        if len(hits) > 1 and text not in {str(q_paths[h]) for h in hits}:
            raise ReIDError(f"Query name {text!r} matches {len(hits)} files in {dataset}: "
                            f"{', '.join(str(q_paths[h]) for h in hits[:4])}; give the full path.")
        chosen.extend(hits[:1])
    if worst > 0:
        if ap is None:
            raise ReIDError("select_queries: worst-AP selection needs the per-query AP.")
        ap = np.asarray(ap, dtype=np.float64)
        valid = np.flatnonzero(~np.isnan(ap))
        order = valid[np.argsort(ap[valid], kind="stable")]
        chosen.extend(order[:worst].tolist())
    if random > 0:
        taken = set(chosen)
        pool = np.array([i for i in range(n) if i not in taken], dtype=np.int64)
        rng = np.random.default_rng(seed)
        chosen.extend(sorted(rng.choice(pool, size=min(random, len(pool)), replace=False).tolist()))
    seen, out = set(), []
    for i in chosen:
        if i not in seen:
            seen.add(i)
            out.append(int(i))
    return out


# -- drawing -----------------------------------------------------------------------------------------------------

class TileCache:
    """Decoded, resized tile images by path (a gallery image appears in many ranked lists)."""

    def __init__(self, size: Tuple[int, int] = (TILE_H, TILE_W)) -> None:
        self.size = size
        self._cache: Dict[str, np.ndarray] = {}
        self._warned = False

    def get(self, path: str) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = self._load(path)
        return self._cache[path]

    def _load(self, path: str) -> np.ndarray:
        h, w = self.size
        canvas = Image.new("RGB", (w, h), (255, 255, 255))
        try:  # PIL directly: drawing needs no data pipeline (and no torchvision import)
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            if not self._warned:
                logger.warning("Ranked lists: cannot read %s (%s); drawing a placeholder (further unreadable "
                               "images are not reported)", path, e)
                self._warned = True
            arr = np.full((h, w, 3), 220, dtype=np.uint8)
            arr[::8, :, :] = 180  # a hatched placeholder, clearly not a photo
            return arr
        scale = min(w / img.width, h / img.height)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.BILINEAR)
        canvas.paste(img, ((w - size[0]) // 2, (h - size[1]) // 2))
        return np.asarray(canvas, dtype=np.uint8)


def _greyed(tile: np.ndarray) -> np.ndarray:
    grey = tile.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey = 0.45 * grey + 0.55 * 235.0
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def _framed(tile: np.ndarray, rgb: Tuple[int, int, int], border: int = BORDER) -> np.ndarray:
    h, w, _ = tile.shape
    out = np.empty((h + 2 * border, w + 2 * border, 3), dtype=np.uint8)
    out[:] = rgb
    out[border:border + h, border:border + w] = tile
    return out


def _fmt_ap(ap: float) -> str:
    return "n/a (no true match in the gallery)" if math.isnan(ap) else f"{ap:.3f}"


def sheet_columns(topk: int, num_missed: int) -> Tuple[int, int, int]:
    """x of the query tile, of the first top-k tile, of the first missed tile (framed tiles)."""
    fw = TILE_W + 2 * BORDER
    x_query = MARGIN
    x_top = x_query + fw + SECTION_GAP
    x_missed = x_top + topk * fw + max(topk - 1, 0) * GAP + SECTION_GAP
    return x_query, x_top, x_missed


def draw_sheet(
    queries: Sequence[RankedQuery],
    q_paths: Sequence[str],
    g_paths: Sequence[str],
    path: str | Path,
    title: str = "",
    topk: Optional[int] = None,
    num_missed: Optional[int] = None,
    cache: Optional[TileCache] = None,
) -> SheetLayout:
    """Draw ``queries`` (one row each) into the PNG ``path``; returns where every tile went.

    ``topk`` / ``num_missed`` fix the column count (default: the longest list among ``queries``), so that sheets
    of one run line up.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cache = cache or TileCache()
    if topk is None:
        topk = max((len(q.top) for q in queries), default=0)
    if num_missed is None:
        num_missed = max((len(q.missed) for q in queries), default=0)
    topk, num_missed = max(topk, 1), max(num_missed, 0)
    fw, fh = TILE_W + 2 * BORDER, TILE_H + 2 * BORDER
    x_query, x_top, x_missed = sheet_columns(topk, num_missed)
    right = (x_missed + num_missed * fw + max(num_missed - 1, 0) * GAP) if num_missed else x_missed - SECTION_GAP
    width = max(right + MARGIN, MIN_WIDTH)
    row_h = ROW_TITLE_H + fh + LABEL_H + ROW_GAP
    y0 = MARGIN + SHEET_TITLE_H + HEADER_H
    height = y0 + row_h * max(len(queries), 1) + MARGIN - ROW_GAP
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    layout = SheetLayout(str(path), width, height, BORDER)
    texts: List[Tuple[float, float, str, dict]] = []  # (x px, y px from top, text, kwargs)
    rows_text: List[Tuple[float, float, List[Tuple[str, dict]]]] = []  # pieces written one after the other

    def put(x: int, y: int, tile: np.ndarray, rgb, q: int, section: str, kind: str, gi: int) -> None:
        framed = _framed(tile, rgb)
        canvas[y:y + fh, x:x + fw] = framed
        layout.tiles.append(TileBox(q, section, kind, gi, (x, y, x + fw, y + fh)))

    # Section rules: a thin grey vertical line in the middle of each section gap.
    rule_top, rule_bottom = y0 - HEADER_H + 2, height - MARGIN
    for x in ((x_top - SECTION_GAP // 2), (x_missed - SECTION_GAP // 2) if num_missed else None):
        if x is not None:
            canvas[rule_top:rule_bottom, x:x + 1] = (200, 200, 200)

    head_y = y0 - HEADER_H + 2
    texts.append((x_query, head_y, "query", dict(fontsize=9, weight="bold", va="top")))
    texts.append((x_top, head_y, f"top-{topk} gallery (same-camera views of the query's id removed)",
                  dict(fontsize=9, weight="bold", va="top")))
    if num_missed:
        texts.append((x_missed, head_y, "lowest-ranked true matches", dict(fontsize=9, weight="bold", va="top")))

    for r, q in enumerate(queries):
        top_y = y0 + r * row_h
        ty = top_y + ROW_TITLE_H
        ap_text = _fmt_ap(q.ap)
        if q.num_matches:
            plural = "es" if q.num_matches != 1 else ""
            found = f"{q.num_matches} true match{plural}, first at rank {q.first_match_rank}"
        else:
            found = "no true match in the gallery"
        name = Path(q.path or str(q_paths[q.query_index])).name
        rows_text.append((x_query, top_y + 4, [
            (f"AP {ap_text}", dict(fontsize=10, weight="bold")),
            (f"query #{q.query_index}  {name}  (pid {q.pid}, camera {q.camid + 1})", dict(fontsize=9)),
            (found, dict(fontsize=9, color="#444444")),
        ]))
        put(x_query, ty, cache.get(str(q_paths[q.query_index])), QUERY_RGB, q.query_index, "query", "query", -1)
        texts.append((x_query + fw / 2, ty + fh + 3, f"pid {q.pid}\ncam {q.camid + 1}",
                      dict(fontsize=8, ha="center", va="top", linespacing=1.1)))
        for c, t in enumerate(q.top):
            self_x = x_top + c * (fw + GAP)
            _tile(put, texts, cache, g_paths, t, self_x, ty, q.query_index, "top")
        if not q.top:
            texts.append((x_top, ty + fh / 2, "(no gallery image left after the protocol's removals)",
                          dict(fontsize=9, va="center", color="#666666")))
        for c, t in enumerate(q.missed):
            _tile(put, texts, cache, g_paths, t, x_missed + c * (fw + GAP), ty, q.query_index, "missed")
        if num_missed and not q.missed:
            msg = "all true matches are in the top-k" if q.num_matches else "(no true match)"
            texts.append((x_missed, ty + fh / 2, msg, dict(fontsize=8, va="center", color="#666666")))

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.figimage(canvas, xo=0, yo=0, origin="upper")
    fig.text(MARGIN / width, 1 - MARGIN / height, title or "ranked lists", fontsize=12, weight="bold", va="top")
    has_junk = any(t.kind == "junk" for q in queries for t in q.top)
    rows_text.append((MARGIN, MARGIN + 22, [
        ("■ query", dict(fontsize=9, color=_mpl(QUERY_RGB))),
        ("■ true match ✓", dict(fontsize=9, color=_mpl(MATCH_RGB))),
        ("■ false match ✗", dict(fontsize=9, color=_mpl(FALSE_RGB))),
        *([("■ junk (pid -1, ignored by the protocol)", dict(fontsize=9, color=_mpl(JUNK_RGB)))] if has_junk else []),
        ("under each tile: rank among valid gallery images, distance", dict(fontsize=9, color="#444444")),
    ]))
    renderer = fig.canvas.get_renderer()
    for x, y, pieces in rows_text:
        for text, kw in pieces:
            artist = fig.text(x / width, 1 - y / height, text, va="top", **kw)
            x += artist.get_window_extent(renderer).width + 14
    for x, y, text, kw in texts:
        fig.text(x / width, 1 - y / height, text, **kw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return layout


def _mpl(rgb: Tuple[int, int, int]) -> Tuple[float, float, float]:
    return tuple(c / 255 for c in rgb)


def _tile(put, texts, cache: TileCache, g_paths, t: Tile, x: int, y: int, q: int, section: str) -> None:
    fw, fh = TILE_W + 2 * BORDER, TILE_H + 2 * BORDER
    img = cache.get(str(g_paths[t.gallery_index]))
    if t.kind == "junk":
        img = _greyed(img)
        label = f"junk\n{t.distance:.3f}"
        color = "#777777"
    else:
        mark = "✓" if t.kind == "match" else "✗"
        label = f"{mark} rank {t.rank}\n{t.distance:.3f}"
        color = "#1a5e2a" if t.kind == "match" else "#a01010"
    put(x, y, img, KIND_RGB[t.kind], q, section, t.kind, t.gallery_index)
    texts.append((x + fw / 2, y + fh + 3, label, dict(fontsize=8, ha="center", va="top", color=color,
                                                       linespacing=1.1)))


def queries_to_json(queries: Sequence[RankedQuery], q_paths, g_paths, g_pids, g_camids) -> List[dict]:
    """Plain records of ranked lists (for ``ranked_lists.json``): gallery paths, pids, cameras, ranks, distances."""
    g_pids, g_camids = _np(g_pids), _np(g_camids)
    out = []
    for q in queries:
        d = asdict(q)
        d["path"] = str(q_paths[q.query_index])
        d["ap"] = None if math.isnan(q.ap) else q.ap
        for key in ("top", "missed"):
            for t in d[key]:
                gi = t["gallery_index"]
                t.update(path=str(g_paths[gi]), pid=int(g_pids[gi]), camid=int(g_camids[gi]))
        out.append(d)
    return out
