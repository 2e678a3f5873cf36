"""The results table: one row per ranking result, the same columns in the log, report.html and the ranked-list
index, so a number reads the same wherever it is printed."""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .chance import ChanceLevel
from .results import RankResult
from .verification import VerificationResult, far_key

TABLE_FAR = 1e-3  # the FAR of the table's TAR column
COLUMNS = ("rank-1", "rank-5", "rank-10", "mAP", "mINP", "valid q", "gallery", "chance r-1", "chance mAP", "AUC",
           f"TAR@{far_key(TABLE_FAR)}")
NOTE = ("percent; rank-k = CMC, mAP / mINP over valid queries (a true match left after the protocol's removals); "
        "chance = the expected rank-1 / mAP of a uniformly random ranking of each query's valid gallery; AUC and TAR "
        f"at a false-accept rate of {far_key(TABLE_FAR)} over all valid query-gallery pairs, plain distances")


class ResultRow(NamedTuple):
    """A labelled result (e.g. "Market1501 +rerank"), the chance level of its split and the verification metrics
    (of the plain distances: only on the plain row)."""

    label: str
    result: RankResult
    chance: Optional[ChanceLevel] = None
    verification: Optional[VerificationResult] = None


def _percent(value: Optional[float]) -> Tuple[str, str]:
    return ("", "n/a") if value is None else (repr(100 * value), f"{100 * value:.2f}")


def row_cells(row: ResultRow) -> List[Tuple[str, str]]:
    """(sort value, text) per column of :data:`COLUMNS`; sort values are plain numbers ("" when missing)."""
    res = row.result
    cmc = [float(res.cmc[k - 1]) if k <= len(res.cmc) else None for k in (1, 5, 10)]
    cells = [_percent(v) for v in (*cmc, res.mAP, res.mINP)]
    cells += [(str(res.num_valid), f"{res.num_valid}/{res.num_query}"), (str(res.num_gallery), str(res.num_gallery))]
    cells += [_percent(row.chance.rank1 if row.chance else None), _percent(row.chance.mAP if row.chance else None)]
    ver = row.verification
    tar = ver.tar_at_far.get(far_key(TABLE_FAR)) if ver is not None else None
    cells += [_percent(_number(ver.auc) if ver else None), _percent(_number(tar))]
    return cells


def _number(value: Optional[float]) -> Optional[float]:
    return None if value is None or math.isnan(value) else value


def format_rows(rows: Sequence[ResultRow], first: str = "dataset") -> str:
    """The rows as a fixed-width text table for logs, with the note on what the numbers mean."""
    texts = [[row.label] + [text for _, text in row_cells(row)] for row in rows]
    return _text_table([first, *COLUMNS], texts, NOTE)


def _text_table(header: List[str], texts: List[List[str]], note: str) -> str:
    widths = [max(len(r[i]) for r in [header, *texts]) for i in range(len(header))]

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(header), "-" * len(line(header))] + [line(r) for r in texts]
    return "\n".join(out) + f"\n({note})"


# -- the retrieval table of metric learning test sets (reid.evaluation.retrieval) ---------------------------------
RETRIEVAL_NOTE = ("percent; R@K = Recall@K, a query with a true match among its K nearest; MAP@R and R-precision "
                  "(RP) over the first R items, R = the query's true matches (Musgrave et al. 2020); NMI of k-means "
                  "clusters (TEST.NMI); over valid queries (another image of the class in the gallery)")


class RetrievalRow(NamedTuple):
    """A labelled retrieval result: ``evaluate_retrieval``'s dict (``recall@K``, ``map@r``, ``r_precision``,
    ``nmi`` when computed, the counts)."""

    label: str
    metrics: Dict[str, float]


def retrieval_columns(rows: Sequence[RetrievalRow]) -> List[Tuple[str, str]]:
    """(metric key, column title) of the retrieval table: every K of any row, MAP@R, RP, NMI when a row has it,
    then the valid queries and the gallery size (keys ``valid q`` / ``gallery``)."""
    ks = sorted({int(k[len("recall@"):]) for row in rows for k in row.metrics if k.startswith("recall@")})
    columns = [(f"recall@{k}", f"R@{k}") for k in ks] + [("map@r", "MAP@R"), ("r_precision", "RP")]
    if any("nmi" in row.metrics for row in rows):
        columns.append(("nmi", "NMI"))
    return columns + [("valid q", "valid q"), ("gallery", "gallery")]


def retrieval_cells(row: RetrievalRow, columns: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """(sort value, text) per column of :func:`retrieval_columns` ("n/a" where the row lacks a metric)."""
    m = row.metrics
    counts = {"valid q": (str(m["num_valid_query"]), f"{m['num_valid_query']}/{m['num_query']}"),
              "gallery": (str(m["num_gallery"]), str(m["num_gallery"]))}
    return [counts[key] if key in counts else _percent(m.get(key)) for key, _ in columns]


def format_retrieval_rows(rows: Sequence[RetrievalRow], first: str = "retrieval") -> str:
    """The retrieval rows as a fixed-width text table, with its note."""
    columns = retrieval_columns(rows)
    texts = [[row.label] + [text for _, text in retrieval_cells(row, columns)] for row in rows]
    return _text_table([first, *(title for _, title in columns)], texts, RETRIEVAL_NOTE)
