"""The results table: one row per ranking result, the same columns in the log, report.html and the ranked-list
index, so a number reads the same wherever it is printed."""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

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
    header = [first, *COLUMNS]
    widths = [max(len(r[i]) for r in [header, *texts]) for i in range(len(header))]

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(header), "-" * len(line(header))] + [line(r) for r in texts]
    return "\n".join(out) + f"\n({NOTE})"
