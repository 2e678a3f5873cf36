"""``reid-visualize``'s work: a checkpoint evaluated by the engine evaluator (the same test sets, protocol and
numbers as ``reid-test``), then the ranked lists of chosen queries drawn as PNG sheets with an index.html."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..config import dump_cfg
from ..evaluation.testsets import TestSetResult, format_results, metrics_dict, ranked_query_paths
from ..utils.env import resolve_device, seed_all
from ..utils.errors import ConfigError
from ..utils.logger import setup_logger
from ..utils.outputs import CONFIG, REPORT
from ..visualization import html as H
from ..visualization.evaluations import RANKED_LISTS_DIR
from ..visualization.ranked_list import select_queries
from ..visualization.report import vis_options
from ..visualization.sheets import SheetInfo, distance_name, draw_ranked_lists, write_index
from .evaluator import Evaluator, list_in_run, load_model
from .run_folder import evaluation_dir, run_of

logger = logging.getLogger("reid")

DEFAULT_WORST = 12  # the worst-AP queries drawn of each test set when no query is chosen


@dataclass
class ListRequest:
    """Which queries to draw and how (``reid-visualize``'s options); a None takes its default: ``worst``
    DEFAULT_WORST when no query is chosen, ``topk`` / ``missed`` / ``per_sheet`` VIS.TOPK / VIS.NUM_MISSED /
    VIS.QUERIES_PER_SHEET. ``query``: indices or file names of one test set; ``dataset``: the test set to draw
    (default all of DATASETS.TESTS); ``output``: the folder (default the evaluation's ranked_lists/)."""

    query: List[str] = field(default_factory=list)
    worst: Optional[int] = None
    random: int = 0
    seed: int = 0
    dataset: str = ""
    topk: Optional[int] = None
    missed: Optional[int] = None
    per_sheet: Optional[int] = None
    hide_junk: bool = False
    output: str = ""

    def check(self, tests: Sequence[str]) -> List[str]:
        """Raise a ConfigError for an option out of range or a test set not in ``tests``; returns the test sets
        to draw."""
        for flag, value, lo in (("--topk", self.topk, 1), ("--missed", self.missed, 0),
                                ("--per-sheet", self.per_sheet, 1), ("--worst", self.worst, 0),
                                ("--random", self.random, 0)):
            if value is not None and value < lo:
                raise ConfigError(f"{flag} must be at least {lo}, got {value}.")
        tests = list(tests)
        if self.dataset and self.dataset not in tests:
            raise ConfigError(f"--dataset {self.dataset!r} is not a test set of this config; DATASETS.TESTS is "
                              f"{tests}. Pick one of them (or add DATASETS.TESTS \"['{self.dataset}']\").")
        datasets = [self.dataset] if self.dataset else tests
        if self.query and len(datasets) > 1:
            raise ConfigError(f"--query names queries of one test set, but DATASETS.TESTS has {len(datasets)}: "
                              f"{tests}. Add --dataset NAME.")
        return datasets


def _with_junk(cfg):
    """``cfg`` loading junk (DATASETS.KEEP_JUNK), to draw it greyed; it takes no part in ranking either way."""
    if cfg.DATASETS.KEEP_JUNK:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.KEEP_JUNK = True
    cfg.freeze()
    return cfg


def visualize_checkpoint(cfg, request: ListRequest, name: str = "", opts: Sequence[str] = (),
                         state: Optional[Dict[str, Any]] = None) -> Path:
    """Evaluate MODEL.WEIGHTS (or the initialised model) as ``reid-test`` does, select the queries of ``request``
    and write the sheets + index.html; returns the index path. ``name`` / ``opts`` name the evaluation's folder
    in a training run (:func:`reid.engine.run_folder.evaluation_dir`); ``state``: the content of MODEL.WEIGHTS
    when already read."""
    setup_logger()
    vis = vis_options(cfg)
    datasets = request.check(cfg.DATASETS.TESTS)
    topk = request.topk if request.topk is not None else vis["topk"]
    num_missed = request.missed if request.missed is not None else vis["num_missed"]
    per_sheet = request.per_sheet if request.per_sheet is not None else vis["per_sheet"]
    reranked = bool(cfg.TEST.RERANK.ENABLED)
    show_junk = vis["show_junk"] and not request.hide_junk and not reranked
    worst = request.worst if request.worst is not None else (0 if request.query or request.random else DEFAULT_WORST)
    if show_junk:
        cfg = _with_junk(cfg)
    folder = evaluation_dir(cfg, name, opts) if not request.output else None
    out = Path(request.output) if request.output else folder / RANKED_LISTS_DIR
    seed_all(cfg.SEED, cfg.DETERMINISTIC)
    device = resolve_device(cfg.MODEL.DEVICE)
    # The test sets' folders, then the weights file, before anything is embedded (no ImageNet download for a
    # missing dataset); bad query indices / names fail here too.
    evaluator = Evaluator(cfg, device, datasets)
    for dataset, test_set in evaluator.test_sets.items():
        select_queries(ranked_query_paths(test_set), None, request.query, dataset=dataset)
    model = load_model(cfg, device, state, untrained="drawing the ranked lists of the initialised (untrained) model",
                       untrained_level=logging.WARNING)
    run = run_of(folder) if folder is not None else None
    if run is not None and not (folder / CONFIG).is_file():  # what was evaluated, unless tools/test.py said it
        dump_cfg(cfg, folder / CONFIG)

    def choose(ev: TestSetResult) -> List[int]:
        result = ev.rerank if reranked else ev.result
        return select_queries(ev.query.paths, result.ap, request.query, worst=worst, random=request.random,
                              seed=request.seed, dataset=ev.name)

    evals = evaluator.evaluate(model, keep_rows=choose if reranked else None)
    sheets: List[SheetInfo] = []
    for ev in evals.values():
        indices = choose(ev)
        logger.info("%s: drawing %d ranked lists by %s (top-%d, %d lowest-ranked true matches, junk %s)", ev.name,
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
    if folder is not None:
        list_in_run(folder)  # a training run's eval/index.html, when the folder is in one
    return index
