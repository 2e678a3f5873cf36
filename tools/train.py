#!/usr/bin/env python
"""Train a re-ID model, then evaluate it; the same as `reid-train` (see --help; the code is reid/cli/train.py)."""
from reid.cli.train import entry

if __name__ == "__main__":
    entry()
