"""The fast training input pipeline (``DATALOADER.PIPELINE gpu``): decode once, augment whole batches on the device.

Every training image is decoded (and resized to ``DATALOADER.CACHE_SIZE``, by default the training size, with the
same PIL filter as the workers path) once into a uint8 array: in RAM, or a memory-mapped ``.npy`` file when it is
larger than ``CACHE_RAM_GB`` or the run has several processes (named by a hash of the images, so later runs reuse
it; under DDP rank 0 writes it and the other ranks map the same file, so the host holds one copy, not one per GPU).
It is copied onto the GPU when it fits ``CACHE_DEVICE_GB``, after which the host copy is released (a memory-mapped
file stays on disk for later runs). With ``CACHE_DEVICE_GB -1`` the choice waits for the first training step: the
model, its optimizer state and the step's activations are then allocated, and the cache moves to the GPU when it
fits the free memory less ``AUTO_DEVICE_RESERVE`` of the GPU (kept for evaluation); an out-of-memory error while
copying, or in a later training step (``release_device_memory``, called by the trainer), moves it back to the host
for the rest of the run. Market-1501 at 256x128 is 1.3 GB, MSMT17 at 384x128 4.8 GB. Each batch is then gathered
from the cache and augmented by the batched applier of ``reid.data.augment`` on the training device (resize when the
cache holds another size, flip, pad + crop, normalisation, random erasing). The GPU never waits for JPEG decoding or
per-image Python code. On a CPU device the same code runs on CPU tensors.

Batches come in the order of the workers path's sampler (the same sampler object, identity or shuffle, DDP-aware)
and are the same dicts: ``images`` (on the device), ``pids``, ``camids`` and ``paths``. Each batch's augmentation
parameters are drawn from the training loader's seed of that batch, as the workers path draws them, so both paths
flip, crop and erase the same images the same way (only the erased pixels' random values differ).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
from yacs.config import CfgNode

from ..registry import PIPELINE_REGISTRY
from ..utils.errors import ConfigError
from .augment import AugmentParams, Augmenter
from .build import TrainLoader, build_train_loader
from .datasets import ImageRecord, ReIDDataset
from .io import read_image
from .transforms import build_resize, train_image_size, train_interpolation

logger = logging.getLogger(__name__)

_GB = 1e9
_CACHE_VERSION = 1  # bump when the stored layout changes
AUTO_DEVICE_RESERVE = 0.25  # CACHE_DEVICE_GB -1: the share of the GPU's memory left free after the first step

Batch = Dict[str, object]
_T = TypeVar("_T")
_R = TypeVar("_R")


# -- decoded image cache -----------------------------------------------------------------------------------------
class ImageCache:
    """Every record decoded once into uint8 (N, 3, H, W): in RAM, in a memory-mapped file, and/or on the GPU."""

    def __init__(self, records: Sequence[ImageRecord], cfg: CfgNode, device: torch.device,
                 shared: bool = False) -> None:
        """``shared``: several processes use the cache (DDP): it is a memory-mapped file whatever its size, written
        by the first process (rank 0, see ``rank_zero_first``) and mapped by the others."""
        d = cfg.DATALOADER
        size = tuple(d.CACHE_SIZE or train_image_size(cfg))  # INPUT.CROP.RESIZE is [h, w] here (validated)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"DATALOADER.CACHE_SIZE must be [] or [height, width] of positive ints, got "
                              f"{list(d.CACHE_SIZE)}.")
        self.paths = [r.path for r in records]
        self.shape = (len(records), 3, *size)
        self.nbytes = int(np.prod(self.shape))
        self.resize = build_resize(cfg, size, train=True)
        self.threads = max(1, d.NUM_WORKERS)
        start = time.perf_counter()
        self.file: Optional[Path] = None
        if self.nbytes <= d.CACHE_RAM_GB * _GB and not shared:
            self.host, where = self._decode_into(np.empty(self.shape, dtype=np.uint8)), "RAM"
        else:
            folder = Path(d.CACHE_DIR or Path(cfg.OUTPUT_DIR) / "cache")
            self.file = folder / f"train-{self._key(train_interpolation(cfg))}.npy"
            self.host = self._memory_mapped(self.file)
            where = f"memory-mapped {folder}"
        self.device = device
        self.on_device: Optional[torch.Tensor] = None
        # CACHE_DEVICE_GB -1 on a GPU: decided after the first training step (place_after_first_step)
        self.pending = device.type == "cuda" and d.CACHE_DEVICE_GB < 0
        budget = device_cache_budget(d.CACHE_DEVICE_GB, device)
        if self.pending:
            where += f" (onto {device} after the first step if it fits)"
        elif self.nbytes <= budget:
            self._upload()
            where = f"{device} ({where} copy released)"
        elif device.type == "cuda":
            where += f" (over the {budget / _GB:.2f} GB allowed on {device} by DATALOADER.CACHE_DEVICE_GB)"
        logger.info("Image cache: %d training images at %dx%d, %.2f GB in %s (%.1f s)", len(records), *size,
                    self.nbytes / _GB, where, time.perf_counter() - start)

    def _decode_one(self, i: int, out: np.ndarray) -> None:
        out[i] = np.asarray(self.resize(read_image(self.paths[i]))).transpose(2, 0, 1)

    def _decode_into(self, out: np.ndarray) -> np.ndarray:
        """Decode with ``NUM_WORKERS`` threads (PIL releases the GIL while decoding and resizing)."""
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(lambda i: self._decode_one(i, out), range(len(self.paths))))  # re-raises decode errors
        return out

    def _key(self, interpolation: str) -> str:
        """Names the cache file after what determines its bytes: the files (path, size, mtime), size, filter."""
        h = hashlib.sha1(f"{_CACHE_VERSION} {self.shape} {interpolation}".encode())
        for p in self.paths:
            st = os.stat(p)
            h.update(f"\n{p} {st.st_size} {st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def _memory_mapped(self, path: Path) -> np.ndarray:
        """Reuse a complete cache file, or write one (to a temporary name, renamed when complete)."""
        if path.is_file():
            cached = np.load(path, mmap_mode="r")
            if cached.shape == self.shape and cached.dtype == np.uint8:
                logger.info("Reusing the image cache %s", path)
                return cached
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy.tmp", dir=path.parent)
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=self.shape)
            self._decode_into(out)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return np.load(path, mmap_mode="r")

    def _upload(self) -> None:
        self.on_device = self._to_device(self.device)
        self.host = None  # batches are gathered on the device; a memory-mapped file stays for later runs

    def place_after_first_step(self) -> bool:
        """CACHE_DEVICE_GB -1, once the first training step has allocated what training needs: move the cache to
        the GPU when it fits its free memory less ``AUTO_DEVICE_RESERVE``; an out-of-memory error while copying
        leaves it on the host. Returns whether it moved (False when nothing was pending)."""
        if not self.pending:
            return False
        self.pending = False
        free, total = torch.cuda.mem_get_info(self.device)
        budget = free - AUTO_DEVICE_RESERVE * total
        if self.nbytes > budget:
            logger.info("Image cache stays in host memory: %.2f GB, %.2f GB free on %s after the first step (%.0f%% "
                        "of the GPU kept free)", self.nbytes / _GB, free / _GB, self.device,
                        100 * AUTO_DEVICE_RESERVE)
            return False
        try:
            self._upload()
        except torch.OutOfMemoryError:
            self.on_device = None
            torch.cuda.empty_cache()
            logger.warning("Image cache stays in host memory: out of GPU memory while copying its %.2f GB to %s",
                           self.nbytes / _GB, self.device)
            return False
        logger.info("Image cache moved to %s after the first step (%.2f GB; %.2f GB were free)", self.device,
                    self.nbytes / _GB, free / _GB)
        return True

    def release_device(self) -> bool:
        """Move the cache back to host memory (after an out-of-memory error in training); returns whether there
        was a device copy to release."""
        if self.on_device is None:
            return False
        self.host = np.load(self.file, mmap_mode="r") if self.file is not None else self.on_device.cpu().numpy()
        self.on_device = None
        return True

    def _to_device(self, device: torch.device, chunk: int = 4096) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=torch.uint8, device=device)
        for s in range(0, self.shape[0], chunk):
            out[s:s + chunk].copy_(torch.from_numpy(np.array(self.host[s:s + chunk])))
        return out

    def gather_host(self, index: np.ndarray, pin: bool) -> torch.Tensor:
        """Images ``index`` from host memory (a copy; pinned for an asynchronous copy to the GPU)."""
        batch = torch.from_numpy(self.host[index])
        return batch.pin_memory() if pin else batch


def device_cache_budget(setting_gb: float, device: torch.device) -> float:
    """Bytes of ``device`` the decoded cache may take when it is built: ``DATALOADER.CACHE_DEVICE_GB``; 0 on a CPU
    and for -1 (decided after the first training step: ``ImageCache.place_after_first_step``)."""
    if device.type != "cuda" or setting_gb < 0:
        return 0.0
    return setting_gb * _GB


def _prefetched(fn: Callable[[_T], _R], items: Iterable[_T], depth: int) -> Iterator[_R]:
    """``map(fn, items)`` computed ``depth`` items ahead in a background thread."""
    with ThreadPoolExecutor(1) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# -- the pipeline ------------------------------------------------------------------------------------------------
class GpuTrainPipeline:
    """Iterable of training batches, a drop-in for the training loader it is built from: the same sampler (so the
    same batches of the same images), the same augmentation parameters, ``len``, ``set_epoch`` and batch dicts,
    with images on the device."""

    def __init__(self, loader: TrainLoader, cfg: CfgNode, device: torch.device, shared: bool = False) -> None:
        self.loader = loader
        self.sampler = loader.index_sampler
        self.batch_size = loader.batch_size
        self.records: List[ImageRecord] = loader.dataset.records
        self.device = device
        self.cache = ImageCache(self.records, cfg, device, shared)
        self.augmentation = loader.dataset.augmentation
        self.augmenter = Augmenter(self.augmentation, device)
        self.pids = torch.tensor([r.pid for r in self.records], dtype=torch.int64, device=device)
        self.camids = torch.tensor([r.camid for r in self.records], dtype=torch.int64, device=device)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def close(self) -> None:
        """Nothing to stop: no worker processes (decoding threads end with each epoch)."""

    def release_device_memory(self) -> bool:
        """Give the GPU memory of the cache back (the trainer calls this on an out-of-memory error in a training
        step, then retries the step once): batches are gathered from host memory from now on. Returns whether
        anything was released."""
        released = self.cache.release_device()
        if released:
            torch.cuda.empty_cache()
            logger.warning("Out of GPU memory in a training step: the image cache (%.2f GB) moves to host memory "
                           "for the rest of the run", self.cache.nbytes / _GB)
        return released

    def _plan(self) -> Tuple[List[np.ndarray], List[torch.Tensor], List[AugmentParams]]:
        """This epoch's batches: indices on the host, and indices and augmentation parameters on the device (each
        copied once per epoch: a copy per batch would synchronise with the GPU at every step)."""
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        host = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        sizes = [len(index) for index in host]
        drawn = [self.augmentation.draw(n, torch.Generator().manual_seed(self.loader.batch_seed(b)))
                 for b, n in enumerate(sizes)]

        def on_device(field: str) -> Sequence[torch.Tensor]:
            return torch.cat([getattr(p, field) for p in drawn]).to(self.device).split(sizes)

        params = [AugmentParams(flip, crop, erase, p.noise_seed, resized_crop=p.resized_crop)
                  for flip, crop, erase, p in zip(on_device("flip"), on_device("crop"), on_device("erase"), drawn)]
        return host, list(torch.from_numpy(order).to(self.device).split(sizes)), params

    def _uint8_batches(self, host: List[np.ndarray], device: List[torch.Tensor]) -> Iterator[torch.Tensor]:
        """uint8 batches on the device: gathered there, or gathered in host memory two batches ahead in a thread
        (into pinned memory for a GPU, then copied asynchronously). A cache that waits for the first step (and a
        device copy released after an out-of-memory error) changes where the next batch comes from."""
        done = 0
        while done < len(host):
            if self.cache.on_device is not None:
                yield self.cache.on_device.index_select(0, device[done])
                done += 1
                continue
            pin = self.device.type == "cuda"
            gathered = _prefetched(lambda index: self.cache.gather_host(index, pin), host[done:], depth=2)
            try:
                for batch in gathered:
                    yield batch.to(self.device, non_blocking=True)
                    done += 1  # the step on that batch has run when the next one is asked for
                    if self.cache.place_after_first_step():
                        break
            finally:
                gathered.close()

    def __iter__(self) -> Iterator[Batch]:
        # The parameters of batch b depend on (SEED, rank, epoch, b) only, as the workers path's do: a run resumed
        # at epoch e augments exactly as an uninterrupted one, with no state to store.
        host, device, params = self._plan()
        for index, idx, p, images in zip(host, device, params, self._uint8_batches(host, device)):
            yield {"images": self.augmenter.batch(images, p), "pids": self.pids[idx], "camids": self.camids[idx],
                   "paths": [self.records[i].path for i in index]}


@PIPELINE_REGISTRY.register("gpu")
def build_gpu_train_loader(cfg: CfgNode, device: torch.device, rank: int = 0,
                           world_size: int = 1) -> Tuple[GpuTrainPipeline, ReIDDataset]:
    """The fast pipeline over exactly the data of ``build_train_loader``: its records, its sampler (so both
    pipelines yield the same batches of the same images) and its per-rank, per-epoch seeds. The test sets are the
    trainer's to build and check, as with the workers pipeline."""
    loader, dataset = build_train_loader(cfg, rank, world_size, check_tests=False)
    if dataset.is_video:
        raise ConfigError(f"DATALOADER.PIPELINE gpu caches one image per record; {dataset.name} is a video set "
                          f"(tracklets of frames): train it with DATALOADER.PIPELINE workers.")
    return GpuTrainPipeline(loader, cfg, device, shared=world_size > 1), dataset
