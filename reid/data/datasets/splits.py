"""Multi-split protocols: choosing a split, drawing seeded random identity splits, and reading the split files the
peers write (torchreid's ``splits.json`` and kin), so that a run of reid and one of torchreid on the same copy of a
dataset use the same splits."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from yacs.config import CfgNode

from ...utils.errors import DatasetError
from .base import Record, ReIDDataset, Split, relabel

T = TypeVar("T", bound=Hashable)
NUM_SPLITS = 10  # random splits of the small benchmarks (torchreid; VIPeR and CUHK01 use each in both directions)


def choose_split(splits: Sequence[Split], split_id: int, name: str, where: Path) -> Split:
    """``splits[split_id]``; an index outside the protocol is a DatasetError naming DATASETS.SPLIT_ID."""
    if not 0 <= split_id < len(splits):
        raise DatasetError(f"DATASETS.SPLIT_ID {split_id} is out of range: {name} ({where}) has {len(splits)} "
                           f"split(s), 0..{len(splits) - 1}.")
    return splits[split_id]


def draw_identity_splits(identities: Sequence[T], num_train: int, num_splits: int,
                         seed: int) -> List[Tuple[List[T], List[T]]]:
    """``num_splits`` random (train, test) partitions of ``identities`` with ``num_train`` training ones, each
    sorted; a function of the identities and ``seed`` (DATASETS.SPLIT_SEED) alone."""
    ordered = sorted(identities)
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(num_splits):
        order = rng.permutation(len(ordered))
        splits.append((sorted(ordered[i] for i in order[:num_train]), sorted(ordered[i] for i in order[num_train:])))
    return splits


def split_records(train: Sequence[Record], query: Sequence[Record], gallery: Sequence[Record]) -> Split:
    """A Split with the training identities relabelled 0..N-1 (query and gallery keep theirs)."""
    return Split(relabel(train), list(query), list(gallery))


def peer_split_file(folder: Path, file_name: str, peer_dir: str) -> Optional[Path]:
    """The split file a peer wrote for the release in ``folder``, if any: ``folder/file_name``, or torchreid's
    place, ``<peer_dir>/file_name`` beside the release folder (``<root>/viper/splits.json`` for
    ``<root>/viper/VIPeR/``), read only when the release folder sits in a folder of that name."""
    candidates = [folder / file_name]
    if folder.parent.name == peer_dir:
        candidates.append(folder.parent / file_name)
    return next((c for c in candidates if c.is_file()), None)


def read_split_file(path: Path, keys: Sequence[str], count: Optional[int] = None) -> List[Dict[str, Any]]:
    """A peer's split file: a JSON list of objects with ``keys`` (``count`` of them when given); anything else is a
    DatasetError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a readable JSON split file ({e}); delete it to draw the splits anew "
                           f"(DATASETS.SPLIT_SEED).") from None
    valid = isinstance(data, list) and data and all(isinstance(s, dict) and all(k in s for k in keys) for s in data)
    if not valid or (count is not None and len(data) != count):
        expected = f"{count} objects" if count is not None else "a list of objects"
        raise DatasetError(f"{path}: expected {expected} with the keys {', '.join(keys)} (torchreid's split file); "
                           f"got {type(data).__name__} of {len(data) if isinstance(data, list) else 0}. Delete it to "
                           f"draw the splits anew (DATASETS.SPLIT_SEED).")
    return data


def lookup(index: Dict[T, Any], key: T, path: Path, what: str) -> Any:
    """``index[key]``; a key the release does not have means the split file belongs to another copy or version."""
    try:
        return index[key]
    except (KeyError, TypeError):
        raise DatasetError(f"{path} names {what} {key!r}, which is not in the dataset folder: the split file was "
                           f"written for another copy or version of the release. Delete it to draw the splits anew "
                           f"(DATASETS.SPLIT_SEED).") from None


def read_identity_splits(path: Path, identities: Sequence[T], what: str) -> List[Tuple[List[T], List[T]]]:
    """The (train, test) identity lists of a peer's split file of ``{"train": [...], "test": [...]}`` objects
    (torchreid's PRID files); an identity the release does not have is a DatasetError naming the file."""
    index = {i: i for i in identities}
    return [tuple([lookup(index, i, path, what) for i in s[k]] for k in ("train", "test"))  # type: ignore[misc]
            for s in read_split_file(path, ("train", "test"))]


def map_split_file(path: Path, keys: Sequence[str], count: Optional[int],
                   convert: Callable[[Dict[str, Any]], Split]) -> List[Split]:
    """Every split of a peer's split file, each converted by ``convert`` (which uses :func:`lookup`)."""
    return [convert(s) for s in read_split_file(path, keys, count)]


class SplitDataset(ReIDDataset):
    """A dataset whose records are the split ``DATASETS.SPLIT_ID`` of its ``splits``."""

    def __init__(self, folder: Path, cfg: CfgNode, splits: List[Split]) -> None:
        chosen = choose_split(splits, cfg.DATASETS.SPLIT_ID, type(self).__name__, folder)
        super().__init__(type(self).__name__, str(folder), chosen.train, chosen.query, chosen.gallery, splits=splits,
                         split_id=cfg.DATASETS.SPLIT_ID)
