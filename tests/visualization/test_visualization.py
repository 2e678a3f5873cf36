"""Ranked-list sheets, plots and the HTML report: colours read from the PNG pixels, tiles counted, links resolved."""
from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.evaluation import PairHistogram, distance_histogram, evaluate, evaluate_rank
from reid.evaluation.extract import Features
from reid.utils.errors import ReIDError
from reid.visualization.curves import Curve, plot_cmc, plot_distance_histogram, plot_training_curves, read_train_log
from reid.visualization.ranked_list import (BORDER, FALSE_RGB, JUNK_RGB, MATCH_RGB, QUERY_RGB, TILE_H, TILE_W,
                                            draw_sheet, rank_queries, select_queries)
from reid.visualization.sheets import write_index, write_sheets

KIND_RGB = {"match": MATCH_RGB, "false": FALSE_RGB, "junk": JUNK_RGB, "query": QUERY_RGB}


# -- helpers -----------------------------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.links.append(a[key])


def assert_links_resolve(page: Path, optional=()) -> list:
    """Every href/src of ``page`` is a relative file that exists (or an anchor on the page); nothing external.
    ``optional`` links may point to files that do not exist yet."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.links, f"{page} has no links"
    for link in parser.links:
        assert "://" not in link and not link.startswith("//"), f"{page}: external resource {link!r}"
        if link.startswith("#"):
            assert link[1:] in parser.ids, f"{page}: anchor {link!r} missing"
            continue
        target = (page.parent / link.split("#")[0]).resolve()
        assert link in optional or target.is_file(), f"{page}: link {link!r} does not resolve ({target})"
    return parser.links


def _solid(path: Path, rgb, size=(64, 128)) -> str:
    Image.new("RGB", size, tuple(rgb)).save(path)
    return str(path)


def _near(pixel, rgb, tol=3) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel[:3], rgb))


def _edge_pixels(box):
    """Points in the middle of the border band on each of the tile's four sides."""
    x0, y0, x1, y1 = box
    mx, my, b = (x0 + x1) // 2, (y0 + y1) // 2, BORDER // 2
    return [(mx, y0 + b), (mx, y1 - 1 - b), (x0 + b, my), (x1 - 1 - b, my)]


@pytest.fixture()
def toy(tmp_path):
    """3 queries, 8 ranked gallery images and 2 junk images with distinct solid colours; distances chosen so
    every list is known.

    gallery: 0-2 pid 1 (cams 1, 1, 0), 3-4 pid 2 (cams 1, 0), 5-6 pid 3 (cam 1), 7 distractor (pid 0);
    junk 8-9 (pid -1, columns 8 and 9 of ``dist``). Query 0 = pid 1 cam 0 (gallery 2 is removed: same pid, same
    camera).
    """
    q_pids, q_cams = np.array([1, 2, 3]), np.array([0, 0, 0])
    g_pids = np.array([1, 1, 1, 2, 2, 3, 3, 0, -1, -1])
    g_cams = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 1])
    dist = np.array([
        # g:  0     1     2     3     4     5     6     7     8     9
        [0.10, 0.90, 0.05, 0.20, 0.30, 0.40, 0.50, 0.60, 0.15, 0.70],  # q0: match, junk, false x5, junk, match
        [0.50, 0.55, 0.60, 0.10, 0.01, 0.20, 0.30, 0.40, 0.80, 0.85],  # q1: 4 (pid 2, cam 0) removed; 3 first
        [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.95, 0.70, 0.80, 0.90],  # q2: matches 5, 6 at ranks 6, 8
    ])
    g_paths = [_solid(tmp_path / f"g{i}.png", (10 + 20 * i, 200 - 15 * i, 40 + 7 * i)) for i in range(10)]
    q_paths = [_solid(tmp_path / f"q{i}.png", (250, 240 - 60 * i, 10)) for i in range(3)]
    return dict(q_pids=q_pids, q_cams=q_cams, g_pids=g_pids, g_cams=g_cams, dist=dist, g_paths=g_paths,
                q_paths=q_paths)


def _features(pids, cams, paths, dim: int = 1) -> Features:
    return Features(torch.zeros(len(paths), dim), torch.as_tensor(pids), torch.as_tensor(cams), list(paths))


