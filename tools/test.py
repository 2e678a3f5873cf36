#!/usr/bin/env python
"""Evaluate a trained model on the configured query/gallery sets; the same as `reid-test` (see --help; the code is reid/cli/test.py)."""
from reid.cli.test import entry

if __name__ == "__main__":
    entry()
