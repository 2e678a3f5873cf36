"""Datasets and loaders from the config: ``build_dataset``, ``build_train_loader``, ``build_test_set``.

Loaders yield the batch dicts of CONTRIBUTING.md: ``images`` (B, 3, H, W) normalised floats, ``pids`` and
``camids`` int64 (B,), ``paths`` list[str].

Exact resume: the training loader's randomness (which images form the batches, and every random augmentation)
is a function of (SEED, rank, epoch) alone, so a run resumed from a checkpoint at epoch e draws what an
uninterrupted run draws from epoch e on. See :class:`TrainLoader`.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms.functional import pil_to_tensor
from yacs.config import CfgNode

from ..registry import FRAME_SAMPLING_REGISTRY, PIPELINE_REGISTRY, SAMPLER_REGISTRY
from ..utils.errors import ConfigError, DatasetError
from .augment import Augmenter, TrainAugmentation
from .datasets import DATASET_REGISTRY, ImageRecord, ReIDDataset, TrackletRecord
from .datasets.base import (UNKNOWN_CAMERA, EvalProtocol, Record, check_query_matches, choose_protocol,
                            describe_identity, image_ids, queries_without_match, relabel, require_nonempty)
from .io import image_problem, read_image
from .transforms import build_resize, build_test_transform
from .video import TrackletFrames, TrainTracklets, batch_seed, frames_of

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

    def subset(self, indices: Sequence[int]) -> "ImageDataset":
        """The records ``indices`` only, in that order."""
        return ImageDataset([self.records[i] for i in indices], self.transform)


class TrainImages(Dataset):
    """Training records -> augmented batches, a batch at a time (``__getitems__``; there is no single-item access).

    Keys are the ``(seed, index)`` pairs of ``SeededIndices``: a batch's augmentation is drawn from its seed alone,
    so it does not depend on which process loads the batch or on anything drawn before.
    """

    def __init__(self, records: Sequence[ImageRecord], resize: Callable, augmentation: TrainAugmentation) -> None:
        self.records = list(records)
        self.resize = resize
        self.augmentation = augmentation
        self.augmenter = Augmenter(augmentation)

    def __len__(self) -> int:
        return len(self.records)

    def __getitems__(self, keys: Sequence[Tuple[int, int]]) -> Dict[str, object]:
        records = [self.records[index] for _, index in keys]
        params = self.augmentation.draw(len(records), torch.Generator().manual_seed(batch_seed(keys)))
        images = [pil_to_tensor(self.resize(self.augmentation.before_resize(read_image(r.path), params, i)))
                  for i, r in enumerate(records)]
        return {"images": self.augmenter.images(images, params),
                "pids": torch.tensor([r.pid for r in records], dtype=torch.int64),
                "camids": torch.tensor([r.camid for r in records], dtype=torch.int64),
                "paths": [r.path for r in records]}


def _whole_batch(batch: Dict[str, object]) -> Dict[str, object]:
    """The collate function of ``TrainImages``, whose ``__getitems__`` already returns a batch."""
    return batch


def build_dataset(cfg: CfgNode, name: str) -> ReIDDataset:
    """Parse the dataset entry ``name`` of DATASETS.NAMES / TESTS under ``cfg.DATASETS.ROOT`` (generating it if it
    is Synthetic): a registered ``NAME``, or ``NAME:ARG`` for datasets registered with an argument
    (``folder:PATH``, ``csv:FILE``, ``Market1501:PATH``), split at the first colon. The dataset is named by the
    whole entry."""
    cls = DATASET_REGISTRY.get(name, "DATASETS.NAMES / DATASETS.TESTS entry")
    arg = DATASET_REGISTRY.split(name)[1]
    dataset = cls(cfg.DATASETS.ROOT, cfg, arg=arg) if arg is not None else cls(cfg.DATASETS.ROOT, cfg)
    dataset.name = name
    return dataset


def merge_train_sets(datasets: Sequence[ReIDDataset]) -> ReIDDataset:
    """One training set from several: pids and known camids offset so identities and cameras never collide (the
    classifier size is the sum), identity names prefixed with their dataset's name. A set without training images,
    or a mix of video and image sets, is an error naming them; one set is returned as it is."""
    kinds = {ds.is_video for ds in datasets if ds.train}
    if len(kinds) > 1:
        video = [ds.name for ds in datasets if ds.is_video]
        raise DatasetError(f"DATASETS.NAMES mixes video sets ({', '.join(video)}: tracklets) with image sets; a "
                           f"training batch holds either clips or images. Train on one kind (a model trained on "
                           f"tracklets can still be tested on image sets, and the reverse).")
    for ds in datasets:
        if not ds.train:
            raise DatasetError(f"No training images in {ds.name} ({ds.root}); it is listed in DATASETS.NAMES, the "
                               f"training sets: check its train folder / list, or list it in DATASETS.TESTS only.")
    if len(datasets) == 1:
        return datasets[0]
    train: List[ImageRecord] = []
    pid_offset = cam_offset = 0
    for ds in datasets:
        train += [replace(r, pid=r.pid + pid_offset,
                          camid=r.camid + cam_offset if r.camid != UNKNOWN_CAMERA else UNKNOWN_CAMERA,
                          identity_name=f"{ds.name}/{r.identity_name or r.pid}") for r in ds.train]
        pid_offset += ds.num_train_pids
        cam_offset += max((r.camid for r in ds.train), default=-1) + 1
    return ReIDDataset("+".join(ds.name for ds in datasets), ",".join(ds.root for ds in datasets), train, [], [],
                       parts=datasets)


def _drop_unreadable(records: List[Record], cfg: CfgNode, what: str) -> List[Record]:
    """With ``DATASETS.SKIP_UNREADABLE``, decode every image (every frame of a tracklet) once up front and drop the
    records with a broken one, logging how many were skipped and which; otherwise leave them to fail with a clear
    DatasetError when loaded."""
    if not cfg.DATASETS.SKIP_UNREADABLE:
        return records
    with ThreadPoolExecutor(max(1, cfg.DATALOADER.NUM_WORKERS)) as pool:  # PIL decodes without the GIL
        problems = list(pool.map(_record_problem, records))
    kept = [r for r, p in zip(records, problems) if not p]
    bad = [p for p in problems if p]
    if bad:
        logger.warning("Skipped %d of %d %s image(s) as unreadable (DATASETS.SKIP_UNREADABLE): %s%s", len(bad),
                       len(records), what, "; ".join(bad[:3]), f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
    else:
        logger.info("Checked %d %s image(s): all readable", len(records), what)
    return kept


def _record_problem(record: Record) -> str:
    """"<path> <problem>" for the first unreadable file of a record (an image, or a tracklet's frames), else ""."""
    for path in frames_of(record):
        problem = image_problem(path)
        if problem:
            return f"{path} {problem}"
    return ""


def _content_key(path: str) -> str:
    """A digest of a file's bytes (BLAKE2b: the duplicate check below only compares files of equal size)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def training_copies_of_test_images(train: Sequence[ImageRecord], test_sets: Mapping[str, Any]) -> List[str]:
    """Warnings naming test images (query or gallery of each ``test_sets`` value, a :class:`TestSet`) whose bytes
    equal a training image's: a copy the model was trained on is found trivially, so the evaluation overstates it.

    Cheap: every image's size is read (one ``stat`` each); only files whose size equals a training image's are
    read and hashed, and the training images of those sizes. At worst (36,036 Market-sized JPEG crops with only 254
    distinct sizes: all hashed, 116 MB) it took 1.1 s on a 2-core CPU."""
    def size(path: str) -> int:
        try:
            return os.path.getsize(path)
        except OSError:
            return -1  # reported where the image is read

    train_by_size: Dict[int, List[ImageRecord]] = defaultdict(list)
    for r in train:
        train_by_size[size(r.path)].append(r)
    train_by_size.pop(-1, None)
    digests: Dict[str, str] = {}

    def key(path: str) -> str:
        if path not in digests:
            digests[path] = _content_key(path)
        return digests[path]

    warnings = []
    for name, test_set in test_sets.items():
        for split, records in (("query", test_set.query), ("gallery", test_set.gallery)):
            copies = []
            for r in records:
                candidates = train_by_size.get(size(r.path), ())
                same = next((t for t in candidates if t.path != r.path and key(t.path) == key(r.path)), None)
                if same is not None or any(t.path == r.path for t in candidates):
                    copies.append((r, same or r))
            if copies:
                r, t = copies[0]
                who = f" (identity {t.identity_name!r})" if t.identity_name else ""
                warnings.append(
                    f"{len(copies)} of {len(records)} {split} images of {name} are also training images (same "
                    f"bytes), e.g. {r.path!r} ({describe_identity(r)}) = training image {t.path!r}{who}. The model "
                    f"is trained on them, so their matches are found trivially and {name}'s scores overstate it; "
                    f"remove the copies from the training data (or train without {name}).")
    return warnings


def check_test_sets(cfg: CfgNode, built: Dict[str, ReIDDataset] | None = None) -> None:
    """Parse every ``DATASETS.TESTS`` set and check that some query has a true match in its gallery, so a missing
    folder or a broken split is reported before training starts, not after it ends. ``built`` holds datasets
    already parsed (by name)."""
    built = built or {}
    for name in cfg.DATASETS.TESTS:
        dataset = built.get(name) or build_dataset(cfg, name)
        _check_protocol(dataset.query, dataset.gallery, dataset, cfg.TEST.CROSS_CAMERA)


def _check_protocol(query: Sequence[Record], gallery: Sequence[Record], dataset: ReIDDataset, cross_camera: bool,
                    parsed: Optional[Tuple[Sequence[Record], Sequence[Record]]] = None
                    ) -> Tuple[EvalProtocol, Optional[List[int]]]:
    """The evaluation protocol of a test set (see ``choose_protocol``) and, for same-image removal, the image ids
    of query + gallery; raises when a split is empty or no query has a true match under that protocol."""
    if dataset.train and not dataset.query and not dataset.gallery:
        raise DatasetError(f"{dataset.name} ({dataset.root}) has no query or gallery: it is a training set only; list "
                           f"it in DATASETS.NAMES, not DATASETS.TESTS.")
    parsed_query, parsed_gallery = parsed if parsed is not None else (dataset.query, dataset.gallery)
    for what, records, listed in (("query", query, parsed_query), ("gallery", gallery, parsed_gallery)):
        if listed and not records:
            raise DatasetError(f"All {len(listed)} {what} images of {dataset.name} ({dataset.root}) are unreadable "
                               f"and were skipped (DATASETS.SKIP_UNREADABLE); nothing is left to evaluate.")
        require_nonempty(records, what, Path(dataset.root))
    protocol = choose_protocol(query, gallery, cross_camera)
    ids = None if protocol.cross_camera else image_ids([*query, *gallery])
    lacking = check_query_matches(query, gallery, dataset.name, dataset.root, ids)
    if lacking:
        first = queries_without_match(query, gallery, ids)[0]
        logger.warning("%d of %d queries of %s have no true match in the gallery (%s); the evaluation skips them. "
                       "E.g. %r (%s).", lacking, len(query), dataset.name, protocol.name, first.path,
                       describe_identity(first))
    return protocol, ids


def _seed(cfg: CfgNode) -> int:
    """The sampler seed: SEED, or for a negative SEED the seed torch was seeded with (the engine resolves a fresh
    seed the same on every rank, so DDP ranks still share one batch plan)."""
    return cfg.SEED if cfg.SEED >= 0 else torch.initial_seed() % 2**63


def build_test_loader(cfg: CfgNode, records: Sequence[Record]) -> DataLoader:
    """``records`` in order, ``TEST.IMS_PER_BATCH`` images (for tracklets: frames, see ``TrackletFrames``) at a
    time. Each iteration draws a worker seed from the loader's generator: a private one, so that evaluating neither
    reads nor moves torch's global random state."""
    transform = build_test_transform(cfg)
    video = any(isinstance(r, TrackletRecord) for r in records[:1])
    dataset = TrackletFrames(records, transform, cfg.TEST.SEQ_LEN) if video else ImageDataset(records, transform)
    return _loader_like(dataset, cfg.TEST.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS, _pin(cfg))


def _loader_like(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False, num_workers=num_workers,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(0))


def subset_loader(loader: DataLoader, indices: Sequence[int]) -> DataLoader:
    """A test loader of the records ``indices`` of ``loader``'s dataset only (images, or every chosen frame of
    those tracklets), batched as ``loader``."""
    return _loader_like(loader.dataset.subset(indices), loader.batch_size, loader.num_workers, loader.pin_memory)


def _pin(cfg: CfgNode) -> bool:
    return torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu"


class SeededIndices(Sampler[Tuple[int, int]]):
    """``index_sampler``'s indices, each paired with the augmentation seed of the batch it falls in: ``(seed,
    index)``. The seed of batch b of an epoch is a function of (``base_seed``, epoch, b) alone."""

    def __init__(self, index_sampler: Sampler, batch_size: int, base_seed: int) -> None:
        self.index_sampler = index_sampler
        self.batch_size = batch_size
        self.base_seed = base_seed

    @property
    def epoch(self) -> int:
        return int(getattr(self.index_sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        self.index_sampler.set_epoch(epoch)

    def batch_seed(self, batch: int) -> int:
        """The seed of batch ``batch`` of this epoch's augmentation (63 bits)."""
        state = np.random.SeedSequence([self.base_seed, self.epoch, batch]).generate_state(2, np.uint64)
        return int(state[0] >> np.uint64(1))

    def __len__(self) -> int:
        return len(self.index_sampler)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        for position, index in enumerate(self.index_sampler):
            if position % self.batch_size == 0:
                seed = self.batch_seed(position // self.batch_size)
            yield seed, index


class TrainLoader(DataLoader):
    """The training DataLoader, whose randomness is a function of (seed, rank, epoch) only.

    The epoch (``set_epoch``, which the training loop calls before each epoch) selects the sampler's batches; batch
    b's augmentation is drawn from ``batch_seed(b)`` = f(``base_seed``, epoch, b) by whichever process loads it
    (``TrainImages``). So NUM_WORKERS 0 and N give the same batches, a resumed run's epoch e equals an
    uninterrupted run's, and loading neither reads nor moves any global random state (workers are seeded from a
    private generator). ``base_seed`` is derived from (SEED, rank).

    The workers stay alive across epochs (``persistent_workers``: starting them costs ~0.3-1 s per epoch). They
    need no per-epoch state: the sampler runs in the main process, so its epoch never has to reach them, and each
    batch's key carries the seed its augmentation is drawn from.
    """

    def __init__(self, dataset: TrainImages, batch_size: int, sampler: Sampler, seed: int, num_workers: int,
                 pin_memory: bool) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=SeededIndices(sampler, batch_size, seed),
                         shuffle=False, drop_last=False, collate_fn=_whole_batch, num_workers=num_workers,
                         pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed),
                         persistent_workers=num_workers > 0)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    @property
    def index_sampler(self) -> Sampler:
        """The sampler of dataset indices (identity or shuffle), without seeds."""
        return self.sampler.index_sampler

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's batches and augmentations (sets the sampler's epoch)."""
        self.sampler.set_epoch(epoch)

    def batch_seed(self, batch: int) -> int:
        """The seed of batch ``batch``'s augmentation in this epoch."""
        return self.sampler.batch_seed(batch)

    def close(self) -> None:
        """Stop the persistent workers (iterating again starts new ones). Done explicitly at the end of training:
        left to the garbage collector, as part of a reference cycle, the worker queues can be finalised before
        the iterator, and torch then waits 5 s per worker for a shutdown message that never arrives."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


def build_train_loader(cfg: CfgNode, rank: int = 0, world_size: int = 1,
                       check_tests: bool = True) -> Tuple[TrainLoader, ReIDDataset]:
    """The training loader of this rank (``SOLVER.IMS_PER_BATCH // world_size`` images a batch, disjoint batches
    across ranks) and the merged training set (``num_train_pids`` = classifier size).

    With ``check_tests`` the ``DATASETS.TESTS`` sets are parsed and checked too (:func:`check_test_sets`), so that
    a test set that cannot be evaluated stops the run before training rather than after it.
    """
    total = cfg.SOLVER.IMS_PER_BATCH
    if total % world_size:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH ({total}) must be divisible by the number of processes "
                          f"({world_size}); it is the batch over all GPUs.")
    datasets = [build_dataset(cfg, name) for name in cfg.DATASETS.NAMES]
    if check_tests:
        check_test_sets(cfg, dict(zip(cfg.DATASETS.NAMES, datasets)))
    merged = merge_train_sets(datasets)
    train = relabel(_drop_unreadable(merged.train, cfg, "training"))
    if not train:  # merge_train_sets refused empty sets: every image was dropped as unreadable
        raise DatasetError(f"All {len(merged.train)} training images of {merged.name} ({merged.root}) are unreadable "
                           f"and were skipped (DATASETS.SKIP_UNREADABLE); nothing is left to train on.")
    identities = {r.pid for r in train}
    if len(identities) < 2:
        raise DatasetError(f"The training set {merged.name} ({merged.root}) holds {len(identities)} identity "
                           f"({len(train)} images): re-identification is learnt by telling identities apart, so "
                           f"with one every loss is 0 (a one-class classifier, no negative pairs) and the model "
                           f"learns nothing. Train on at least 2 identities (hundreds in practice); check that each "
                           f"identity has its own folder (folder:PATH/train/<identity>/) or pid.")
    # The split a multi-split set trains on stays known (the log shows it; the evaluator reuses this parse).
    dataset = ReIDDataset(merged.name, merged.root, train, merged.query, merged.gallery, merged.parts,
                          splits=() if merged.parts else merged.splits, split_id=merged.split_id)
    seed, batch_size = _seed(cfg), total // world_size
    sampler = SAMPLER_REGISTRY.get(cfg.DATALOADER.SAMPLER)([r.pid for r in train], batch_size, cfg, seed, rank,
                                                           world_size)
    aug_seed = int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])  # augmentation differs per rank
    resize, augmentation = build_resize(cfg, cfg.INPUT.SIZE_TRAIN, train=True), TrainAugmentation.from_cfg(cfg)
    if dataset.is_video:  # P x K tracklets of DATALOADER.SEQ_LEN frames each
        images = TrainTracklets(train, resize, augmentation, cfg.DATALOADER.SEQ_LEN,
                                FRAME_SAMPLING_REGISTRY.get(cfg.DATALOADER.SEQ_SAMPLE))
    else:
        images = TrainImages(train, resize, augmentation)
    loader = TrainLoader(images, batch_size, sampler, aug_seed, cfg.DATALOADER.NUM_WORKERS, _pin(cfg))
    return loader, dataset


@PIPELINE_REGISTRY.register("workers")
def build_worker_train_loader(cfg: CfgNode, device: torch.device, rank: int = 0,
                              world_size: int = 1) -> Tuple[TrainLoader, ReIDDataset]:
    """``DATALOADER.PIPELINE workers``: :func:`build_train_loader` (images decoded and augmented per item in the
    loader's workers; the training loop moves each batch to ``device``). The trainer builds and checks the test
    sets itself, reusing the parsed training sets, so they are not checked here."""
    return build_train_loader(cfg, rank, world_size, check_tests=False)


@dataclass
class TestSet:
    """One ``DATASETS.TESTS`` set, parsed and checked: a loader over query then gallery (unshuffled, the same on
    every rank), the records in loader order (their ``identity_name`` is the name to show where the dataset has
    one), the evaluation protocol and, for same-image (same-tracklet) removal, the image id of each record.

    For a protocol with several splits, ``split_id`` is the split these records are and ``more_splits`` the other
    splits evaluated with it, whose metrics are averaged with its own (see :func:`evaluated_splits`)."""

    name: str
    loader: DataLoader
    num_query: int
    records: List[Record]
    protocol: EvalProtocol
    image_ids: Optional[List[int]]  # None under the cross-camera protocol
    split_id: Optional[int] = None  # None: the dataset has one split
    more_splits: List["TestSet"] = field(default_factory=list)

    @property
    def query(self) -> List[Record]:
        return self.records[:self.num_query]

    @property
    def gallery(self) -> List[Record]:
        return self.records[self.num_query:]


def evaluated_splits(cfg: CfgNode, name: str, dataset: ReIDDataset) -> Tuple[List[int], str]:
    """The splits of a multi-split protocol the test set ``name`` is evaluated on, and why, for the log.

    A dataset trained on (its registered class is in DATASETS.NAMES) is evaluated on the splits whose training set
    is the one trained on, split ``DATASETS.SPLIT_ID``'s: that split (VIPeR's and CUHK01's other direction too,
    VehicleID's every gallery draw). A dataset that is not trained on is evaluated on every split (the
    cross-domain protocol of the small benchmarks, e.g. Song et al. CVPR 2019). The metrics are averaged.
    """
    trained = any(DATASET_REGISTRY.get(n) is DATASET_REGISTRY.get(name) for n in cfg.DATASETS.NAMES)
    every = list(range(len(dataset.splits)))
    if not trained:
        return every, (f"not a training set: evaluated on all {len(every)} splits of its protocol, metrics averaged "
                       f"(the model is fixed; cross-domain protocol)")
    chosen = dataset.splits[dataset.split_id].train
    ids = [i for i in every if dataset.splits[i].train is chosen or dataset.splits[i].train == chosen]
    return ids, (f"trained on split {dataset.split_id} (DATASETS.SPLIT_ID): evaluated on split(s) "
                 f"{', '.join(map(str, ids))} of 0..{len(every) - 1}, those with its training set, metrics averaged; "
                 f"reid-train --all-splits trains every split and averages all of them")


def build_test_set(cfg: CfgNode, name: str, dataset: Optional[ReIDDataset] = None) -> TestSet:
    """The test set ``name`` (``dataset``: the entry already parsed, e.g. as a training set, to parse it once).
    Raises a DatasetError before any image is embedded when the query or gallery is empty (also after
    ``DATASETS.SKIP_UNREADABLE`` dropped images) or no query has a true match in the gallery under its protocol,
    which is logged with the reason. A protocol with several splits gives the first split evaluated, with the
    others in ``more_splits`` (:func:`evaluated_splits`)."""
    dataset = dataset if dataset is not None else build_dataset(cfg, name)
    if len(dataset.splits) < 2:
        return _split_test_set(cfg, name, dataset, dataset.query, dataset.gallery, None)
    ids, why = evaluated_splits(cfg, name, dataset)
    logger.info("%s: %s", name, why)
    sets = [_split_test_set(cfg, name, dataset, dataset.splits[i].query, dataset.splits[i].gallery, i, k == 0)
            for k, i in enumerate(ids)]
    sets[0].more_splits = sets[1:]
    return sets[0]


def _split_test_set(cfg: CfgNode, name: str, dataset: ReIDDataset, query: List[Record], gallery: List[Record],
                    split_id: Optional[int], log: bool = True) -> TestSet:
    """One query x gallery split of ``dataset``, checked (``log``: say which protocol it is evaluated with)."""
    what = name if split_id is None else f"{name} split {split_id}"
    parsed = (query, gallery)
    query = _drop_unreadable(query, cfg, f"{what} query")
    gallery = _drop_unreadable(gallery, cfg, f"{what} gallery")
    protocol, ids = _check_protocol(query, gallery, dataset, cfg.TEST.CROSS_CAMERA, parsed)
    if log and protocol.cross_camera:
        logger.info("%s: cross-camera protocol (%s): same-identity same-camera gallery items are removed.", name,
                    protocol.reason)
    elif log:
        own = "tracklet" if dataset.is_video else "file"
        logger.warning("%s: evaluated with %s, not the cross-camera protocol (%s): only a query's own %s is removed "
                       "from its gallery; every other item of its identity counts as a match.", name, protocol.name,
                       protocol.reason, own)
    records = query + gallery
    return TestSet(name, build_test_loader(cfg, records), len(query), records, protocol, ids, split_id)
