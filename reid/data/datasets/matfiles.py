"""MATLAB files of the releases (CUHK03, GRID, MARS, iLIDS-VID): version 5 files through SciPy, version 7.3 (HDF5)
files through h5py. Both are imported only when a dataset needs them (``pip install -e '.[datasets]'``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np

from ...utils.errors import DatasetError


def _module(name: str, path: Path):
    try:
        return __import__(name)
    except ImportError:
        raise DatasetError(f"Reading {path} needs the package {name!r}: pip install -e '.[datasets]' (or pip install "
                           f"{name}).") from None


def require_file(path: Path, layout: str) -> Path:
    """``path`` itself, or a DatasetError naming it and showing the expected layout."""
    if not path.is_file():
        raise DatasetError(f"Missing file {str(path)!r}. Expected layout:\n{layout}\n(see datasets/README.md).")
    return path


def load_mat(path: Path, keys: Sequence[str], layout: str) -> Dict[str, Any]:
    """The variables ``keys`` of a MATLAB v5 file; a missing file, an unreadable one or a missing variable is a
    DatasetError naming the file."""
    require_file(path, layout)
    _module("scipy", path)
    from scipy.io import loadmat
    try:
        data = loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... on a damaged or foreign file
        raise DatasetError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e}).") from None
    missing = [k for k in keys if k not in data]
    if missing:
        present = ", ".join(sorted(k for k in data if not k.startswith("__")))
        raise DatasetError(f"{path}: no variable {', '.join(missing)} (it has {present}); is it the file of the "
                           f"release?")
    return {k: data[k] for k in keys}


def open_mat73(path: Path, layout: str):
    """A MATLAB v7.3 file (HDF5) opened read-only with h5py; a missing or unreadable file is a DatasetError."""
    require_file(path, layout)
    h5py = _module("h5py", path)
    try:
        return h5py.File(str(path), "r")
    except OSError as e:
        raise DatasetError(f"{path}: not a readable MATLAB v7.3 (HDF5) file ({e}).") from None


def int_vector(value: Any, path: Path, what: str) -> np.ndarray:
    """A MATLAB numeric array flattened to int64; anything else is a DatasetError naming the file."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "f" and not np.all(array == np.round(array))):
        raise DatasetError(f"{path}: {what} should hold whole numbers, got {array.dtype} of shape {array.shape}.")
    return array.astype(np.int64).ravel()
