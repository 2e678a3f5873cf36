#!/usr/bin/env python
"""Crop re-ID images from MOT-challenge tracking ground truth; the same as `reid-mot2reid` (see --help; the code is reid/cli/mot2reid.py)."""
from reid.cli.mot2reid import entry

if __name__ == "__main__":
    entry()
