"""The page of ``reid-train --all-splits``: the metrics averaged over every split, their spread, and a link to
each split's own run (its report, metrics and checkpoints)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

from ..utils.outputs import METRICS, REPORT
from . import html as H

# (metrics.json key, column title) of the table, in percent.
SCORE_COLUMNS = (("rank1", "rank-1"), ("rank5", "rank-5"), ("rank10", "rank-10"), ("mAP", "mAP"), ("mINP", "mINP"))


def split_rows(datasets: Mapping[str, Mapping[str, Any]]) -> List[Tuple[str, List[str]]]:
    """(test set, cells) per averaged entry (and its re-ranked mean): each score as "mean ± std" in percent,
    then the number of splits."""
    rows = []
    for name, entry in datasets.items():
        splits = entry.get("splits", {})
        variants = [(name, entry, splits.get("std", {}))]
        if isinstance(entry.get("rerank"), Mapping):
            variants.append((f"{name} +rerank", entry["rerank"], {}))
        for label, values, std in variants:
            cells = []
            for key, _ in SCORE_COLUMNS:
                value = values.get(key)
                text = "n/a" if value is None else f"{100 * value:.2f}"
                if key in std and value is not None:
                    text += f" ± {100 * std[key]:.2f}"
                cells.append(text)
            rows.append((label, cells + [str(splits.get("count", 1))]))
    return rows


def format_split_table(datasets: Mapping[str, Mapping[str, Any]]) -> str:
    """The averaged results as a text table for the log."""
    header = ["test set"] + [title for _, title in SCORE_COLUMNS] + ["splits"]
    rows = [[label, *cells] for label, cells in split_rows(datasets)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n(percent, mean ± standard deviation over the splits; every split in metrics.json)"


def write_splits_report(out: Path, metrics: Mapping[str, Any], runs: Dict[int, Path]) -> Path:
    """``out/report.html``: the averaged table and one line per split run with links to its files."""
    heads = [("test set", "l")] + [(f"{title} %", "") for _, title in SCORE_COLUMNS] + [("splits", "")]
    rows = [([H.cell(H.esc(label), label, "l")] + [H.cell(H.esc(c), c.split(" ")[0]) for c in cells], "")
            for label, cells in split_rows(metrics["datasets"])]
    links = []
    for split, folder in runs.items():
        rel = folder.relative_to(out) if folder.is_relative_to(out) else folder
        files = [f'<a href="{H.esc(f"{rel}/{f}")}">{f}</a>' for f in (REPORT, METRICS) if (folder / f).is_file()]
        links.append(f"<li>split {split}: {H.esc(str(rel))} ({' &middot; '.join(files)})</li>")
    body = (f"<h1>{H.esc(f'reid report: {out.resolve().name}, every split')}</h1>"
            f"<p class=meta>reid-train --all-splits: one training run per distinct training set of the protocol, "
            f"each evaluated on its splits; the metrics below are means over all of them.</p>"
            f"<h2>Metrics</h2>{H.table(heads, rows)}<p class=note>Percent, mean ± standard deviation over the "
            f"splits; every split's own numbers in <a href=\"{METRICS}\">{METRICS}</a>.</p>"
            f"<h2>Runs</h2><ul>{''.join(links)}</ul>")
    path = out / REPORT
    path.write_text(H.page(f"reid report: {out.resolve().name}", body), encoding="utf-8")
    return path