def _split(toy):
    """(query, ranked gallery, junk) features and the evaluator's result on the ranked gallery."""
    query = _features(toy["q_pids"], toy["q_cams"], toy["q_paths"])
    gallery = _features(toy["g_pids"][:8], toy["g_cams"][:8], toy["g_paths"][:8])
    junk = _features(toy["g_pids"][8:], toy["g_cams"][8:], toy["g_paths"][8:])
    result = evaluate_rank(toy["dist"][:, :8], toy["q_pids"], toy["g_pids"][:8], toy["q_cams"], toy["g_cams"][:8])
    return query, gallery, junk, result


def _rank(toy, show_junk: bool = True, **kw):
    idx = kw.pop("indices", [0, 1, 2])
    query, gallery, junk, result = _split(toy)
    return rank_queries(toy["dist"][idx, :8], idx, result, query, gallery, junk=junk if show_junk else None,
                        junk_rows=toy["dist"][idx, 8:] if show_junk else None, dataset="toy", **kw)


def _toy_ids(tiles) -> list:
    """Tiles as the toy's column numbers (junk j is column 8 + j)."""
    return [t.gallery_index + (8 if t.kind == "junk" else 0) for t in tiles]


# -- ranking -----------------------------------------------------------------------------------------------------

def test_ranked_lists_follow_the_protocol(toy):
    q0, q1, q2 = _rank(toy, topk=10, num_missed=2, show_junk=True)
    # q0: gallery 2 (same pid, same camera) is gone; junk 8 and 9 are shown by distance, greyed and unranked.
    assert _toy_ids(q0.top) == [0, 8, 3, 4, 5, 6, 7, 9, 1]
    assert [t.kind for t in q0.top] == ["match", "junk", "false", "false", "false", "false", "false", "junk", "match"]
    assert [t.rank for t in q0.top] == [1, None, 2, 3, 4, 5, 6, None, 7]
    assert q0.num_matches == 2 and q0.first_match_rank == 1 and q0.missed == []
    assert q0.ap == pytest.approx((1 / 1 + 2 / 7) / 2) and q0.inp == pytest.approx(2 / 7)
    assert q0.top[0].distance == pytest.approx(0.10)
    assert q0.top[1].path == toy["g_paths"][8] and q0.top[1].pid == -1
    # q1: gallery 4 (pid 2, camera 0) removed; its true match 3 is rank 1.
    assert 4 not in _toy_ids(q1.top) and q1.top[0].gallery_index == 3 and q1.ap == 1.0
    # Junk hidden: it vanishes, ranks unchanged.
    h0 = _rank(toy, topk=10, show_junk=False)[0]
    assert _toy_ids(h0.top) == [0, 3, 4, 5, 6, 7, 1]
    assert [t.rank for t in h0.top] == list(range(1, 8))
    # Junk takes slots of the top-k: with top-3, q0 shows match, junk, false.
    assert _toy_ids(_rank(toy, topk=3, indices=[0])[0].top) == [0, 8, 3]
    # Missed matches: with top-3, q2's true matches (ranks 6 and 8) are listed after the top-k, in rank order.
    q2 = _rank(toy, topk=3, num_missed=3, indices=[2])[0]
    assert [t.gallery_index for t in q2.missed] == [5, 6] and [t.rank for t in q2.missed] == [6, 8]
    assert all(t.kind == "match" for t in q2.missed)


def test_ranked_lists_agree_with_the_evaluator():
    """Tile ranks, first-match rank and AP of every list are the evaluator's (ties by gallery index)."""
    rng = np.random.default_rng(3)
    nq, ng = 25, 80
    q_pids, g_pids = rng.integers(0, 8, nq), rng.integers(-1, 8, ng)
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    dist = np.round(rng.random((nq, ng)), 2)  # ties, resolved by gallery index like the evaluator
    ref = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    got = rank_queries(dist, range(nq), ref, _features(q_pids, q_cams, [f"q{i}" for i in range(nq)]),
                       _features(g_pids, g_cams, [f"g{i}" for i in range(ng)]), topk=5, num_missed=100)
    for i, q in enumerate(got):
        order = np.argsort(dist[i], kind="stable")
        keep = (g_pids[order] != -1) & ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        valid = order[keep]
        assert [(t.gallery_index, t.rank) for t in q.top] == [(int(g), r) for r, g in enumerate(valid[:5], 1)]
        ranks = np.flatnonzero(g_pids[valid] == q_pids[i]) + 1
        shown = [t.rank for t in q.top if t.kind == "match"] + [t.rank for t in q.missed]
        assert sorted(shown) == ranks.tolist() and q.num_matches == len(ranks)
        if len(ranks):
            assert q.first_match_rank == ranks[0]
            assert q.ap == pytest.approx(np.mean(np.arange(1, len(ranks) + 1) / ranks), abs=1e-12)
        else:
            assert q.first_match_rank is None and math.isnan(q.ap)
    valid_q = [q for q in got if q.has_match]
    assert np.mean([q.first_match_rank == 1 for q in valid_q]) == pytest.approx(ref.cmc[0])


