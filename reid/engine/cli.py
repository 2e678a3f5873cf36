"""What every tool shares: ``--config FILE`` then ``KEY VALUE`` overrides, and errors shown as messages."""
from __future__ import annotations

import argparse
import copy
import os
import sys
import traceback
from typing import Callable, List, Optional, Sequence

from ..config import load_cfg
from ..utils.errors import ReIDError

OVERRIDES_HELP = (
    "config overrides as KEY VALUE pairs, e.g. SOLVER.MAX_EPOCHS 60 MODEL.DEVICE cuda; every key is listed "
    "with its meaning in reid/config/defaults.py"
)


class ConfigArgumentParser(argparse.ArgumentParser):
    """Options first, then ``KEY VALUE`` overrides; a tool option written among the overrides where a KEY would
    stand (``tools/train.py OUTPUT_DIR out --resume``) is still taken as the option, not as a key."""

    def parse_args(self, args=None, namespace=None):  # noqa: D102 - argparse's
        argv = list(sys.argv[1:] if args is None else args)
        parsed = super().parse_args(argv, copy.copy(namespace))
        opts = list(parsed.opts)
        flags = {s: a for a in self._actions for s in a.option_strings}
        kept: List[str] = []
        moved: List[str] = []
        i = 0
        while i < len(opts):
            action = flags.get(opts[i])
            if action is not None and len(kept) % 2 == 0 and action.nargs in (0, None):
                width = 1 if action.nargs == 0 else 2
                moved += opts[i:i + width]
                i += width
            else:
                kept.append(opts[i])
                i += 1
        if not moved:
            return parsed
        return super().parse_args(argv[:len(argv) - len(opts)] + moved + kept, namespace)


def config_parser(description: str, epilog: str = "") -> argparse.ArgumentParser:
    """An argument parser with the shared ``--config`` and trailing ``KEY VALUE`` overrides."""
    parser = ConfigArgumentParser(description=description, epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--config-file", dest="config", metavar="FILE", default="",
                        help="YAML config (may name a _BASE_ file it extends), e.g. configs/Synthetic/resnet50_circle.yml")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help=OVERRIDES_HELP)
    return parser


def cfg_from_args(args: argparse.Namespace):
    """Defaults <- ``--config`` file <- overrides, validated and frozen."""
    return load_cfg(args.config or None, args.opts)


def run_tool(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> None:
    """Run a tool's ``main``. What the user can fix is shown as one ``error: ...`` paragraph and exit status 1,
    never a traceback: a ReIDError (its message says what and how), an OSError (a file that cannot be read or
    written, a full disk) and running out of GPU memory. ``REID_TRACEBACK=1`` shows the traceback as well."""
    try:
        code = main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - anything else is a bug and keeps its traceback
        message = user_message(e)
        if message is None:
            raise
        if os.environ.get("REID_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)


def user_message(e: BaseException) -> Optional[str]:
    """The one-paragraph message ``run_tool`` prints for an error the user can fix, None for any other."""
    if isinstance(e, ReIDError):
        return str(e)
    if isinstance(e, OSError):
        if not e.strerror:
            return str(e)
        where = f" {e.filename!r}" if e.filename else ""
        where += f" -> {e.filename2!r}" if e.filename2 else ""
        return f"{e.strerror}:{where}"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(e, torch.OutOfMemoryError):
        first = str(e).splitlines()[0] if str(e) else ""
        return (f"out of GPU memory ({first}). Lower SOLVER.IMS_PER_BATCH (training) or TEST.IMS_PER_BATCH "
                f"(evaluation), or train with SOLVER.AMP bf16.")
    return None
