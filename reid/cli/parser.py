"""What every command shares: one argument parser (options anywhere, ``KEY VALUE`` overrides) and ``run_tool``,
which shows a user's mistake as one message and exit status 1 instead of a traceback."""
from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..checkpoint import load_checkpoint, resolve_config
from ..config import CfgNode, load_cfg
from ..engine.run_folder import checkpoint_opts
from ..utils.errors import ReIDError
from ..utils.logger import log_files, note_in_log_file

OVERRIDES_HELP = (
    "config overrides as KEY VALUE pairs, e.g. SOLVER.MAX_EPOCHS 60 MODEL.DEVICE cuda; every key is listed "
    "with its meaning in reid/config/defaults.py"
)
_NUMBER = re.compile(r"-\d|-\.\d|-inf|-nan", re.IGNORECASE)  # "-4" is a value, not an option
_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*")  # what a config key looks like: SOLVER.MAX_EPOCHS


class ConfigArgumentParser(argparse.ArgumentParser):
    """``[--config FILE] [options] [KEY VALUE ...]`` with the options anywhere.

    Words are read in ``KEY VALUE`` pairs; a word that is one of the parser's options where a KEY would stand is
    the option (with its arguments: an option taking several, such as ``--query 3 17``, stops at the next option
    or config-key-looking word). A word where a VALUE stands is always the value, so ``OUTPUT_DIR --resume``
    sets OUTPUT_DIR. Built with ``overrides=False`` for commands that take no config.
    """

    def __init__(self, *args, overrides: bool = True, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.overrides = overrides
        if overrides:
            self.add_argument("--config", "--config-file", dest="config", metavar="FILE", default="",
                              help="YAML config (may name a _BASE_ file it extends), e.g. "
                                   "configs/Synthetic/resnet50_circle.yml")
            self.add_argument("opts", nargs="*", metavar="KEY VALUE", help=OVERRIDES_HELP)

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace=None):  # noqa: D102 - argparse's
        argv = list(sys.argv[1:] if args is None else args)
        if not self.overrides:
            return super().parse_args(argv, namespace)
        options, overrides = self._split(argv)
        return super().parse_args([*options, "--", *overrides], namespace)

    def _split(self, argv: List[str]) -> Tuple[List[str], List[str]]:
        flags = {s: a for a in self._actions for s in a.option_strings}
        options: List[str] = []
        overrides: List[str] = []
        i = 0
        while i < len(argv):
            word = argv[i]
            at_key = len(overrides) % 2 == 0
            if word == "--":
                overrides += argv[i + 1:]
                break
            if at_key and word.startswith("-") and not _NUMBER.match(word):
                name = word.split("=", 1)[0]
                action = flags.get(name)
                width = 0 if action is None or "=" in word else self._width(action, argv[i + 1:])
                options += argv[i:i + 1 + width]
                i += 1 + width
                continue
            overrides.append(word)
            i += 1
        return options, overrides

    @staticmethod
    def _width(action: argparse.Action, rest: List[str]) -> int:
        """How many of the following words ``action`` takes."""
        nargs = action.nargs
        if nargs == 0:
            return 0
        if nargs is None:
            return min(1, len(rest))
        if isinstance(nargs, int):
            return min(nargs, len(rest))
        n = 0
        while n < len(rest) and not (rest[n].startswith("-") and not _NUMBER.match(rest[n])) \
                and not _KEY.fullmatch(rest[n]):
            n += 1
            if nargs == "?":
                break
        return n


def config_parser(description: str, epilog: str = "", prog: Optional[str] = None) -> ConfigArgumentParser:
    """The parser of a command taking ``--config FILE`` and ``KEY VALUE`` overrides."""
    return ConfigArgumentParser(prog=prog, description=description, epilog=epilog)


def plain_parser(description: str, epilog: str = "", prog: Optional[str] = None) -> ConfigArgumentParser:
    """The parser of a command that takes no config (search, plot-pair-weights)."""
    return ConfigArgumentParser(prog=prog, description=description, epilog=epilog, overrides=False)


def cfg_from_args(args: argparse.Namespace):
    """Defaults <- ``--config`` file <- overrides, validated and frozen."""
    return load_cfg(args.config or None, args.opts)


def add_name_option(parser: argparse.ArgumentParser) -> None:
    """``--name``: the folder of an evaluation under OUTPUT_DIR/eval/ (reid.engine.run_folder.evaluation_dir)."""
    parser.add_argument("--name", default="", metavar="NAME",
                        help="write into OUTPUT_DIR/eval/NAME/ (default: OUTPUT_DIR itself, or, when OUTPUT_DIR "
                             "holds a training run, OUTPUT_DIR/eval/<weights file>_<overrides>/: an evaluation "
                             "never writes over a training run's files)")


def eval_cfg_from_args(args: argparse.Namespace) -> Tuple[CfgNode, Optional[Dict[str, Any]]]:
    """The config of an evaluation of MODEL.WEIGHTS, and the checkpoint's content when it was read for it (None
    otherwise; pass it on as ``load_for_inference(state=...)`` so that the file is read once).

    With ``--config``: as :func:`cfg_from_args`. Without it: the config stored in the checkpoint with the overrides
    merged over it, and OUTPUT_DIR (unless overridden) the checkpoint's folder when that holds a training run (its
    evaluations then go into its eval/ folder)."""
    cfg = cfg_from_args(args)
    weights = cfg.MODEL.WEIGHTS
    if not weights or args.config:
        return cfg, None
    state = load_checkpoint(weights, "MODEL.WEIGHTS file")
    return resolve_config(state, weights, opts=checkpoint_opts(weights, args.opts)), state


def run_tool(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> None:
    """Run a command's ``main``. What the user can fix is shown as one ``error: ...`` paragraph and exit status 1,
    never a traceback: a ReIDError (its message says what and how), an OSError (a file that cannot be read or
    written, a full disk) and running out of GPU memory. ``REID_TRACEBACK=1`` shows the traceback as well. The
    message also ends the command's ``log.txt`` when it had opened one."""
    earlier_logs = log_files()
    try:
        code = main(argv)
    except KeyboardInterrupt as e:  # a command may say how to go on (tools/train.py: --resume)
        message = f"interrupted; {e}" if str(e) else "interrupted"
        note_in_log_file(message, earlier_logs)
        print(message, file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - anything else is a bug and keeps its traceback
        message = user_message(e)
        if message is None:
            raise
        if os.environ.get("REID_TRACEBACK"):
            traceback.print_exc()
        note_in_log_file(f"error: {message}", earlier_logs)
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
