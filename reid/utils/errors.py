"""User-facing errors: tools print their message and exit non-zero instead of showing a traceback."""
from __future__ import annotations

import difflib
import re
from typing import List, Sequence

# torch.utils.data re-raises an exception from a loader worker as ``type(f"Caught {Name} {where}.\nOriginal
# Traceback ...")``: the worker's whole traceback inside the message (torch/_utils.py, ExceptionWrapper.reraise).
_WORKER_HEADER = re.compile(r"\ACaught (\w+) (in [^\n]+?)\.\nOriginal Traceback \(most recent call last\):\n")
_TRACEBACK = "Traceback (most recent call last):"


def _from_worker(message: str) -> str:
    """The original message of an error re-raised from a DataLoader worker, with where it happened; any other
    message unchanged."""
    header = _WORKER_HEADER.match(message)
    if header is None:
        return message
    name, where = header.groups()
    lines = message[message.rfind(_TRACEBACK):].splitlines()[1:]  # the last (innermost chained) traceback
    exception_line = re.compile(rf"(?:[A-Za-z_][\w.]*\.)?{re.escape(name)}: ")
    for i, line in enumerate(lines):
        if exception_line.match(line):  # frames are indented; the exception line starts at column 0
            text = "\n".join([line.split(": ", 1)[1], *lines[i + 1:]]).rstrip()
            return f"{text} ({where})"
    return message


class ReIDError(Exception):
    """A problem the user can fix (bad path, bad key, bad file); the message says what and how.

    Raised inside a DataLoader worker, it reaches the main process with the worker's traceback folded into its
    message; the constructor strips that back to the original one-paragraph message.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_from_worker(args[0]),)
        super().__init__(*args)


class ConfigError(ReIDError):
    """An unknown config key, a value of the wrong type or an invalid value."""


class DatasetError(ReIDError):
    """A missing dataset folder, a wrong layout, an unparsable file name or an unreadable image."""


class CheckpointError(ReIDError):
    """A missing, unsafe or mismatched checkpoint file."""


def close_matches(word: str, candidates: Sequence[str], n: int = 3, cutoff: float = 0.6) -> List[str]:
    """The ``candidates`` closest to ``word`` for a "Did you mean" hint, ignoring case (``solver.max_epochs``
    finds ``SOLVER.MAX_EPOCHS``); a match up to case comes first."""
    lowered = {c.lower(): c for c in candidates}
    same = [c for c in candidates if c.lower() == word.lower() and c != word]
    fuzzy = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=cutoff)]
    return list(dict.fromkeys(same + fuzzy))[:n]
