#!/usr/bin/env python
"""Draw ranked lists of a re-ID model (query, top-k gallery, missed true matches) as PNG sheets + index.html;
see --help (the logic is reid/visualization/tool.py)."""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.engine.cli import run_tool  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    from reid.visualization.tool import main as visualize

    return visualize(argv)


if __name__ == "__main__":
    run_tool(main)
