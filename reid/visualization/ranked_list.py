"""Ranked lists a person reads: the query, its top-k gallery images and the true matches it ranked lowest.

Two steps, both usable without a model:

1. :func:`rank_queries` turns distance rows of chosen queries (plain or re-ranked) into :class:`RankedQuery`
   records, from the evaluation's own pieces: the top-k from :func:`reid.evaluation.topk_valid`, the exact ranks
   of the true matches from :func:`reid.evaluation.match_ranks`, AP / INP / first-match rank from the
   :class:`~reid.evaluation.RankResult` of those distances. Junk (pid -1) is not in the ranked gallery; given its
   distances it is placed among the top-k by distance, greyed and without a rank.
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
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..evaluation import Protocol, RankResult, match_ranks, topk_valid
from ..evaluation.extract import Features
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
MISSED_MIN_W = 190


@dataclass
class Tile:
    """One gallery image in a ranked list."""

    gallery_index: int  # into the ranked gallery; into the junk list for kind "junk"
    distance: float
    rank: Optional[int]  # 1-based rank among the protocol's valid gallery images; None for junk
    kind: str  # "match" (same pid), "false" or "junk" (pid -1, takes no part in ranking)
    path: str = ""
    pid: int = 0
    camid: int = 0
    identity: str = ""  # the dataset's name of the identity ("" = none: show the pid)


@dataclass
class RankedQuery:
    """A query's ranked list: top-k tiles and the lowest-ranked true matches that are not in the top-k."""

    query_index: int
    pid: int
    camid: int
    ap: float  # NaN when the gallery holds no true match for it
    inp: float
    num_matches: int
    first_match_rank: Optional[int]
    top: List[Tile]
    missed: List[Tile]
    path: str = ""
    dataset: str = ""
    identity: str = ""  # the dataset's name of the query's identity ("" = none: show the pid)

    @property
    def identity_label(self) -> str:
        return identity_label(self.pid, self.identity)

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


def identity_label(pid: int, name: str = "") -> str:
    """How an identity is shown: its dataset name when it has one, else "pid N"."""
    return name if name else f"pid {pid}"


def removed_items(cross_camera: bool) -> str:
    """What the protocol removes from a query's gallery besides junk, in words (sheet headers, report captions)."""
    return "same-camera views of the query's identity" if cross_camera else "the query's own image"


def camera_label(camid: int) -> str:
    """A 0-based camera id as shown (1-based, as in the file names), "unknown" for -1 (no camera id)."""
    return "unknown" if camid < 0 else str(camid + 1)


def _tile(images: Features, i: int, distance: float, rank: Optional[int], kind: str,
          names: Sequence[str] = ()) -> Tile:
    return Tile(i, float(distance), rank, kind, str(images.paths[i]), int(images.pids[i]), int(images.camids[i]),
                names[i] if i < len(names) else "")


