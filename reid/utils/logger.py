"""A readable log on the console and in ``OUTPUT_DIR/log.txt`` (rank 0 only under DDP)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

_FMT = "[%(asctime)s %(name)s] %(message)s"


def setup_logger(output_dir: Optional[str] = None, rank: int = 0, name: str = "reid") -> logging.Logger:
    """Configure the ``reid`` logger once per process; later calls only add the file handler if new."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter(_FMT, datefmt="%m/%d %H:%M:%S")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    if output_dir and rank == 0:
        path = str(Path(output_dir) / "log.txt")
        if not any(isinstance(h, logging.FileHandler) and h.baseFilename == str(Path(path).resolve())
                   for h in logger.handlers):
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(path)
            fh.setFormatter(fmt)
            logger.addHandler(fh)
    return logger
