"""Datasets and loaders from the config: ``build_dataset``, ``build_train_loader``, ``build_test_loader``.

Loaders yield the batch dicts of CONTRIBUTING.md: ``images`` (B, 3, H, W) normalised floats, ``pids`` and
``camids`` int64 (B,), ``paths`` list[str].
"""
from __future__ import annotations

import logging
import random
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from yacs.config import CfgNode

from ..utils.errors import ConfigError, DatasetError
from .datasets import DATASET_REGISTRY, ImageRecord, ReIDDataset
from .datasets.base import relabel
from .io import read_image
from .samplers import IdentitySampler, RandomSampler
from .transforms import build_transforms

logger = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Records -> batch items; images are decoded when fetched (in the loader's workers)."""

    def __init__(self, records: Sequence[ImageRecord], transform: Callable) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Dict[str, object]:
        r = self.records[index]
        return {"images": self.transform(read_image(r.path)), "pids": r.pid, "camids": r.camid, "paths": r.path}


def build_dataset(cfg: CfgNode, name: str) -> ReIDDataset:
    """Parse the registered dataset ``name`` under ``cfg.DATASETS.ROOT`` (generating it if it is Synthetic)."""
    return DATASET_REGISTRY.get(name)(cfg.DATASETS.ROOT, cfg)


def merge_train_sets(datasets: Sequence[ReIDDataset]) -> ReIDDataset:
    """One training set from several: pids and camids offset so identities and cameras never collide."""
    train: List[ImageRecord] = []
    pid_offset = cam_offset = 0
    for ds in datasets:
        train += [ImageRecord(r.path, r.pid + pid_offset, r.camid + cam_offset) for r in ds.train]
        pid_offset += ds.num_train_pids
        cam_offset += max((r.camid for r in ds.train), default=-1) + 1
    return ReIDDataset("+".join(ds.name for ds in datasets), ",".join(ds.root for ds in datasets), train, [], [])


def _drop_unreadable(records: List[ImageRecord], cfg: CfgNode, what: str) -> List[ImageRecord]:
    """With ``DATASETS.SKIP_UNREADABLE``, decode every image once up front and drop (and report) the broken ones;
    otherwise leave them to fail with a clear DatasetError when loaded."""
    if not cfg.DATASETS.SKIP_UNREADABLE:
        return records
    kept, bad = [], []
    for r in records:
        try:
            read_image(r.path)
            kept.append(r)
        except DatasetError as e:
            bad.append(str(e))
    if bad:
        logger.warning("Skipped %d unreadable %s image(s) (DATASETS.SKIP_UNREADABLE); first: %s", len(bad), what,
                       bad[0])
    return kept


def _seed(cfg: CfgNode) -> int:
    """The sampler seed: SEED, or for a negative SEED the seed torch was seeded with (the engine resolves a fresh
    seed the same on every rank, so DDP ranks still share one batch plan)."""
    return cfg.SEED if cfg.SEED >= 0 else torch.initial_seed() % 2**63


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a loader worker from torch's per-worker seed, so augmentation written with
    either is reproducible and differs between workers."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _loader(cfg: CfgNode, dataset: Dataset, batch_size: int, sampler: Sampler | None, seed: int) -> DataLoader:
    workers = cfg.DATALOADER.NUM_WORKERS
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=False,
                      num_workers=workers, persistent_workers=workers > 0, worker_init_fn=seed_worker,
                      pin_memory=torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu",
                      generator=torch.Generator().manual_seed(seed))


def build_train_loader(cfg: CfgNode, rank: int = 0, world_size: int = 1) -> Tuple[DataLoader, ReIDDataset]:
    """The training loader of this rank (``SOLVER.IMS_PER_BATCH // world_size`` images a batch, disjoint batches
    across ranks) and the merged training set (``num_train_pids`` = classifier size)."""
    total = cfg.SOLVER.IMS_PER_BATCH
    if total % world_size:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH ({total}) must be divisible by the number of processes "
                          f"({world_size}); it is the batch over all GPUs.")
    datasets = [build_dataset(cfg, name) for name in cfg.DATASETS.NAMES]
    merged = merge_train_sets(datasets) if len(datasets) > 1 else datasets[0]
    train = relabel(_drop_unreadable(merged.train, cfg, "training"))
    if not train:
        raise DatasetError(f"No training images in {merged.name} ({merged.root}); check DATASETS.NAMES and the "
                           f"train folders / lists.")
    dataset = ReIDDataset(merged.name, merged.root, train, merged.query, merged.gallery)
    seed, batch_size = _seed(cfg), total // world_size
    if cfg.DATALOADER.SAMPLER == "identity":
        sampler: Sampler = IdentitySampler([r.pid for r in train], batch_size, cfg.DATALOADER.NUM_INSTANCE, seed,
                                           rank, world_size)
    else:
        sampler = RandomSampler(len(train), batch_size, seed, rank, world_size)
    aug_seed = int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])  # augmentation differs per rank
    loader = _loader(cfg, ImageDataset(train, build_transforms(cfg, is_train=True)), batch_size, sampler, aug_seed)
    return loader, dataset


def build_test_loader(cfg: CfgNode, name: str) -> Tuple[DataLoader, int, List[ImageRecord]]:
    """The loader over query + gallery of ``name`` (in that order, unshuffled; the same on every rank), the
    number of queries and the records in loader order."""
    dataset = build_dataset(cfg, name)
    query = _drop_unreadable(dataset.query, cfg, "query")
    records = query + _drop_unreadable(dataset.gallery, cfg, "gallery")
    loader = _loader(cfg, ImageDataset(records, build_transforms(cfg, is_train=False)), cfg.TEST.IMS_PER_BATCH,
                     None, 0)
    return loader, len(query), records
