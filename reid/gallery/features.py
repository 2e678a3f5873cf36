"""The gallery feature file: embeddings with their image names and how they were made, as an .npz of plain arrays
(``reid-extract`` writes it, ``reid-search`` and ``Gallery.open`` read it)."""
from __future__ import annotations

import json
import os
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from yacs.config import CfgNode

from ..config import cfg_from_dict, cfg_to_dict
from ..inference import ReIDModel
from ..utils.errors import DatasetError
from ..utils.files import atomic_write

# What reading a damaged .npz raises: a truncated or overwritten zip (BadZipFile, EOFError, OSError), a member
# whose bytes changed (BadZipFile "Bad CRC-32"), an array header that does not parse (ValueError), a missing
# member (KeyError), FAISS refusing the serialised index (RuntimeError).
NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile)


@contextmanager
def read_npz(path: str | os.PathLike, what: str, fix: str) -> Iterator[np.lib.npyio.NpzFile]:
    """``np.load(path)`` (plain arrays only) for the body of the ``with``; any way the file can be damaged, in the
    body too, is a DatasetError naming the file, ``what`` it should be and how to ``fix`` it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            yield data
    except NPZ_ERRORS as e:
        damaged = isinstance(e, (zipfile.BadZipFile, EOFError))
        why = "it is truncated or damaged (an interrupted copy or write?)" if damaged else "it cannot be read"
        raise DatasetError(f"{os.fspath(path)!r} is not a readable {what}: {why} ({type(e).__name__}: {e}). "
                           f"{fix}") from None


@dataclass
class FeatureFile:
    """Embeddings with their image names and how they were made: the checkpoint (path and SHA-256), the resolved
    config as JSON and the checkpoint's verification threshold (NaN when it has none)."""

    features: np.ndarray
    names: List[str]
    normalized: bool
    weights: str = ""
    cfg_json: str = ""
    weights_sha256: str = ""
    threshold: float = float("nan")

    @classmethod
    def of(cls, model: ReIDModel, features: torch.Tensor, names: Sequence[str], normalized: bool) -> "FeatureFile":
        """Features embedded by ``model``, recording its checkpoint and config so queries can be embedded alike."""
        return cls(features.float().cpu().numpy(), list(names), normalized, model.weights,
                   json.dumps(cfg_to_dict(model.cfg), sort_keys=True), model.weights_sha256,
                   float("nan") if model.threshold is None else float(model.threshold))

    def save(self, path: str | os.PathLike) -> Path:
        """Write an .npz of plain arrays (readable with ``np.load(allow_pickle=False)``), at exactly ``path``,
        atomically (a temporary file, then a rename: an index beside it never sees half a gallery)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:  # a file object: np.savez would append ".npz" to a path lacking it
            np.savez(f, features=self.features.astype(np.float32), names=np.asarray(self.names, dtype=np.str_),
                     normalized=np.bool_(self.normalized), weights=np.str_(self.weights),
                     cfg=np.str_(self.cfg_json), weights_sha256=np.str_(self.weights_sha256),
                     threshold=np.float64(self.threshold))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureFile":
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"Feature file {str(path)!r} does not exist; write one with tools/extract.py.")
        with read_npz(path, "feature file of tools/extract.py (an .npz with 'features' and 'names')",
                      "Extract it again with tools/extract.py (reid-extract).") as data:
            extra = {k: str(data[k]) for k in ("weights", "cfg", "weights_sha256") if k in data.files}
            out = cls(data["features"].astype(np.float32), [str(n) for n in data["names"]],
                      bool(data["normalized"]) if "normalized" in data.files else False,
                      extra.get("weights", ""), extra.get("cfg", ""), extra.get("weights_sha256", ""),
                      float(data["threshold"]) if "threshold" in data.files else float("nan"))
        if out.features.ndim != 2 or len(out.names) != len(out.features):
            raise DatasetError(f"{str(path)!r}: 'features' must be (N, D) with one name per row; got "
                               f"{out.features.shape} and {len(out.names)} names.")
        return out

    def config(self) -> Optional[CfgNode]:
        """The config the features were extracted with (to embed queries identically), if recorded."""
        return cfg_from_dict(json.loads(self.cfg_json)) if self.cfg_json else None
