"""``reid-visualize`` / ``tools/visualize.py``: rank the chosen queries with a model and draw their ranked lists."""
from __future__ import annotations

from dataclasses import fields
from typing import Optional, Sequence

from ..engine.ranked_lists import DEFAULT_WORST, ListRequest, visualize_checkpoint
from ..visualization.evaluations import RANKED_LISTS_DIR
from .parser import ConfigArgumentParser, add_name_option, config_parser, eval_cfg_from_args, run_tool

DESCRIPTION = """\
Draw ranked lists of a re-ID model: for each chosen query, the query image, its top-k gallery images after the
evaluation protocol's removals (same identity + same camera, junk), each framed green (true match) or red (false
match), junk greyed (or hidden), with its rank and distance underneath, the query's AP in the row title, and the
true matches the model ranked lowest. Several queries per PNG sheet, and an index.html listing every sheet and
query with its AP (sortable, opens offline)."""

EPILOG = """\
choosing queries (combine freely; default: the 12 worst-AP queries of each test set):
  --query 3 17 0002_c1s1_000451_03.jpg   query indices (0-based, loader order) or file names
  --worst 20                             the 20 queries with the lowest AP (queries with a true match)
  --random 10 --seed 1                   10 random queries

examples:
  python tools/visualize.py --config configs/Synthetic/resnet50_circle.yml \\
      MODEL.WEIGHTS output/synthetic/resnet50_circle/model_final.pt OUTPUT_DIR output/synthetic/resnet50_circle
  python tools/visualize.py --config configs/Market1501/resnet50_circle.yml MODEL.WEIGHTS m.pt \\
      TEST.RERANK.ENABLED True --worst 30 --random 12 --topk 15
  python tools/visualize.py --config CFG MODEL.WEIGHTS m.pt --dataset Market1501 --query 0 0001_c1s1_001051_00.jpg

Writes OUTPUT_DIR/ranked_lists/ (or --output): <dataset>_001.png, ... , index.html (open it in a browser) and
ranked_lists.json (the metrics and the lists as data). When OUTPUT_DIR holds a training run (or --name is given),
they go into OUTPUT_DIR/eval/<name>/ranked_lists/ instead, as tools/test.py's files go into OUTPUT_DIR/eval/<name>/
(<name>: --name, or the weights file and the overrides), never over the run's files. With MODEL.WEIGHTS and no
--config, the config stored in the checkpoint is used, with the overrides. The model is evaluated exactly as tools/test.py does it
(same gallery and protocol, so the same numbers); junk (pid -1) takes no part in ranking and is drawn greyed by
its distance. With TEST.RERANK.ENABLED True the lists use the k-reciprocal re-ranked distances
(TEST.RERANK.K1/K2/LAMBDA) and show no junk (it has no re-ranked distance). Options may come before or after the
KEY VALUE overrides. Defaults of --topk/--missed/--per-sheet/--hide-junk come from VIS.TOPK, VIS.NUM_MISSED,
VIS.QUERIES_PER_SHEET, VIS.SHOW_JUNK."""


def build_parser() -> ConfigArgumentParser:
    p = config_parser(DESCRIPTION, EPILOG, prog="reid-visualize")
    g = p.add_argument_group("queries")
    g.add_argument("--query", "-q", nargs="+", default=[], metavar="Q",
                   help="query indices (0-based, in the order of the query folder's file list) or file names "
                        "(base name or path); may be followed by KEY VALUE overrides")
    g.add_argument("--worst", type=int, default=None, metavar="N",
                   help=f"the N queries with the lowest AP (default {DEFAULT_WORST} when no query is chosen)")
    g.add_argument("--random", type=int, default=0, metavar="N", help="N queries drawn at random (see --seed)")
    g.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    g.add_argument("--dataset", default="", metavar="NAME",
                   help="test set to draw (one of DATASETS.TESTS; default: all of them; needed with --query when "
                        "there are several)")
    d = p.add_argument_group("drawing")
    d.add_argument("--topk", type=int, default=None, metavar="K", help="gallery images per list (default VIS.TOPK)")
    d.add_argument("--missed", type=int, default=None, metavar="M",
                   help="lowest-ranked true matches shown after the top-k (default VIS.NUM_MISSED)")
    d.add_argument("--per-sheet", type=int, default=None, metavar="N",
                   help="queries per PNG sheet (default VIS.QUERIES_PER_SHEET)")
    d.add_argument("--hide-junk", action="store_true",
                   help="leave junk gallery images (pid -1) out of the lists instead of drawing them greyed")
    d.add_argument("--output", default="", metavar="DIR",
                   help=f"output folder (default OUTPUT_DIR/{RANKED_LISTS_DIR}, or OUTPUT_DIR/eval/<name>/"
                        f"{RANKED_LISTS_DIR} for a training run's folder)")
    add_name_option(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, state = eval_cfg_from_args(args)
    request = ListRequest(**{f.name: getattr(args, f.name) for f in fields(ListRequest)})
    visualize_checkpoint(cfg, request, args.name, args.opts, state)
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
