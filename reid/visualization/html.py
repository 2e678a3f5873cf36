"""Small self-contained HTML pieces: escaping, a sortable table (inline JS, no CDN) and the page shell.

Pages open offline in any browser: no external script, style sheet or font; images are relative links.
"""
from __future__ import annotations

import html
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..evaluation.table import COLUMNS, NOTE, RETRIEVAL_NOTE, retrieval_cells, retrieval_columns, row_cells
from ..evaluation.testsets import TestSetResult, result_rows, retrieval_rows

STYLE = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:1280px;
 padding:0 16px;color:#222;line-height:1.4}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#555;font-size:13px} .note{color:#555;font-size:13px;margin:4px 0 10px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right} th{background:#f3f3f3}
td.l,th.l{text-align:left}
table.sortable th{cursor:pointer;user-select:none} table.sortable th:hover{background:#e6e6e6}
th.asc::after{content:" \\25B2";font-size:10px} th.desc::after{content:" \\25BC";font-size:10px}
tr.bad td{background:#fff1f0}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs figure{margin:0} figcaption{font-size:12px;color:#555}
pre{background:#f7f7f7;padding:10px;font-size:12px;overflow:auto;max-height:480px}
code{background:#f3f3f3;padding:1px 4px}
a{color:#1f5fa8}
"""

# Click a header to sort by it (again to reverse); cells sort by their data-v attribute (numbers when every
# value of the column is one; empty values last), otherwise by their text.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(table){
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function(th, col){
    th.title = "click to sort";
    th.addEventListener("click", function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains("asc");
      Array.prototype.forEach.call(heads, function(h){ h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      function key(r){ var c = r.cells[col]; var v = c.getAttribute("data-v"); return v === null ? c.textContent : v; }
      var numeric = rows.every(function(r){ var k = key(r); return k === "" || !isNaN(parseFloat(k)); });
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (x === "" && y !== "") return 1; if (y === "" && x !== "") return -1;
        var c = numeric ? parseFloat(x) - parseFloat(y) : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def num(value: Optional[float], fmt: str = "{:.3f}") -> Tuple[str, str]:
    """(sort value, shown text) of a number; NaN / None show "n/a" and sort last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", "n/a"
    return repr(float(value)), fmt.format(value)


Cell = Tuple[Optional[str], str, str]  # (sort value: None = sort by text, "" = last; inner HTML; css class)


def cell(html_text: str, sort: Optional[str] = None, cls: str = "") -> Cell:
    return (sort, html_text, cls)


def num_cell(value: Optional[float], fmt: str = "{:.3f}", cls: str = "") -> Cell:
    sort, text = num(value, fmt)
    return (sort, text, cls)


def table(headers: Sequence[Tuple[str, str]], rows: Iterable[Tuple[Sequence[Cell], str]], sortable: bool = True,
          table_id: str = "") -> str:
    """``headers``: (title, css class); ``rows``: (cells, row css class). Cells with a sort value carry data-v."""
    out: List[str] = [f'<table{" class=sortable" if sortable else ""}{f" id={esc(table_id)}" if table_id else ""}>']
    out.append("<thead><tr>" + "".join(f'<th class="{c}">{esc(h)}</th>' for h, c in headers) + "</tr></thead><tbody>")
    for cells, row_cls in rows:
        tds = []
        for sort, inner, cls in cells:
            attrs = f' class="{cls}"' if cls else ""
            if sort is not None:
                attrs += f' data-v="{esc(sort)}"'
            tds.append(f"<td{attrs}>{inner}</td>")
        out.append(f'<tr{f" class={row_cls}" if row_cls else ""}>' + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def results_table(evals: Dict[str, TestSetResult]) -> str:
    """The results table (:mod:`reid.evaluation.table`, the log's columns) as a sortable HTML table and its note,
    then the retrieval table of the metric learning sets (when there are any)."""
    rows = [_labelled(r.label, row_cells(r)) for r in result_rows(evals)]
    out = table([("test set", "l"), *((c, "") for c in COLUMNS)], rows) + f"<p class=note>{esc(NOTE)}.</p>"
    retrieval = retrieval_rows(evals)
    if not retrieval:
        return out
    columns = retrieval_columns(retrieval)
    rows = [_labelled(r.label, retrieval_cells(r, columns)) for r in retrieval]
    return (out + table([("retrieval set", "l"), *((title, "") for _, title in columns)], rows)
            + f"<p class=note>{esc(RETRIEVAL_NOTE)}.</p>")


def _labelled(label: str, cells: Sequence[Tuple[str, str]]) -> Tuple[List[Cell], str]:
    """A table row: the label, then (sort value, text) cells."""
    return [cell(esc(label), label, "l")] + [cell(esc(text), sort) for sort, text in cells], ""


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
            f"<meta name=viewport content=\"width=device-width, initial-scale=1\">\n<title>{esc(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<script>{SORT_JS}</script>\n</body>\n</html>\n")
