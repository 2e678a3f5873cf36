#!/usr/bin/env python
"""Embed a folder (or a list) of images with a trained checkpoint into an .npz; the same as `reid-extract` (see --help; the code is reid/cli/extract.py)."""
from reid.cli.extract import entry

if __name__ == "__main__":
    entry()
