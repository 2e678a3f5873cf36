"""Files written whole or not at all, and a file's identity by content."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (a checkpoint's or a ground-truth file's identity, whatever its path)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces ``path`` only when the block ends without an error (written to
    ``path``.tmp, then renamed), so that a reader never sees half a file; on an error the temporary file goes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
