"""``reid-plot-pair-weights`` / ``tools/plot_pair_weights.py``: the loss library's figures."""
from __future__ import annotations

from typing import Optional, Sequence

from ..analysis.plots import write_figures
from .parser import plain_parser, run_tool

DESCRIPTION = """\
Draw the loss library's figures: the pair weights w = |dL/ds| against the similarity s for every pair loss (the
General Pair Weighting paper's Fig. 1, Wang et al. 2019, plus Multi-Similarity and Circle), and the Circle loss
decision boundary beside the straight s_n - s_p one (Circle loss paper, Sun et al. 2020, Fig. 1).

Writes OUTPUT/pair_weights.png and OUTPUT/circle_decision_boundary.png. The weights are read by autograd through
each loss (reid.analysis.pair_weights) on a synthetic P x K batch of random embeddings."""


def build_parser():
    parser = plain_parser(DESCRIPTION, prog="reid-plot-pair-weights")
    parser.add_argument("--output", required=True, help="folder for the PNGs (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random embeddings of the batch (default 0)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for path in write_figures(args.output, seed=args.seed):
        print(path)
    return 0


def entry() -> None:
    run_tool(main)


if __name__ == "__main__":
    entry()
