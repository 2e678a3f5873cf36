#!/usr/bin/env python
"""Rank the images of a feature file (tools/extract.py) for query images; the same as `reid-search` (see --help; the code is reid/cli/search.py)."""
from reid.cli.search import entry

if __name__ == "__main__":
    entry()