def test_select_queries(toy):
    paths = toy["q_paths"]
    ap = np.array([0.5, np.nan, 0.2])
    assert select_queries(paths, ap, worst=5) == [2, 0]  # no-match queries are not "worst"
    assert select_queries(paths, ap, queries=["1", "q0.png", "q2"], worst=1) == [1, 0, 2]
    assert select_queries(paths, ap, random=2, seed=1) == select_queries(paths, ap, random=2, seed=1)
    with pytest.raises(ReIDError, match=r"out of range.*3 queries \(indices 0\.\.2\)"):
        select_queries(paths, ap, queries=[3], dataset="toy")
    with pytest.raises(ReIDError, match=r"No query file named 'q7.png'.*Did you mean"):
        select_queries(paths, ap, queries=["q7.png"], dataset="toy")


# -- sheets: colours and tiles read from the pixels ---------------------------------------------------------------

def test_sheet_border_colours_and_tiles(toy, tmp_path):
    ranked = _rank(toy, topk=6, num_missed=2, show_junk=True)
    out = tmp_path / "sheet.png"
    layout = draw_sheet(ranked, out, title="toy")
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[:2] == (layout.height, layout.width)

    # Expected tiles: per query 1 query tile + min(6, list) top tiles + its missed matches.
    expected = sum(1 + len(q.top) + len(q.missed) for q in ranked)
    assert len(layout.tiles) == expected == 3 + 6 + 6 + 6 + 1 + 0 + 1  # q0 misses gallery 1, q2 gallery 6
    kinds = [t.kind for t in layout.tiles]
    assert {"query", "match", "false", "junk"} <= set(kinds)

    for tile in layout.tiles:
        x0, y0, x1, y1 = tile.box
        assert (x1 - x0, y1 - y0) == (TILE_W + 2 * BORDER, TILE_H + 2 * BORDER)
        for x, y in _edge_pixels(tile.box):
            assert _near(img[y, x], KIND_RGB[tile.kind]), (tile, (x, y), img[y, x])
        # The photo inside is the right gallery image (solid colours, placed unscaled).
        if tile.kind in ("match", "false"):
            src = np.asarray(Image.open(toy["g_paths"][tile.gallery_index]).convert("RGB"))[0, 0]  # ranked gallery
            assert _near(img[(y0 + y1) // 2, (x0 + x1) // 2], src)
        if tile.kind == "junk":  # greyed: the three channels are equal
            r, g, b = img[(y0 + y1) // 2, (x0 + x1) // 2]
            assert r == g == b

    # True match = green, false = red, at the first row's first two top tiles (q0: rank 1 match, then junk,
    # then rank 2 false).
    row0 = [t for t in layout.tiles if t.query_index == 0 and t.section == "top"]
    assert [t.kind for t in row0[:3]] == ["match", "junk", "false"]
    x0, y0, _, _ = row0[0].box
    r, g, b = (int(c) for c in img[y0 + 1, x0 + 1])
    assert g > r + 60 and g > b + 60, "a true match's frame is green"
    x0, y0, _, _ = row0[2].box
    r, g, b = (int(c) for c in img[y0 + 1, x0 + 1])
    assert r > g + 60 and r > b + 60, "a false match's frame is red"

    # Count the framed tiles on the PNG itself: runs of frame colour along each row's top border line.
    for q in ranked:
        tiles = [t for t in layout.tiles if t.query_index == q.query_index]
        y = tiles[0].box[1] + BORDER // 2
        line = img[y]
        framed = np.zeros(len(line), dtype=bool)
        for rgb in KIND_RGB.values():
            framed |= np.all(np.abs(line.astype(int) - rgb) <= 3, axis=1)
        runs = int(np.sum(framed[1:] & ~framed[:-1]) + framed[0])
        assert runs == len(tiles) == 1 + len(q.top) + len(q.missed)


def test_sheets_and_index_links(toy, tmp_path):
    ranked = _rank(toy, topk=4, num_missed=1)
    sheets = write_sheets(ranked, tmp_path / "out", "toy", per_sheet=2, title="toy", progress=False)
    assert [s.file for s in sheets] == ["toy_001.png", "toy_002.png"]
    assert [len(s.queries) for s in sheets] == [2, 1]
    index = write_index(sheets, tmp_path / "out", title="toy lists")
    links = assert_links_resolve(index)
    assert {"toy_001.png", "toy_002.png"} <= set(links)
    text = index.read_text()
    assert "<script>" in text and "sortable" in text and "http" not in text.lower().replace("http-equiv", "")
    for q in ranked:  # every query's AP is listed
        assert f"{q.ap:.3f}" in text
    manifest = json.loads((tmp_path / "out" / "ranked_lists.json").read_text())
    assert manifest["sheets"][0]["queries"][0]["top"][0]["path"] == toy["g_paths"][0]


# -- curves ------------------------------------------------------------------------------------------------------

def _is_png(path: Path) -> bool:
    with Image.open(path) as im:
        im.verify()
        return im.format == "PNG" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cmc_and_training_curves(tmp_path):
    cmc = np.minimum(1.0, np.linspace(0.3, 1.2, 50))
    p = plot_cmc([Curve("Synthetic", cmc), Curve("Synthetic +rerank", np.minimum(cmc + 0.05, 1), True)],
                 tmp_path / "cmc.png")
    assert _is_png(p)
    log = tmp_path / "train_log.jsonl"
    lines = [json.dumps({"epoch": e, "lr": 1e-3 * e, "loss_ce": 5.0 / e, "loss_circle": 60.0 / e,
                         "loss_total": 65.0 / e, "time_s": 1.0, "images_per_s": 100.0}) for e in (1, 2, 3)]
    lines.insert(2, json.dumps({"epoch": 2, "eval": {"S": {"rank1": 0.5, "mAP": 0.4, "mINP": 0.2,
                                                          "rerank": {"rank1": 0.6, "mAP": 0.5, "mINP": 0.3}}}}))
    lines.append(json.dumps({"epoch": 3, "lr": 3e-3, "loss_ce": 1.0}))  # a resumed run logs epoch 3 again
    log.write_text("\n".join(lines) + '\n{"epoch": 4, "lr"', encoding="utf-8")  # killed mid-write
    parsed = read_train_log(log)
    assert [r["epoch"] for r in parsed.epochs] == [1, 2, 3] and parsed.epochs[-1]["loss_ce"] == 1.0
    assert len(parsed.evals) == 1 and parsed.skipped == 1
    assert _is_png(plot_training_curves(parsed, tmp_path / "curves.png"))


@pytest.mark.parametrize("epochs", [1, 3])
def test_speed_note_overlaps_no_panel(epochs):
    """The images/s note of a short run sits clear of every panel, tick labels and titles included."""
    from reid.visualization.curves import TrainLog, training_curves_figure

    log = TrainLog([{"epoch": e, "lr": 3.5e-4 * e / epochs, "loss_ce": 5.0 / e, "loss_total": 5.0 / e,
                     "images_per_s": 120.0 + e} for e in range(1, epochs + 1)],
                   [{"epoch": epochs, "eval": {"S": {"rank1": 0.3, "mAP": 0.2, "mINP": 0.1}}}])
    fig = training_curves_figure(log)
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    notes = [t for t in fig.findobj(lambda a: hasattr(a, "get_text")) if "images/s" in _text(t)]
    assert len(notes) == 1
    box = notes[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_tightbbox(renderer)), ax.get_title()
    # Whole epochs only on the x axes (no 0.95 .. 1.05 ticks around a single epoch).
    for ax in fig.axes:
        assert all(float(t).is_integer() for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1])


def _text(artist) -> str:
    text = artist.get_text()
    return text if isinstance(text, str) else ""


def test_distance_histogram_counts_valid_pairs(toy, tmp_path):
    d = torch.as_tensor(toy["dist"])
    blocks = [(0, d[:2]), (2, d[2:])]
    h = distance_histogram(blocks, toy["q_pids"], toy["g_pids"], toy["q_cams"], toy["g_cams"], upper=1.0, bins=100)
    qp, gp = toy["q_pids"][:, None], toy["g_pids"][None, :]
    same_cam = toy["q_cams"][:, None] == toy["g_cams"][None, :]
    valid = (gp != -1) & ~((qp == gp) & same_cam)
    assert h.num_true == int((valid & (qp == gp)).sum()) == 5
    assert h.num_false == int((valid & (qp != gp)).sum())
    assert _is_png(plot_distance_histogram(h, tmp_path / "hist.png"))


# -- report ------------------------------------------------------------------------------------------------------

def _fake_evals(toy, cfg, rerank: bool):
    """A TestSetResult as evaluate_test_set builds it: random features, junk aside, re-ranked rows kept for the
    report's worst queries."""
    from reid.evaluation import chance_level, reranker
    from reid.evaluation.testsets import QueryRows, TestSetResult
    from reid.visualization.report import report_rows

    rng = torch.Generator().manual_seed(0)
    q = Features(torch.randn(3, 16, generator=rng), torch.as_tensor(toy["q_pids"]), torch.as_tensor(toy["q_cams"]),
                 toy["q_paths"])
    feats = torch.randn(10, 16, generator=rng)
    g_pids, g_cams = torch.as_tensor(toy["g_pids"]), torch.as_tensor(toy["g_cams"])
    g = Features(feats[:8], g_pids[:8], g_cams[:8], toy["g_paths"][:8])
    junk = Features(feats[8:], g_pids[8:], g_cams[8:], toy["g_paths"][8:])
    ids = (q.pids, g.pids, q.camids, g.camids)
    histogram = PairHistogram(*ids, upper=2.0)
    ev = TestSetResult("toy", evaluate(q.feats, g.feats, *ids, max_rank=10, observe=histogram.add), None, q, g,
                       chance_level(*ids), "cosine", junk, histogram=histogram.result())
    if rerank:
        distmat = reranker(q.feats, g.feats, k1=4, k2=2).matrix()
        ev.rerank = evaluate_rank(distmat, *ids, max_rank=10)
        keep = np.asarray(report_rows(cfg)(ev))
        ev.rerank_rows = QueryRows(keep, distmat[torch.as_tensor(keep)])
    return {"toy": ev}


@pytest.mark.parametrize("with_log", [False, True])
def test_report_links_resolve(toy, tmp_path, with_log):
    from reid.config import get_cfg
    from reid.visualization.report import write_report

    cfg = get_cfg()
    cfg.TEST.RERANK.ENABLED = with_log
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    if with_log:
        (out / "train_log.jsonl").write_text(
            json.dumps({"epoch": 1, "lr": 1e-3, "loss_ce": 2.0, "loss_total": 2.0}) + "\n"
            + json.dumps({"epoch": 1, "eval": {"toy": {"rank1": 0.3, "mAP": 0.2, "mINP": 0.1}}}) + "\n")
    cfg.VIS.QUERIES_PER_SHEET = 2
    evals = _fake_evals(toy, cfg, rerank=with_log)
    page = write_report(cfg, evals, out)
    assert page == out / "report.html"
    lists = "eval/model_final/ranked_lists/index.html" if with_log else "ranked_lists/index.html"
    links = assert_links_resolve(page)  # every link resolves: pages not written yet are named, not linked
    assert lists not in links and f"<code>{lists}</code>" in page.read_text()
    assert ("Evaluations of this run" in page.read_text()) == with_log  # a training run lists its evaluations
    assert "plots/cmc.png" in links and "plots/distances_toy.png" in links
    assert ("plots/training_curves.png" in links) == with_log
    assert "plots/worst_queries/worst_toy_001.png" in links and "plots/worst_queries/worst_toy_002.png" in links
    # Re-ranked worst queries when re-ranking is enabled, from the rows the evaluation kept.
    assert ("plots/worst_queries/worst_toy_rerank_001.png" in links) == with_log
    assert_links_resolve(out / "plots" / "worst_queries" / "index.html")
    manifest = json.loads((out / "plots" / "worst_queries" / "worst_queries.json").read_text())
    assert not (out / "plots" / "worst_queries" / "ranked_lists.json").exists()
    lists = [q for s in manifest["sheets"] for q in s["queries"]]
    assert {q["dataset"] for q in lists} == ({"toy", "toy +rerank"} if with_log else {"toy"})
    text = page.read_text()
    assert ("toy +rerank" in text) == with_log
    chance = evals["toy"].chance
    assert f"{100 * chance.rank1:.2f}" in text and f"{100 * chance.mAP:.2f}" in text
    for f in ("cmc.png", "distances_toy.png"):
        assert _is_png(out / "plots" / f)
