"""``OUTPUT_DIR/report.html``: one page a person reads after training or testing.

It holds the metrics table, the CMC curves (with and without re-ranking when both exist), the training curves
(when ``train_log.jsonl`` is there), the distances of true vs false matches, ranked lists of the worst-AP queries
(``VIS.REPORT_SHEETS`` sheets per test set, drawn into ``plots/worst_queries/``), a link to the ranked lists of
``tools/visualize.py`` when they were written into ``OUTPUT_DIR/ranked_lists/``, and the resolved config. Every
figure is a PNG under ``OUTPUT_DIR/plots/`` linked relatively, so the folder can be copied and opened offline.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from . import html as H
from .curves import Curve, feature_histogram, plot_cmc, plot_distance_histogram, plot_training_curves, read_train_log
from .ranked_list import select_queries
from .sheets import INDEX, SheetInfo, safe_name, ranked_lists, write_index

if TYPE_CHECKING:  # pragma: no cover
    from ..evaluation.testsets import TestSetResult

logger = logging.getLogger("reid")

REPORT = "report.html"
PLOTS = "plots"
WORST_DIR = "worst_queries"
RANKED_LISTS_DIR = "ranked_lists"  # tools/visualize.py's default output folder inside OUTPUT_DIR
TRAIN_LOG = "train_log.jsonl"


def vis_options(cfg) -> dict:
    """``VIS.*`` as plain values (defaults when the config predates the section); ``reid.config.validate`` checks
    their ranges."""
    vis = cfg.get("VIS", None)
    get = (lambda k, d: vis.get(k, d)) if vis is not None else (lambda k, d: d)
    return dict(report=bool(get("REPORT", True)), topk=int(get("TOPK", 10)), num_missed=int(get("NUM_MISSED", 3)),
                per_sheet=int(get("QUERIES_PER_SHEET", 6)), sheets=int(get("REPORT_SHEETS", 2)),
                show_junk=bool(get("SHOW_JUNK", True)), hist_queries=int(get("HIST_MAX_QUERIES", 2000)))


def _metrics_rows(evals: Dict[str, "TestSetResult"]) -> str:
    rows = []
    for name, ev in evals.items():
        for label, res in ((name, ev.result), (f"{name} +rerank", ev.rerank)):
            if res is None:
                continue
            d = res.as_dict()
            cells = [H.cell(H.esc(label), label, "l")]
            for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
                v = d.get(key)
                cells.append(H.num_cell(None if v is None else 100 * v, "{:.2f}"))
            cells += [H.cell(f"{d['num_valid_query']} / {d['num_query']}", str(d["num_valid_query"])),
                      H.cell(str(d["num_gallery"]), str(d["num_gallery"]))]
            rows.append((cells, ""))
    return H.table([("test set", "l"), ("rank-1", ""), ("rank-5", ""), ("rank-10", ""), ("mAP", ""), ("mINP", ""),
                    ("valid queries", ""), ("gallery", "")], rows)


def _img(rel: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><a href="{H.esc(rel)}"><img class=plot src="{H.esc(rel)}" alt="{H.esc(alt)}"></a>{cap}</figure>'


def write_report(cfg, evals: Dict[str, "TestSetResult"], output_dir: Optional[str | Path] = None,
                 metrics: Optional[dict] = None) -> Path:
    """Write the plots and ``report.html`` into ``output_dir`` (default ``cfg.OUTPUT_DIR``); returns the page.

    ``evals`` is what :func:`reid.evaluation.testsets.evaluate_test_sets` returns; ``metrics`` (optional) the dict written
    to metrics.json (its ``train_time_s`` is shown). Works without a training log and without re-ranking.
    """
    opts = vis_options(cfg)
    out = Path(output_dir or cfg.OUTPUT_DIR)
    plots = out / PLOTS
    plots.mkdir(parents=True, exist_ok=True)
    metric = cfg.TEST.METRIC
    t0 = time.perf_counter()
    body: List[str] = []
    trained = bool(metrics) and isinstance(metrics.get("train_time_s"), (int, float))
    kind = "training run" if trained else "evaluation"
    title = f"reid report: {out.resolve().name}"
    body.append(f"<h1>{H.esc(title)}</h1>")
    m = cfg.MODEL
    arch = f"{m.META_ARCHITECTURE}, {m.BACKBONE.NAME}{m.BACKBONE.DEPTH}" + \
        (f" layers {list(m.BACKBONE.LAYERS)}" if len(m.BACKBONE.LAYERS) else "") + f" width {m.BACKBONE.WIDTH}"
    if trained:
        weights = "model_final.pt, trained here" + (f" from {m.WEIGHTS}" if m.WEIGHTS else "")
    else:
        weights = m.WEIGHTS or "none: the initialised model"
    meta = [f"{kind}, written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}", f"model {H.esc(arch)}",
            f"losses {H.esc(', '.join(m.LOSSES.NAME))}", f"weights {H.esc(weights)}",
            f"train {H.esc(', '.join(cfg.DATASETS.NAMES))}, test {H.esc(', '.join(evals))}",
            f"distance {H.esc(metric)}{', flip test' if cfg.TEST.FLIP else ''}"]
    if trained:
        meta.append(f"training time {metrics['train_time_s'] / 60:.1f} min")
    body.append("<p class=meta>" + " &middot; ".join(meta) + "</p>")

    # Metrics.
    body.append("<h2>Metrics</h2>")
    body.append(_metrics_rows(evals))
    body.append("<p class=note>Percent. rank-k = CMC (share of valid queries with a true match in the top k); mAP and "
                "mINP over valid queries (those with a true match in another camera). Same numbers as "
                "<a href=\"metrics.json\">metrics.json</a>.</p>" if (out / "metrics.json").is_file() else
                "<p class=note>Percent; rank-k = CMC, mAP / mINP over valid queries.</p>")

    # CMC.
    curves = []
    for name, ev in evals.items():
        curves.append(Curve(name, ev.result.cmc))
        if ev.rerank is not None:
            curves.append(Curve(f"{name} +rerank", ev.rerank.cmc, rerank=True))
    plot_cmc(curves, plots / "cmc.png", title="CMC" + (" (dashed: k-reciprocal re-ranking)"
                                                        if any(c.rerank for c in curves) else ""))
    figs = [_img(f"{PLOTS}/cmc.png", "CMC curve")]

    # Training curves.
    log_path = out / TRAIN_LOG
    if log_path.is_file():
        log = read_train_log(log_path)
        p = plot_training_curves(log, plots / "training_curves.png",
                                 title=f"Training ({len(log.epochs)} epochs, {len(log.evals)} evaluations)")
        if p is not None:
            figs.append(_img(f"{PLOTS}/training_curves.png", "training curves",
                             f"From <a href=\"{TRAIN_LOG}\">{TRAIN_LOG}</a>: loss terms, learning rate and metrics "
                             f"per evaluation."))
    body.append("<h2>Curves</h2>")
    body.append("<div class=figs>" + "\n".join(figs) + "</div>")

    # Per test set: distances and the worst queries.
    worst_sheets: List[SheetInfo] = []
    for name, ev in evals.items():
        safe = safe_name(name)
        body.append(f"<h2>{H.esc(name)}</h2>")
        q, g = ev.query, ev.gallery
        hist = feature_histogram(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, metric, opts["hist_queries"])
        plot_distance_histogram(hist, plots / f"distances_{safe}.png",
                                title=f"{name}: {metric} distances of true vs false matches (valid pairs)",
                                xlabel=f"{metric} distance")
        body.append("<div class=figs>" + _img(f"{PLOTS}/distances_{safe}.png", f"{name} distance histogram",
                                              "Valid pairs only (junk and same-camera views of the query's identity "
                                              "left out, as in evaluation). Each kind is normalised to area 1.")
                    + "</div>")
        if opts["sheets"] > 0:
            section, sheets = _worst_section(name, ev, out, opts, metric)
            body.append(section)
            worst_sheets += sheets
    if worst_sheets:
        write_index(worst_sheets, plots / WORST_DIR, title="Worst-AP queries", back_link=f"../../{REPORT}",
                    notes=["Drawn by the report from the evaluation's features (plain distance, no re-ranking)."])
    body.append(_ranked_lists_section(out, m.WEIGHTS or str(out / "model_final.pt")))

    # Files and config.
    files = [f for f in ("metrics.json", "config.yaml", "log.txt", TRAIN_LOG, "model_final.pt", "model_last.pt")
             if (out / f).is_file()]
    if files:
        body.append("<h2>Files</h2><p>" + " &middot; ".join(f'<a href="{f}">{f}</a>' for f in files) + "</p>")
    body.append("<h2>Config</h2><details><summary>resolved config (YAML)</summary><pre>"
                f"{H.esc(cfg.dump())}</pre></details>")
    path = out / REPORT
    path.write_text(H.page(title, "\n".join(body)), encoding="utf-8")
    logger.info("Report written to %s (%.1fs)", path, time.perf_counter() - t0)
    return path


def _worst_section(name: str, ev: "TestSetResult", out: Path, opts: dict,
                   metric: str) -> Tuple[str, List[SheetInfo]]:
    n = opts["sheets"] * opts["per_sheet"]
    indices = select_queries(ev.query.paths, ev.result.ap, worst=n, dataset=name)
    if not indices:
        return "", []
    folder = out / PLOTS / WORST_DIR
    prefix = f"worst_{safe_name(name)}"
    sheets = ranked_lists(name, ev.query, ev.gallery, indices, folder, metric=metric, topk=opts["topk"],
                          num_missed=opts["num_missed"], show_junk=opts["show_junk"], per_sheet=opts["per_sheet"],
                          prefix=prefix)
    parts = [f"<h3>The {len(indices)} queries with the lowest AP</h3>",
             f"<p class=note>Ranked by {H.esc(metric)} distance"
             f"{' (without re-ranking)' if ev.rerank is not None else ''}; green = true match, red = false, grey = "
             f"junk; under each image its rank and distance. All sheets with a sortable query table: "
             f"<a href=\"{PLOTS}/{WORST_DIR}/{INDEX}\">{PLOTS}/{WORST_DIR}/{INDEX}</a>.</p>"]
    parts += [_img(f"{PLOTS}/{WORST_DIR}/{s.file}", s.title) for s in sheets]
    return "\n".join(parts), sheets


_RANKED_BEGIN, _RANKED_END = "<!-- ranked-lists -->", "<!-- /ranked-lists -->"


def _ranked_lists_section(out: Path, weights: str) -> str:
    """A link to tools/visualize.py's lists when they exist in ``out/ranked_lists/``, else how to draw them."""
    if (out / RANKED_LISTS_DIR / INDEX).is_file():
        inner = (f"<h2>Ranked lists</h2><p>Drawn by <code>tools/visualize.py</code>: "
                 f'<a href="{RANKED_LISTS_DIR}/{INDEX}">{RANKED_LISTS_DIR}/{INDEX}</a></p>')
    else:
        inner = ("<p class=note>More ranked lists (chosen queries, random samples, re-ranked distances): "
                 f"<code>python tools/visualize.py --config {H.esc(str(out / 'config.yaml'))} MODEL.WEIGHTS "
                 f"{H.esc(weights)}</code> writes them into <code>{RANKED_LISTS_DIR}/</code> and links them here.</p>")
    return f"{_RANKED_BEGIN}{inner}{_RANKED_END}"


