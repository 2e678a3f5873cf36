"""The pages of a training run's evaluations (``OUTPUT_DIR/eval/<name>/``): ``eval/index.html`` and the training
report's section.

Where an evaluation writes is decided by the engine (``reid.engine.run_folder.evaluation_dir``); this module only
draws what is there. ``eval/index.html`` lists the evaluations made so far (rewritten after each one, and written at
the end of training, so the training report's link to it always works); the training report lists those that
existed when it was written and links that index. Standalone checkpoints' evaluations (``OUTPUT_DIR/eval/<name>/``
outside a training run) get the same index, without a training report to link back to.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import List

from ..utils.outputs import EVAL_DIR, METRICS, REPORT
from . import html as H
from .sheets import INDEX, MANIFEST

RANKED_LISTS_DIR = "ranked_lists"  # tools/visualize.py's output folder inside an evaluation's or a test's folder


def _evaluations(run: Path) -> List[Path]:
    root = run / EVAL_DIR
    return sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []


def _read_json(path: Path) -> dict:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _first_set(folder: Path) -> dict:
    """The metrics of an evaluation: its metrics.json (reid-test), else those its ranked lists record
    (reid-visualize evaluates exactly as reid-test and keeps them in ranked_lists/ranked_lists.json)."""
    metrics = _read_json(folder / METRICS)
    if not metrics:
        metrics = _read_json(folder / RANKED_LISTS_DIR / MANIFEST).get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def evaluations_table(run: Path, prefix: str) -> str:
    """The run's evaluations as a table (links relative to the page: ``prefix`` + name); "" without any."""
    rows = []
    for folder in _evaluations(run):
        m = _first_set(folder)
        rerank = m.get("rerank") if isinstance(m.get("rerank"), dict) else {}
        links = [f'<a href="{H.esc(prefix + folder.name + "/" + f)}">{label}</a>'
                 for f, label in ((REPORT, "report"), (METRICS, "metrics"), (f"{RANKED_LISTS_DIR}/{INDEX}",
                                                                             "ranked lists"))
                 if (folder / f).is_file()]
        when = _dt.datetime.fromtimestamp(folder.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        pct = lambda v: v * 100 if isinstance(v, (int, float)) else None  # noqa: E731
        rows.append(([H.cell(H.esc(folder.name), folder.name, "l"), H.cell(H.esc(m.get("dataset", "")), None, "l"),
                      H.num_cell(pct(m.get("rank1")), "{:.2f}"), H.num_cell(pct(m.get("mAP")), "{:.2f}"),
                      H.num_cell(pct(rerank.get("rank1")), "{:.2f}"), H.num_cell(pct(rerank.get("mAP")), "{:.2f}"),
                      H.cell(" &middot; ".join(links) or "-", None, "l"), H.cell(when, when, "l")], ""))
    if not rows:
        return ""
    return H.table([("evaluation", "l"), ("first test set", "l"), ("rank-1", ""), ("mAP", ""),
                    ("re-ranked rank-1", ""), ("re-ranked mAP", ""), ("files", "l"), ("written", "l")], rows)


def evaluations_section(run: Path) -> str:
    """The training report's section: the evaluations of the run that exist now, and where later ones go (the
    index is linked when it exists: the engine writes it before the report)."""
    table = evaluations_table(run, f"{EVAL_DIR}/")
    index = f"{EVAL_DIR}/{INDEX}"
    listed = f"<a href=\"{index}\">{index}</a>" if (run / index).is_file() else f"<code>{index}</code>"
    return ("<h2>Evaluations of this run</h2>"
            + (table if table else "<p>None yet.</p>")
            + f"<p class=note>tools/test.py and tools/visualize.py write evaluations of this run's checkpoints into "
              f"<code>{EVAL_DIR}/&lt;name&gt;/</code> (the name from <code>--name</code>, or from the weights file "
              f"and the overrides), never over this run's files. "
              f"{listed} lists all of them, also those made after this page was written.</p>")


def write_evaluations_index(run: Path) -> Path:
    """Rewrite ``run/eval/index.html`` (after an evaluation was added, and at the end of training); returns its
    path. It links the training report when ``run`` has one."""
    table = evaluations_table(run, "")
    back = f"<a href=\"../{REPORT}\">the training report</a> &middot; " if (run / REPORT).is_file() else ""
    body = (f"<h1>Evaluations of {H.esc(run.resolve().name)}</h1><p class=meta>{back}"
            f"written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>"
            + (table or "<p>None yet.</p>")
            + "<p class=note>Percent; the first test set of each evaluation (its report has every set).</p>")
    path = run / EVAL_DIR / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(H.page(f"Evaluations of {run.resolve().name}", body), encoding="utf-8")
    return path
