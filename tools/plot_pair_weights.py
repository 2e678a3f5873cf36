#!/usr/bin/env python
"""Draw the loss library's figures: GPW pair weights vs similarity for every pair loss (seed 003, Fig. 1, plus
Multi-Similarity and Circle) and the Circle loss decision boundary beside the straight s_n - s_p one.

Writes OUTPUT/pair_weights.png and OUTPUT/circle_decision_boundary.png. The weights are w = |dL/ds| read by
autograd through each loss (reid.analysis.pair_weights) on a synthetic P x K batch; see reid/analysis/plots.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from reid.utils.errors import ReIDError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder for the PNGs (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic batch (default 0)")
    args = parser.parse_args(argv)
    try:
        from reid.analysis.plots import write_figures

        for path in write_figures(args.output, seed=args.seed):
            print(path)
    except ReIDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