def rank_queries(
    dist_rows: torch.Tensor | np.ndarray,
    query_indices: Sequence[int],
    result: RankResult,
    query: Features,
    gallery: Features,
    topk: int = 10,
    num_missed: int = 3,
    junk: Optional[Features] = None,
    junk_rows: Optional[torch.Tensor | np.ndarray] = None,
    dataset: str = "",
    protocol: Optional[Protocol] = None,
    identity_names: Sequence[str] = (),
) -> List[RankedQuery]:
    """Ranked lists of the queries ``query_indices`` from their distance rows ``dist_rows`` (S x G).

    ``result`` is the evaluation of the same distances (its per-query AP, INP and first-match rank are shown);
    ``query`` / ``gallery`` the ranked images (only their pids, cameras and paths are read). With ``junk`` and
    ``junk_rows`` (S x J distances to it), junk closer than a list's last tile is shown in it, greyed.
    ``protocol``: the evaluation's :class:`~reid.evaluation.Protocol` of ``query`` x ``gallery``
    (``TestSetResult.protocol``; default: cross-camera). ``identity_names``: the identities' names, query then gallery
    (``TestSetResult.identity_names``; "" or missing = show the pid).
    """
    idx = np.asarray(list(query_indices), dtype=np.int64)
    names = list(identity_names)
    q_names, g_names = names[:len(query.paths)], names[len(query.paths):]
    rows = torch.as_tensor(dist_rows) if not isinstance(dist_rows, torch.Tensor) else dist_rows
    if rows.dim() != 2 or rows.shape[0] != len(idx) or rows.shape[1] != len(gallery.paths):
        raise ReIDError(f"rank_queries: distance rows of shape {tuple(rows.shape)} do not fit {len(idx)} queries x "
                        f"{len(gallery.paths)} gallery images.")
    if len(idx) == 0:
        return []
    protocol = protocol or Protocol(query.pids, gallery.pids, query.camids, gallery.camids)
    chosen = protocol.subset(idx)
    k = max(1, int(topk))
    top = topk_valid(rows, chosen, k=min(k, rows.shape[1]))
    matches = match_ranks(rows, chosen)
    junk_dist = None if junk is None or junk_rows is None else torch.as_tensor(junk_rows).double().cpu().numpy()
    dist = rows.double().cpu().numpy()
    out = []
    for s, qi in enumerate(idx.tolist()):
        pid = int(query.pids[qi])
        tiles = [_tile(gallery, int(g), d, r, "match" if int(gallery.pids[g]) == pid else "false", g_names)
                 for r, (g, d) in enumerate(zip(top.indices[s], top.distances[s]), start=1) if g >= 0]
        if junk_dist is not None:
            near = np.flatnonzero(junk_dist[s] < (tiles[-1].distance if len(tiles) == k else np.inf))
            extra = [_tile(junk, int(j), junk_dist[s, j], None, "junk") for j in near]
            # By distance; a valid image before junk at the same distance. Junk takes slots of the top-k.
            tiles = sorted(tiles + extra, key=lambda t: (t.distance, t.kind == "junk"))[:k]
        shown = {t.gallery_index for t in tiles if t.kind != "junk"}
        m = matches[s]
        rest = [(int(r), int(g)) for g, r in zip(m.gallery, m.ranks) if g not in shown]
        missed = [_tile(gallery, g, dist[s, g], r, "match", g_names)
                  for r, g in rest[max(0, len(rest) - num_missed):]] \
            if num_missed > 0 else []
        first = int(result.first_match[qi])
        out.append(RankedQuery(
            query_index=qi, pid=pid, camid=int(query.camids[qi]), ap=float(result.ap[qi]),
            inp=float(result.inp[qi]), num_matches=len(m.gallery), first_match_rank=first or None, top=tiles,
            missed=missed, path=str(query.paths[qi]), dataset=dataset,
            identity=q_names[qi] if qi < len(q_names) else "",
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
    """Decoded, resized tile images by path (a gallery image appears in many ranked lists). ``strips``: the frames
    of each tracklet by its path (its first frame); such a tile shows four evenly spaced frames of the tracklet
    in a 2 x 2 grid, in temporal order (a tile keeps the frames' portrait shape, a row of four would not)."""

    GRID = (2, 2)  # rows, columns of a tracklet's tile

    def __init__(self, size: Tuple[int, int] = (TILE_H, TILE_W),
                 strips: Optional[Mapping[str, Sequence[str]]] = None) -> None:
        self.size = size
        self.strips = strips or {}
        self._cache: Dict[str, np.ndarray] = {}
        self._warned = False

    def get(self, path: str) -> np.ndarray:
        if path not in self._cache:
            frames = self.strips.get(path)
            self._cache[path] = self._strip(frames) if frames and len(frames) > 1 else self._load(path)
        return self._cache[path]

    def _strip(self, frames: Sequence[str]) -> np.ndarray:
        """Up to rows x columns evenly spaced frames (first and last included), each fitted into its cell."""
        (h, w), (rows, cols) = self.size, self.GRID
        count = min(rows * cols, len(frames))
        picks = [frames[round(i * (len(frames) - 1) / max(1, count - 1))] for i in range(count)]
        tile = np.full((h, w, 3), 255, dtype=np.uint8)
        for i, frame in enumerate(picks):
            top, bottom = (i // cols) * h // rows, (i // cols + 1) * h // rows
            left, right = (i % cols) * w // cols, (i % cols + 1) * w // cols
            tile[top:bottom, left:right] = self._load(frame, (bottom - top, right - left))
        return tile

    def _load(self, path: str, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        h, w = size or self.size
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
        fitted = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(fitted, Image.BILINEAR)
        canvas.paste(img, ((w - fitted[0]) // 2, (h - fitted[1]) // 2))
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
    path: str | Path,
    title: str = "",
    topk: Optional[int] = None,
    num_missed: Optional[int] = None,
    cache: Optional[TileCache] = None,
    cross_camera: bool = True,
) -> SheetLayout:
    """Draw ``queries`` (one row each) into the PNG ``path``; returns where every tile went.

    ``topk`` / ``num_missed`` fix the column count (default: the longest list among ``queries``), so that sheets
    of one run line up. ``cross_camera``: the protocol the lists were ranked by (named in the header).
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
    # The missed section is at least as wide as its header and its "all true matches are in the top-k" note.
    right = (x_missed + max(num_missed * fw + (num_missed - 1) * GAP, MISSED_MIN_W)) if num_missed \
        else x_missed - SECTION_GAP
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
    texts.append((x_top, head_y, f"top-{topk} gallery ({removed_items(cross_camera)} removed)",
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
        name = Path(q.path).name
        rows_text.append((x_query, top_y + 4, [
            (f"AP {ap_text}", dict(fontsize=10, weight="bold")),
            (f"query #{q.query_index}  {name}  ({q.identity_label}, camera {camera_label(q.camid)})",
             dict(fontsize=9)),
            (found, dict(fontsize=9, color="#444444")),
        ]))
        put(x_query, ty, cache.get(q.path), QUERY_RGB, q.query_index, "query", "query", -1)
        short = q.identity_label if len(q.identity_label) <= 12 else q.identity_label[:11] + "…"
        cam = "cam ?" if q.camid < 0 else f"cam {q.camid + 1}"
        texts.append((x_query + fw / 2, ty + fh + 3, f"{short}\n{cam}",
                      dict(fontsize=8, ha="center", va="top", linespacing=1.1)))
        for c, t in enumerate(q.top):
            self_x = x_top + c * (fw + GAP)
            _draw_tile(put, texts, cache, t, self_x, ty, q.query_index, "top")
        if not q.top:
            texts.append((x_top, ty + fh / 2, "(no gallery image left after the protocol's removals)",
                          dict(fontsize=9, va="center", color="#666666")))
        for c, t in enumerate(q.missed):
            _draw_tile(put, texts, cache, t, x_missed + c * (fw + GAP), ty, q.query_index, "missed")
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
        *([("■ junk (pid -1, not ranked)", dict(fontsize=9, color=_mpl(JUNK_RGB)))] if has_junk else []),
        ("under each tile: rank, distance", dict(fontsize=9, color="#444444")),
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


def _draw_tile(put, texts, cache: TileCache, t: Tile, x: int, y: int, q: int, section: str) -> None:
    fw, fh = TILE_W + 2 * BORDER, TILE_H + 2 * BORDER
    img = cache.get(t.path)
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


def queries_to_json(queries: Sequence[RankedQuery]) -> List[dict]:
    """Plain records of ranked lists (for the JSON manifests): every tile with its path, pid, camera, rank and
    distance; NaN AP / INP become null."""
    out = []
    for q in queries:
        d = asdict(q)
        d.update(ap=None if math.isnan(q.ap) else q.ap, inp=None if math.isnan(q.inp) else q.inp)
        out.append(d)
    return out
