"""Seeing the results: ranked lists (PNG sheets + index.html), CMC / training / distance plots and report.html.

Everything draws from the evaluation's results (``TestSetResult``: ranks, AP, INP, the distance histogram, kept
re-ranked rows) or from plain arrays, so nothing of the protocol is computed twice and no distance is computed
here; ``tools/visualize.py`` and the trainer / tester evaluate and hand the results over. matplotlib is imported
when drawing.
"""
from ..evaluation.histogram import DistanceHistogram
from .curves import Curve, TrainLog, plot_cmc, plot_distance_histogram, plot_training_curves, read_train_log
from .ranked_list import RankedQuery, SheetLayout, Tile, TileBox, draw_sheet, rank_queries, select_queries
from .report import maybe_write_report, report_rows, write_report
from .sheets import SheetInfo, draw_ranked_lists, write_index, write_sheets

__all__ = [
    "Curve", "DistanceHistogram", "TrainLog", "plot_cmc", "plot_distance_histogram", "plot_training_curves",
    "read_train_log",
    "RankedQuery", "SheetLayout", "Tile", "TileBox", "draw_sheet", "rank_queries", "select_queries",
    "maybe_write_report", "report_rows", "write_report",
    "SheetInfo", "draw_ranked_lists", "write_index", "write_sheets",
]
