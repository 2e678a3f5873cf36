"""``OUTPUT_DIR/report.html``: one page a person reads after training or testing.

It holds the results table (with the chance level of each split) and each set's protocol, the verification
table (AUC, EER, TAR and threshold at each FAR), the CMC curves (with and without re-ranking when both exist), the
ROC, the training curves (when ``train_log.jsonl`` is there), the distances of true vs false matches with the
thresholds, ranked lists of the worst-AP queries (``VIS.REPORT_SHEETS`` sheets per test set and distance, drawn
into ``plots/worst_queries/``), a link to ``tools/visualize.py``'s ranked lists (``OUTPUT_DIR/ranked_lists/``; of a
training run, ``eval/<name>/ranked_lists/``), the run's evaluations (of a training run), its files and the
resolved config. The page is assembled once from one small function per section; every figure is a PNG under
``OUTPUT_DIR/plots/`` linked relatively, so the folder can be copied and opened offline.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..evaluation.testsets import RowSelector, TestSetResult, split_note
from ..utils.errors import ReIDError
from ..utils.outputs import BEST, CONFIG, EVAL_DIR, FINAL, HISTORY, LAST, LOG, METRICS, REPORT, evaluation_name, \
    holds_training_run
from . import html as H
from .curves import Curve, plot_cmc, plot_distance_histogram, plot_roc, plot_training_curves, read_train_log
from .evaluations import RANKED_LISTS_DIR, evaluations_section
from .ranked_list import removed_items, select_queries
from .sheets import INDEX, SheetInfo, distance_name, draw_ranked_lists, safe_name, write_index

logger = logging.getLogger("reid")

PLOTS = "plots"
WORST_DIR = "worst_queries"
WORST_MANIFEST = "worst_queries.json"  # the report's worst-AP lists (tools/visualize.py writes ranked_lists.json)
TRAIN_LOG = HISTORY


def vis_options(cfg) -> dict:
    """``VIS.*`` as plain values (their ranges are checked with the rest of the config)."""
    v = cfg.VIS
    return dict(report=bool(v.REPORT), topk=int(v.TOPK), num_missed=int(v.NUM_MISSED),
                per_sheet=int(v.QUERIES_PER_SHEET), sheets=int(v.REPORT_SHEETS), show_junk=bool(v.SHOW_JUNK))


def _worst(ev: TestSetResult, reranked: bool, count: int) -> List[int]:
    """The ``count`` queries with the lowest AP under the plain or the re-ranked distance."""
    return select_queries(ev.query.paths, (ev.rerank if reranked else ev.result).ap, worst=count, dataset=ev.name)


def report_rows(cfg) -> Optional[RowSelector]:
    """What the report needs kept of the re-ranking: the rows of the worst re-ranked queries it draws. Pass it as
    ``keep_rows`` to :func:`reid.evaluation.testsets.evaluate_test_sets`; None when nothing re-ranked is drawn."""
    opts = vis_options(cfg)
    count = opts["sheets"] * opts["per_sheet"]
    if not (opts["report"] and count > 0 and cfg.TEST.RERANK.ENABLED):
        return None
    return lambda ev: _worst(ev, True, count)


def _img(rel: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><a href="{H.esc(rel)}"><img class=plot src="{H.esc(rel)}" alt="{H.esc(alt)}"></a>{cap}</figure>'


def _header(cfg, evals: Dict[str, TestSetResult], out: Path, metrics: Optional[dict]) -> str:
    m = cfg.MODEL
    trained = bool(metrics) and isinstance(metrics.get("train_time_s"), (int, float))
    arch = f"{m.META_ARCHITECTURE}, {m.BACKBONE.NAME}{m.BACKBONE.DEPTH}" + \
        (f" layers {list(m.BACKBONE.LAYERS)}" if len(m.BACKBONE.LAYERS) else "") + f" width {m.BACKBONE.WIDTH}"
    ema = cfg.SOLVER.EMA
    if trained:
        weights = f"{FINAL}, trained here" + (f" from {m.WEIGHTS}" if m.WEIGHTS else "")
        if ema.ENABLED:  # what was evaluated and saved is not the last step's weights
            weights += f"; evaluated and saved: the EMA of the weights (SOLVER.EMA.DECAY {ema.DECAY:g})"
    else:
        weights = m.WEIGHTS or "none: the initialised model"
    meta = [f"{'training run' if trained else 'evaluation'}, written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
            f"model {H.esc(arch)}", f"losses {H.esc(', '.join(m.LOSSES.NAME))}", f"weights {H.esc(weights)}",
            f"train {H.esc(', '.join(cfg.DATASETS.NAMES))}, test {H.esc(', '.join(evals))}",
            f"distance {H.esc(cfg.TEST.METRIC)}{', flip test' if cfg.TEST.FLIP else ''}"]
    if trained:
        meta.append(f"training time {metrics['train_time_s'] / 60:.1f} min")
    return f"<h1>{H.esc(_title(out))}</h1>\n<p class=meta>" + " &middot; ".join(meta) + "</p>"


def _title(out: Path) -> str:
    return f"reid report: {out.resolve().name}"


def _metrics_section(evals: Dict[str, TestSetResult], out: Path) -> str:
    same = (f"<p class=note>The same numbers as <a href=\"{METRICS}\">{METRICS}</a>.</p>"
            if (out / METRICS).is_file() else "")
    protocols = "".join(f"<li>{H.esc(name)}: {H.esc(ev.protocol.name)} ({H.esc(ev.protocol.reason)})</li>"
                        for name, ev in evals.items())
    return (f"<h2>Metrics</h2>\n{H.results_table(evals)}{same}<p class=note>Protocol of each test set (which "
            f"gallery items of the query's identity take no part, and why):</p><ul class=note>{protocols}</ul>"
            f"{_verification_table(evals)}")


def _verification_table(evals: Dict[str, TestSetResult]) -> str:
    """Per test set: AUC, EER and, at each FAR, the TAR and the distance threshold (metrics.json's
    ``verification``)."""
    verified = {name: ev.verification for name, ev in evals.items() if ev.verification is not None}
    if not verified:
        return ""
    fars = list(dict.fromkeys(k for v in verified.values() for k in v.tar_at_far))
    rows = []
    for name, v in verified.items():
        cells = [H.cell(H.esc(name), name, "l"), H.num_cell(v.auc, "{:.4f}"), H.num_cell(100 * v.eer, "{:.2f}")]
        for far in fars:
            cells += [H.num_cell(100 * v.tar_at_far.get(far, float("nan")), "{:.2f}"),
                      H.num_cell(v.threshold_at_far.get(far, float("nan")), "{:.4f}")]
        cells.append(H.cell(f"{v.num_true:,} / {v.num_false:,}", str(v.num_true)))
        rows.append((cells, ""))
    heads = [("test set", "l"), ("AUC", ""), ("EER %", "")]
    for far in fars:
        heads += [(f"TAR@{far} %", ""), (f"threshold@{far}", "")]
    heads.append(("true / false pairs", ""))
    first = next(iter(verified.values()))
    return ("<h3>Verification (same person when distance &le; threshold)</h3>" + H.table(heads, rows)
            + f"<p class=note>Over every valid query-gallery pair of the plain distances; the threshold at FAR "
            f"{H.esc(first.as_dict()['far'])} (TEST.VERIFY_FAR) is the one metrics.json and model_final.pt keep "
            f"(ReIDModel.threshold, reid-search --threshold auto).</p>")


def _curves_section(evals: Dict[str, TestSetResult], out: Path) -> str:
    curves = []
    for name, ev in evals.items():
        shown = ev.split_mean or ev  # a test set evaluated on several splits: their mean CMC
        name = name if ev.split_mean is None else f"{name} (mean of {len(ev.split_mean.ids)} splits)"
        curves.append(Curve(name, shown.result.cmc))
        if shown.rerank is not None:
            curves.append(Curve(f"{name} +rerank", shown.rerank.cmc, rerank=True))
    plot_cmc(curves, out / PLOTS / "cmc.png",
             title="CMC" + (" (dashed: k-reciprocal re-ranking)" if any(c.rerank for c in curves) else ""))
    figs = [_img(f"{PLOTS}/cmc.png", "CMC curve")]
    verified = [(name, ev.verification) for name, ev in evals.items() if ev.verification is not None]
    if any(v.num_true and v.num_false for _, v in verified):
        plot_roc(verified, out / PLOTS / "roc.png", title="Verification ROC, plain distances")
        figs.append(_img(f"{PLOTS}/roc.png", "ROC curve",
                         "Every valid query-gallery pair of the evaluation protocol: a pair is accepted when its "
                         "distance is at most the threshold. Exact (no binning); thresholds in the table above."))
    if (out / TRAIN_LOG).is_file():
        log = read_train_log(out / TRAIN_LOG)
        if plot_training_curves(log, out / PLOTS / "training_curves.png",
                                title=f"Training ({len(log.epochs)} epochs, {len(log.evals)} evaluations)"):
            figs.append(_img(f"{PLOTS}/training_curves.png", "training curves",
                             f"From <a href=\"{TRAIN_LOG}\">{TRAIN_LOG}</a>: loss terms, learning rate and metrics "
                             f"per evaluation."))
    return "<h2>Curves</h2>\n<div class=figs>" + "\n".join(figs) + "</div>"


def _test_set_section(ev: TestSetResult, out: Path, opts: dict) -> Tuple[str, List[SheetInfo]]:
    """Distances of true vs false matches (the histogram the evaluation counted) and the worst-AP queries, plain
    and (when enabled) re-ranked."""
    parts = [f"<h2>{H.esc(ev.name)}</h2>",
             f"<p class=meta>protocol: {H.esc(ev.protocol.name)} ({H.esc(ev.protocol.reason)})</p>"]
    if ev.split_mean is not None:
        parts.append(f"<p class=note>{H.esc(split_note(ev.name, ev))}.</p>")
    if ev.histogram is not None:
        safe = safe_name(ev.name)
        plot_distance_histogram(ev.histogram, out / PLOTS / f"distances_{safe}.png",
                                title=f"{ev.name}: {ev.metric} distances of true vs false matches (valid pairs)",
                                xlabel=f"{ev.metric} distance",
                                thresholds=ev.verification.threshold_at_far if ev.verification is not None else None)
        removed = removed_items(ev.protocol.cross_camera)
        parts.append("<div class=figs>" + _img(f"{PLOTS}/distances_{safe}.png", f"{ev.name} distance histogram",
                                               f"Valid pairs only (junk and {removed} left out, as in evaluation). "
                                               f"Each kind is normalised to area 1; vertical lines: the verification "
                                               f"thresholds at each FAR.") + "</div>")
    sheets: List[SheetInfo] = []
    count = opts["sheets"] * opts["per_sheet"]
    distances = [False, True] if ev.rerank is not None else [False]
    for reranked in distances if count else []:
        html, drawn = _worst_lists(ev, reranked, count, out, opts)
        parts.append(html)
        sheets += drawn
    return "\n".join(parts), sheets


def _worst_lists(ev: TestSetResult, reranked: bool, count: int, out: Path,
                 opts: dict) -> Tuple[str, List[SheetInfo]]:
    how = distance_name(ev, reranked)
    head = f"<h3>The queries with the lowest AP: {H.esc(how)}</h3>"
    indices = _worst(ev, reranked, count)
    kept = ev.rerank_rows.indices.tolist() if ev.rerank_rows is not None else []
    if reranked and not set(indices) <= set(kept):
        return head + ("<p class=note>Not drawn: the evaluation did not keep the re-ranked distances of these "
                       "queries (the whole re-ranked matrix is not kept). <code>tools/visualize.py</code> with "
                       "<code>TEST.RERANK.ENABLED True</code> draws re-ranked lists.</p>"), []
    if not indices:
        return "", []
    sheets = draw_ranked_lists(ev, indices, out / PLOTS / WORST_DIR, reranked=reranked, topk=opts["topk"],
                               num_missed=opts["num_missed"], show_junk=opts["show_junk"],
                               per_sheet=opts["per_sheet"], prefix=f"worst_{safe_name(ev.name)}"
                               + ("_rerank" if reranked else ""))
    note = (f"<p class=note>The {len(indices)} queries with the lowest AP under the {H.esc(how)}, each ranked by it"
            + ("; junk takes no part in re-ranking and is not shown" if reranked else
               "; grey = junk, shown by distance without a rank" if ev.junk is not None else "")
            + f". Green = true match, red = false; under each image its rank and distance. All sheets with a "
            f"sortable query table: <a href=\"{PLOTS}/{WORST_DIR}/{INDEX}\">{PLOTS}/{WORST_DIR}/{INDEX}</a>.</p>")
    return "\n".join([head, note, *(_img(f"{PLOTS}/{WORST_DIR}/{s.file}", s.title) for s in sheets)]), sheets


def _ranked_lists_section(cfg, out: Path) -> str:
    """tools/visualize.py's lists live at a fixed path; the page says how to draw them rather than being patched.
    Of a training run they go into the evaluation folder of its final checkpoint (eval/model_final/)."""
    training = holds_training_run(out)
    final = out / FINAL
    weights = str(final) if training else cfg.MODEL.WEIGHTS  # a training report is written after model_final.pt
    folder = f"{EVAL_DIR}/{evaluation_name(weights, [])}/{RANKED_LISTS_DIR}" if training else RANKED_LISTS_DIR
    there = (out / folder / INDEX).is_file()  # linked only when it exists: no page here links a missing file
    return ("<h2>Ranked lists</h2><p>Ranked lists of chosen queries (by index or file name, random samples, "
            f"re-ranked distances): "
            + (f"<a href=\"{folder}/{INDEX}\">{folder}/{INDEX}</a> (present when this page was written; a later run "
               f"of the command below replaces them)." if there else
               f"not drawn yet; the command below writes them to <code>{folder}/{INDEX}</code> (listed in "
               f"{EVAL_DIR}/{INDEX} for a training run).")
            + f"</p><p class=note><code>python tools/visualize.py --config {H.esc(str(out / CONFIG))}"
            + (f" MODEL.WEIGHTS {H.esc(weights)}" if weights else "") + "</code> writes them there.</p>")


def _evaluations_section(out: Path) -> str:
    return evaluations_section(out) if holds_training_run(out) else ""


def _files_section(out: Path) -> str:
    files = [f for f in (METRICS, CONFIG, LOG, TRAIN_LOG, FINAL, BEST, LAST) if (out / f).is_file()]
    return ("<h2>Files</h2><p>" + " &middot; ".join(f'<a href="{f}">{f}</a>' for f in files) + "</p>") if files else ""


def _config_section(cfg) -> str:
    return f"<h2>Config</h2><details><summary>resolved config (YAML)</summary><pre>{H.esc(cfg.dump())}</pre></details>"


def write_report(cfg, evals: Dict[str, TestSetResult], output_dir: Optional[str | Path] = None,
                 metrics: Optional[dict] = None) -> Path:
    """Write the plots and ``report.html`` into ``output_dir`` (default ``cfg.OUTPUT_DIR``); returns the page.

    ``evals`` is what :func:`reid.evaluation.testsets.evaluate_test_sets` returns (with ``keep_rows=report_rows(cfg)``
    for re-ranked worst-query lists); ``metrics`` (optional) the dict written to metrics.json (its
    ``train_time_s`` is shown). Works without a training log and without re-ranking.
    """
    opts = vis_options(cfg)
    out = Path(output_dir or cfg.OUTPUT_DIR)
    (out / PLOTS).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections = [_header(cfg, evals, out, metrics), _metrics_section(evals, out), _curves_section(evals, out)]
    sheets: List[SheetInfo] = []
    for ev in evals.values():
        html, drawn = _test_set_section(ev, out, opts)
        sections.append(html)
        sheets += drawn
    if sheets:
        write_index(sheets, out / PLOTS / WORST_DIR, title="Worst-AP queries", back_link=f"../../{REPORT}",
                    manifest=WORST_MANIFEST)
    sections += [_ranked_lists_section(cfg, out), _evaluations_section(out), _files_section(out),
                 _config_section(cfg)]
    path = out / REPORT
    path.write_text(H.page(_title(out), "\n".join(s for s in sections if s)), encoding="utf-8")
    logger.info("Report written to %s (%.1fs)", path, time.perf_counter() - t0)
    return path


def maybe_write_report(cfg, evals: Optional[Dict[str, TestSetResult]], output_dir: Optional[str | Path] = None,
                       metrics: Optional[dict] = None) -> Optional[Path]:
    """Called by the trainer and the tester: the report when ``VIS.REPORT``.

    A user error (``ReIDError``) propagates. Any other failure while drawing is logged with its traceback and
    does not lose the finished run (metrics.json and the checkpoints are already written).
    """
    if not evals or not vis_options(cfg)["report"]:
        return None
    try:
        return write_report(cfg, evals, output_dir, metrics)
    except ReIDError:
        raise
    except Exception:  # noqa: BLE001 - drawing must not lose a finished run; the traceback goes to the log
        logger.exception("report.html was NOT written: drawing it failed (traceback below). metrics.json and the "
                         "checkpoints are complete; set VIS.REPORT False to skip the report.")
        return None
