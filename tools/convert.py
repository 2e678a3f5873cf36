#!/usr/bin/env python
"""Import a torchreid or fast-reid checkpoint, verified against the peer; the same as `reid-convert` (see --help; the code is reid/cli/convert.py)."""
from reid.cli.convert import entry

if __name__ == "__main__":
    entry()
