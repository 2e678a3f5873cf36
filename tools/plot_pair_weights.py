#!/usr/bin/env python
"""Draw the loss library's figures (pair weights, Circle decision boundary); the same as `reid-plot-pair-weights` (see --help; the code is reid/cli/plot_pair_weights.py)."""
from reid.cli.plot_pair_weights import entry

if __name__ == "__main__":
    entry()
