"""``reid-visualize`` / ``tools/visualize.py``: rank the chosen queries with a model and draw their ranked lists."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..checkpoint import load_for_inference
from ..config import dump_cfg
from ..data import build_test_set
from ..evaluation.testsets import TestSetResult, evaluate_test_set, format_results, metrics_dict, ranked_query_paths
from ..modeling import build_model
from ..utils.env import resolve_device, seed_all
from ..utils.errors import ConfigError
from ..utils.logger import setup_logger
from ..utils.outputs import CONFIG, REPORT
from ..visualization import html as H
from ..visualization.evaluations import RANKED_LISTS_DIR, evaluation_dir, run_of, write_evaluations_index
from ..visualization.ranked_list import select_queries
from ..visualization.report import vis_options
from ..visualization.sheets import SheetInfo, distance_name, draw_ranked_lists, write_index
from .parser import ConfigArgumentParser, add_name_option, config_parser, eval_cfg_from_args, run_tool

logger = logging.getLogger("reid")

DEFAULT_WORST = 12

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


def _check_positive(name: str, value: Optional[int], lo: int) -> None:
    if value is not None and value < lo:
        raise ConfigError(f"{name} must be at least {lo}, got {value}.")


def load_model(cfg, device: torch.device, state: Optional[Dict[str, Any]] = None):
    """MODEL.WEIGHTS loaded for inference (``state``: its content when already read), or the initialised model
    when it is empty; returns (model, cfg)."""
    if cfg.MODEL.WEIGHTS:
        model, cfg = load_for_inference(cfg.MODEL.WEIGHTS, config=cfg, device=device, name="MODEL.WEIGHTS file",
                                        state=state)
        logger.info("Loaded weights from %s", cfg.MODEL.WEIGHTS)
        return model, cfg
    logger.warning("No MODEL.WEIGHTS given: drawing the ranked lists of the initialised (untrained) model")
    return build_model(cfg).to(device).eval(), cfg


def run_visualize(cfg, args: argparse.Namespace, state: Optional[Dict[str, Any]] = None) -> Path:
    """Evaluate like tools/test.py, select the queries and write the sheets + index.html; returns the index path.
    ``state``: the content of MODEL.WEIGHTS when already read (:func:`eval_cfg_from_args`)."""
    setup_logger()
    opts = vis_options(cfg)
    for name, value, lo in (("--topk", args.topk, 1), ("--missed", args.missed, 0), ("--per-sheet", args.per_sheet, 1),
                            ("--worst", args.worst, 0), ("--random", args.random, 0)):
        _check_positive(name, value, lo)
    topk = args.topk if args.topk is not None else opts["topk"]
    num_missed = args.missed if args.missed is not None else opts["num_missed"]
    per_sheet = args.per_sheet if args.per_sheet is not None else opts["per_sheet"]
    reranked = bool(cfg.TEST.RERANK.ENABLED)
    show_junk = opts["show_junk"] and not args.hide_junk and not reranked
    worst = args.worst if args.worst is not None else (0 if args.query or args.random else DEFAULT_WORST)
    tests = list(cfg.DATASETS.TESTS)
    if args.dataset and args.dataset not in tests:
        raise ConfigError(f"--dataset {args.dataset!r} is not a test set of this config; DATASETS.TESTS is {tests}. "
                          f"Pick one of them (or add DATASETS.TESTS \"['{args.dataset}']\").")
    datasets = [args.dataset] if args.dataset else tests
    if args.query and len(datasets) > 1:
        raise ConfigError(f"--query names queries of one test set, but DATASETS.TESTS has {len(datasets)}: {tests}. "
                          f"Add --dataset NAME.")
    if show_junk and not cfg.DATASETS.KEEP_JUNK:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.DATASETS.KEEP_JUNK = True  # load junk to draw it greyed; it takes no part in ranking either way
        cfg.freeze()
    folder = evaluation_dir(cfg, args.name, args.opts) if not args.output else None
    out = Path(args.output) if args.output else folder / RANKED_LISTS_DIR
    seed_all(cfg.SEED, cfg.DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    # The test sets' folders, then the weights file, before anything is embedded (no ImageNet download for a
    # missing dataset); bad query indices / names fail here too.
    test_sets = {name: build_test_set(cfg, name) for name in datasets}
    for name, test_set in test_sets.items():
        select_queries(ranked_query_paths(test_set), None, args.query, dataset=name)
    model, cfg = load_model(cfg, device, state)
    run = run_of(folder) if folder is not None else None
    if run is not None and not (folder / CONFIG).is_file():  # what was evaluated, unless tools/test.py said it
        dump_cfg(cfg, folder / CONFIG)

    def choose(ev: TestSetResult) -> List[int]:
        result = ev.rerank if reranked else ev.result
        return select_queries(ev.query.paths, result.ap, args.query, worst=worst, random=args.random, seed=args.seed,
                              dataset=ev.name)

    evals: Dict[str, TestSetResult] = {}
    sheets: List[SheetInfo] = []
    for name, test_set in test_sets.items():
        ev = evals[name] = evaluate_test_set(cfg, model, device, test_set, keep_rows=choose if reranked else None)
        indices = choose(ev)
        logger.info("%s: drawing %d ranked lists by %s (top-%d, %d lowest-ranked true matches, junk %s)", name,
                    len(indices), distance_name(ev, reranked), topk, num_missed,
                    "greyed" if show_junk and ev.junk is not None else "not shown")
        sheets += draw_ranked_lists(ev, indices, out, reranked=reranked, topk=topk, num_missed=num_missed,
                                    show_junk=show_junk, per_sheet=per_sheet)
    logger.info("Results (the same protocol and gallery as tools/test.py):\n%s", format_results(evals))
    weights = cfg.MODEL.WEIGHTS or "none (the initialised model)"
    notes = [f"<p class=note>Model weights: <code>{H.esc(weights)}</code>. Lists by the "
             f"{H.esc(distance_name(next(iter(evals.values())), reranked))}"
             + ("; junk takes no part in re-ranking and is not shown" if reranked else "") + ".</p>",
             H.results_table(evals)]
    reports = [(f"../{REPORT}", folder / REPORT)] if folder is not None else []
    if run is not None:
        reports.append((f"../../../{REPORT}", run / REPORT))
    back = next((link for link, page in reports if page.is_file()), None)
    title = (folder if folder is not None else out).resolve()
    index = write_index(sheets, out, title=f"Ranked lists: {title.name}", notes=notes,
                        back_link=back, data={"metrics": metrics_dict(evals)})
    logger.info("Wrote %d sheet(s) of %d queries to %s; open %s in a browser", len(sheets),
                sum(len(s.queries) for s in sheets), out, index)
    if run is not None:
        write_evaluations_index(run)
    return index


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    cfg, state = eval_cfg_from_args(args)
    run_visualize(cfg, args, state)
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
