#!/usr/bin/env python
"""Draw ranked lists of a re-ID model as PNG sheets + index.html; the same as `reid-visualize` (see --help; the code is reid/cli/visualize.py)."""
from reid.cli.visualize import entry

if __name__ == "__main__":
    entry()