def link_ranked_lists(output_dir: str | Path) -> bool:
    """After tools/visualize.py wrote ``OUTPUT_DIR/ranked_lists/``: point an existing report at it (in place)."""
    out = Path(output_dir)
    page = out / REPORT
    try:
        text = page.read_text(encoding="utf-8")
    except OSError:
        return False
    a, b = text.find(_RANKED_BEGIN), text.find(_RANKED_END)
    if a < 0 or b < a:
        return False
    page.write_text(text[:a] + _ranked_lists_section(out, "") + text[b + len(_RANKED_END):], encoding="utf-8")
    return True


def maybe_write_report(cfg, evals: Optional[Dict[str, "TestSetResult"]], output_dir: Optional[str | Path] = None,
                       metrics: Optional[dict] = None) -> Optional[Path]:
    """Called by the trainer and the tester: the report when ``VIS.REPORT``; a failure to draw it is logged and
    never loses the run (metrics.json and the checkpoints are already written)."""
    if not evals:
        return None
    try:
        if not vis_options(cfg)["report"]:
            return None
        return write_report(cfg, evals, output_dir, metrics)
    except Exception:  # noqa: BLE001 - plots must not fail a finished run; the traceback goes to the log
        logger.exception("The report could not be written (metrics.json is complete); set VIS.REPORT False to "
                         "skip it.")
        return None
