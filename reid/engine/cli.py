"""What every tool shares: ``--config FILE`` then ``KEY VALUE`` overrides, and errors shown as messages."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from ..config import load_cfg

OVERRIDES_HELP = (
    "config overrides as KEY VALUE pairs, e.g. SOLVER.MAX_EPOCHS 60 MODEL.DEVICE cuda; every key is listed "
    "with its meaning in reid/config/defaults.py"
)


def config_parser(description: str, epilog: str = "") -> argparse.ArgumentParser:
    """An argument parser with the shared ``--config`` and trailing ``KEY VALUE`` overrides."""
    parser = argparse.ArgumentParser(description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--config-file", dest="config", metavar="FILE", default="",
                        help="YAML config (may name a _BASE_ file it extends), e.g. configs/Synthetic/resnet50_circle.yml")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help=OVERRIDES_HELP)
    return parser


def cfg_from_args(args: argparse.Namespace):
    """Defaults <- ``--config`` file <- overrides, validated and frozen."""
    return load_cfg(args.config or None, args.opts)


def run_tool(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> None:
    """Run a tool's ``main``; a ReIDError (something the user can fix) prints its message and exits 1."""
    from ..utils.errors import ReIDError

    try:
        code = main(argv)
    except ReIDError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
