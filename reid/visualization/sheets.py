"""Ranked lists of a whole run: ranked lists of chosen queries of an evaluated test set, sheets of several queries
each, and an ``index.html`` that lists every sheet and every query with its AP (sortable, offline), beside a JSON
manifest of the lists.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..evaluation.testsets import TestSetResult
from . import html as H
from .ranked_list import (RankedQuery, TileCache, camera_label, draw_sheet, queries_to_json, rank_queries,
                          removed_items)

INDEX = "index.html"
MANIFEST = "ranked_lists.json"


@dataclass
class SheetInfo:
    """One PNG sheet: its file (relative to the index's folder), dataset and the ranked lists it shows."""

    file: str
    dataset: str
    title: str
    queries: List[RankedQuery] = field(default_factory=list)

    @property
    def aps(self) -> np.ndarray:
        return np.array([q.ap for q in self.queries], dtype=np.float64)


def write_sheets(queries: Sequence[RankedQuery], out_dir: str | Path, prefix: str, per_sheet: int = 6,
                 topk: Optional[int] = None, num_missed: Optional[int] = None, title: str = "",
                 progress: bool = True, cross_camera: bool = True,
                 strips: Optional[Mapping[str, Sequence[str]]] = None) -> List[SheetInfo]:
    """Draw ``queries`` ``per_sheet`` at a time into ``out_dir/<prefix>_001.png``, ... ; returns the sheets.
    ``cross_camera``: the protocol they were ranked by; ``strips``: the frames of each tracklet by its path, drawn
    as a strip of frames (a video set)."""
    out_dir = Path(out_dir)
    per_sheet = max(1, int(per_sheet))
    chunks = [list(queries[i:i + per_sheet]) for i in range(0, len(queries), per_sheet)]
    cache = TileCache(strips=strips)
    sheets = []
    for n, chunk in enumerate(tqdm(chunks, desc=f"{prefix} sheets", leave=False, dynamic_ncols=True,
                                   disable=not progress or len(chunks) < 2), start=1):
        name = f"{prefix}_{n:03d}.png"
        sheet_title = f"{title}  —  sheet {n}/{len(chunks)}" if title else f"sheet {n}/{len(chunks)}"
        draw_sheet(chunk, out_dir / name, title=sheet_title, topk=topk, num_missed=num_missed, cache=cache,
                   cross_camera=cross_camera)
        sheets.append(SheetInfo(name, chunk[0].dataset if chunk else "", sheet_title, chunk))
    return sheets


def draw_ranked_lists(ev: TestSetResult, indices: Sequence[int], out_dir: str | Path, *, reranked: bool = False,
                      topk: int = 10, num_missed: int = 3, show_junk: bool = True, per_sheet: int = 6,
                      prefix: Optional[str] = None) -> List[SheetInfo]:
    """Ranked lists of the queries ``indices`` of an evaluated test set, drawn into sheets.

    ``reranked``: by the re-ranked distances the evaluation kept (``ev.rerank_rows``) and the re-ranked result;
    junk takes no part in re-ranking, so it has no re-ranked distance and is not shown there.
    """
    if not len(indices):
        return []
    result = ev.rerank if reranked else ev.result
    junk = ev.junk if show_junk and not reranked else None
    ranked = rank_queries(ev.distance_rows(indices, reranked), indices, result, ev.query, ev.gallery, topk=topk,
                          num_missed=num_missed, junk=junk, junk_rows=ev.junk_distances(indices) if junk else None,
                          protocol=ev.protocol, identity_names=ev.identity_names,
                          dataset=ev.name + (" +rerank" if reranked else ""))
    title = f"{ev.name}: ranked lists ({distance_name(ev, reranked)})"
    return write_sheets(ranked, out_dir, prefix or safe_name(ev.name) + ("_rerank" if reranked else ""), per_sheet,
                        topk, num_missed, title, cross_camera=ev.protocol.cross_camera, strips=ev.tracklet_frames)


def distance_name(ev: TestSetResult, reranked: bool) -> str:
    return "k-reciprocal re-ranked distance" if reranked else f"{ev.metric} distance"


def safe_name(name: str) -> str:
    """A file-name-safe version of a dataset name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "sheet"


def _previous_sheets(out_dir: Path, manifest: str) -> List[str]:
    """Sheet files listed by the manifest of an earlier run in ``out_dir`` (plain file names only)."""
    try:
        old = json.loads((out_dir / manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = [s.get("file") for s in old.get("sheets", []) if isinstance(s, dict)] if isinstance(old, dict) else []
    return [n for n in names if isinstance(n, str) and Path(n).name == n and n.endswith(".png")]


def write_index(sheets: Sequence[SheetInfo], out_dir: str | Path, title: str = "Ranked lists",
                notes: Sequence[str] = (), back_link: Optional[str] = None, manifest: str = MANIFEST,
                data: Optional[dict] = None) -> Path:
    """``out_dir/index.html`` (every sheet and every query, sortable by AP) and the JSON ``manifest`` beside it
    (``data``, e.g. the metrics, then every sheet's ranked lists). ``notes`` are HTML paragraphs.

    Sheets an earlier index in ``out_dir`` listed and this one does not are deleted (nothing else is).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = set(_previous_sheets(out_dir, manifest)) - {s.file for s in sheets}
    body = [f"<h1>{H.esc(title)}</h1>",
            f'<p class=meta>{len(sheets)} sheet(s), {sum(len(s.queries) for s in sheets)} queries; written '
            f'{_dt.datetime.now().strftime("%Y-%m-%d %H:%M")}; the lists as data: '
            f'<a href="{H.esc(manifest)}">{H.esc(manifest)}</a></p>']
    if back_link:
        body.append(f'<p class=meta><a href="{H.esc(back_link)}">&larr; back to the report</a></p>')
    body += list(notes)
    body.append("<p class=note>Each row of a sheet: the query (blue), its top-k gallery images after the protocol's "
                "removals (green = true match, red = false match, grey = junk, which takes no part in ranking), "
                "then the true matches it ranked lowest. Under each image: its rank and distance. Click a column "
                "title to sort.</p>")
    body.append("<h2>Queries</h2>")
    rows = []
    for s in sheets:
        for q in s.queries:
            rows.append(([
                H.cell(H.esc(q.dataset), q.dataset, "l"),
                H.cell(str(q.query_index), str(q.query_index)),
                H.cell(H.esc(Path(q.path).name), Path(q.path).name, "l"),
                H.cell(H.esc(q.identity_label), q.identity or str(q.pid)),
                H.cell(camera_label(q.camid), str(q.camid + 1)),
                H.num_cell(q.ap), H.num_cell(q.inp),
                H.cell(str(q.first_match_rank) if q.first_match_rank else "n/a",
                       str(q.first_match_rank) if q.first_match_rank else ""),
                H.cell(str(q.num_matches), str(q.num_matches)),
                H.cell(f'<a href="{H.esc(s.file)}">{H.esc(s.file)}</a>', s.file, "l"),
            ], "bad" if q.first_match_rank != 1 else ""))
    body.append(H.table([("dataset", "l"), ("query #", ""), ("file", "l"), ("identity", ""), ("camera", ""), ("AP", ""),
                         ("INP", ""), ("first true match", ""), ("true matches", ""), ("sheet", "l")], rows))
    body.append("<h2>Sheets</h2>")
    srows = []
    for s in sheets:
        aps = s.aps[~np.isnan(s.aps)]
        srows.append(([
            H.cell(f'<a href="#{H.esc(_anchor(s.file))}">{H.esc(s.file)}</a>', s.file, "l"),
            H.cell(H.esc(s.dataset), s.dataset, "l"),
            H.cell(str(len(s.queries)), str(len(s.queries))),
            H.num_cell(float(aps.min()) if len(aps) else None), H.num_cell(float(aps.mean()) if len(aps) else None),
        ], ""))
    body.append(H.table([("sheet", "l"), ("dataset", "l"), ("queries", ""), ("lowest AP", ""), ("mean AP", "")],
                        srows))
    for s in sheets:
        body.append(f'<h3 id="{H.esc(_anchor(s.file))}">{H.esc(s.title)}</h3>')
        body.append(f'<a href="{H.esc(s.file)}"><img class=plot loading=lazy src="{H.esc(s.file)}" '
                    f'alt="{H.esc(s.title)}"></a>')
    path = out_dir / INDEX
    path.write_text(H.page(title, "\n".join(body)), encoding="utf-8")
    record = {"title": title, **(data or {}),
              "sheets": [{"file": s.file, "dataset": s.dataset, "title": s.title,
                          "queries": queries_to_json(s.queries)} for s in sheets]}
    (out_dir / manifest).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    for name in stale:
        (out_dir / name).unlink(missing_ok=True)
    return path


def _anchor(file: str) -> str:
    return "sheet-" + safe_name(Path(file).stem)
