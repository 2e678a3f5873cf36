"""A readable log on the console and in ``OUTPUT_DIR/log.txt`` (rank 0 only under DDP)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .outputs import LOG

_FMT = "[%(asctime)s %(name)s] %(message)s"


class _StdoutHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is when a message is logged, not as it was at set-up (a caller or a test
    may have replaced, and since closed, the stream of that moment)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the current sys.stdout is used instead
        pass


def setup_logger(output_dir: Optional[str] = None, rank: int = 0, name: str = "reid") -> logging.Logger:
    """Configure the ``reid`` logger once per process. A call with ``output_dir`` logs into its ``log.txt`` from
    then on (one file at a time: a process that runs several trainings or evaluations writes each one's log into
    its own folder)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter(_FMT, datefmt="%m/%d %H:%M:%S")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    if output_dir and rank == 0:
        for old in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(old)  # reopened even for the same path: the old file may have been moved aside
            old.close()
        path = Path(output_dir) / LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path)
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


def log_files(name: str = "reid") -> List[logging.FileHandler]:
    """The log files the logger writes into now (at most one: see :func:`setup_logger`)."""
    return [h for h in logging.getLogger(name).handlers if isinstance(h, logging.FileHandler)]


def note_in_log_file(text: str, opened_before: Sequence[logging.Handler] = (), name: str = "reid") -> None:
    """Write ``text`` into the open ``log.txt`` only, unless it was already open before the command (in
    ``opened_before``; a process that runs several commands): why a command stopped (an error, Ctrl-C) belongs in
    the log of the run it ended, while the console has already shown it as ``error: ...``."""
    logger = logging.getLogger(name)
    record = logger.makeRecord(name, logging.ERROR, __file__, 0, text, (), None)
    for handler in log_files(name):
        if handler not in opened_before:
            handler.handle(record)


def format_duration(seconds: float) -> str:
    """``45s``, ``3m 10s``, ``2h 05m``: a duration as people read it."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"
