"""Seeing the results: ranked lists (PNG sheets + index.html), CMC / training / distance plots and report.html.

Everything draws from arrays (distance rows, pids, camids, paths, per-query AP), so it runs without a model;
``tools/visualize.py`` and the trainer / tester only gather those arrays. matplotlib is imported when drawing.
"""
from .curves import (Curve, DistanceHistogram, TrainLog, distance_histogram, feature_histogram, plot_cmc,
                     plot_distance_histogram, plot_training_curves, read_train_log)
from .ranked_list import (RankedQuery, SheetLayout, Tile, TileBox, average_precision, draw_sheet, rank_queries,
                          select_queries)
from .report import link_ranked_lists, maybe_write_report, write_report
from .sheets import SheetInfo, query_distances, ranked_lists, write_index, write_sheets

__all__ = [
    "Curve", "DistanceHistogram", "TrainLog", "distance_histogram", "feature_histogram", "plot_cmc",
    "plot_distance_histogram", "plot_training_curves", "read_train_log",
    "RankedQuery", "SheetLayout", "Tile", "TileBox", "average_precision", "draw_sheet", "rank_queries",
    "select_queries",
    "link_ranked_lists", "maybe_write_report", "write_report",
    "SheetInfo", "query_distances", "ranked_lists", "write_index", "write_sheets",
]
