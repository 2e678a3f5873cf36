"""Video re-ID input: which frames of a tracklet are read, training batches of tracklets, and the test input that
feeds a model every chosen frame of every tracklet in chunks.

- Training: each tracklet of a P x K batch (P identities x K tracklets, the usual identity sampler over tracklet
  records) gives ``DATALOADER.SEQ_LEN`` frames chosen by ``DATALOADER.SEQ_SAMPLE`` (:data:`FRAME_SAMPLING`); the
  batch's ``images`` are (B, SEQ_LEN, 3, H, W). All frames of a tracklet share one draw of the augmentation (the
  same flip, crop and erased rectangle), so a tracklet stays one coherent clip; torchreid augments each frame on
  its own.
- Testing: :class:`TrackletFrames` lists every frame of every tracklet (``TEST.SEQ_LEN`` 0), or that many frames
  evenly spaced, one item per frame; a loader of it yields ``TEST.IMS_PER_BATCH`` frames at a time, with each
  frame's tracklet index (``tracklets``), so a long tracklet spans several batches and short ones share one. The
  embeddings are pooled per tracklet by ``reid.evaluation.extract``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from ..registry import FRAME_SAMPLING_REGISTRY
from .augment import AugmentParams, Augmenter, TrainAugmentation
from .datasets.base import TrackletRecord
from .io import read_image

# (number of frames n >= 1, frames wanted L >= 1, generator) -> L frame indices in 0..n-1, in temporal order.
FrameSampler = Callable[[int, int, np.random.Generator], np.ndarray]


@FRAME_SAMPLING_REGISTRY.register("evenly")
def evenly(n: int, length: int, rng: np.random.Generator = None) -> np.ndarray:
    """torchreid's ``evenly``: the first of every ``n // L`` frames over the first ``n - n % L``; a tracklet shorter
    than L is padded with its last frame. Deterministic (the same frames every epoch)."""
    if n >= length:
        return np.arange(0, n - n % length, (n - n % length) // length)
    return np.concatenate([np.arange(n), np.full(length - n, n - 1)])


@FRAME_SAMPLING_REGISTRY.register("random")
def random_frames(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """torchreid's ``random``: L frames drawn without replacement (with replacement when the tracklet is shorter),
    in temporal order."""
    return np.sort(rng.choice(n, size=length, replace=n < length))


@FRAME_SAMPLING_REGISTRY.register("chunks")
def chunk_frames(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Restricted random sampling (Li et al., CVPR 2018): the tracklet cut into L equal chunks, one random frame of
    each, so a clip spans the whole tracklet and differs every epoch; a chunk of a short tracklet holds one frame."""
    lo = np.arange(length) * n // length
    hi = np.maximum((np.arange(length) + 1) * n // length, lo + 1)
    return lo + (rng.random(length) * (hi - lo)).astype(np.int64)


def eval_frames(record: TrackletRecord, length: int) -> Tuple[str, ...]:
    """The frames a tracklet is embedded from at test time: all of them (``TEST.SEQ_LEN`` 0, or a tracklet of at
    most ``length`` frames), else ``length`` evenly spaced (:func:`evenly`, as torchreid's test sampler; torchreid
    also pads a short tracklet with its last frame, which would weigh that frame more in the average)."""
    if length <= 0 or len(record.paths) <= length:
        return record.paths
    return tuple(record.paths[i] for i in evenly(len(record.paths), length))


def frames_of(record) -> Tuple[str, ...]:
    """Every file a record is read from: a tracklet's frames, an image's path."""
    return record.paths if isinstance(record, TrackletRecord) else (record.path,)


def batch_seed(keys: Sequence[Tuple[int, int]]) -> int:
    """The one augmentation seed of a training batch's ``(seed, index)`` keys (``SeededIndices``)."""
    seeds = {seed for seed, _ in keys}
    if len(seeds) != 1:
        raise RuntimeError(f"A training batch must come from one SeededIndices batch; got {len(seeds)} seeds.")
    return seeds.pop()


class TrainTracklets(Dataset):
    """Training tracklets -> batches of clips, a batch at a time (``__getitems__`` with ``SeededIndices`` keys, as
    ``TrainImages``): the frames of each tracklet are chosen by ``sample`` and every random choice of the batch
    comes from its seed, so the batch is the same whichever process loads it."""

    def __init__(self, records: Sequence[TrackletRecord], resize: Callable, augmentation: TrainAugmentation,
                 seq_len: int, sample: FrameSampler) -> None:
        self.records = list(records)
        self.resize = resize
        self.augmentation = augmentation
        self.augmenter = Augmenter(augmentation)
        self.seq_len = seq_len
        self.sample = sample

    def __len__(self) -> int:
        return len(self.records)

    def __getitems__(self, keys: Sequence[Tuple[int, int]]) -> Dict[str, object]:
        seed = batch_seed(keys)
        records = [self.records[index] for _, index in keys]
        rng = np.random.default_rng([seed, 1])  # frame choice, apart from the augmentation's generator
        frames = [r.paths[i] for r in records for i in self.sample(len(r.paths), self.seq_len, rng)]
        params = self.augmentation.draw(len(records), torch.Generator().manual_seed(seed))
        per_frame = AugmentParams(params.flip.repeat_interleave(self.seq_len),
                                  params.crop.repeat_interleave(self.seq_len, 0),
                                  params.erase.repeat_interleave(self.seq_len, 0), params.noise_seed,
                                  None if params.autoaug is None else params.autoaug.repeat_interleave(self.seq_len, 0))
        images = [pil_to_tensor(self.resize(self.augmentation.before_resize(read_image(path), per_frame, i)))
                  for i, path in enumerate(frames)]
        clips = self.augmenter.images(images, per_frame)
        return {"images": clips.view(len(records), self.seq_len, *clips.shape[1:]),
                "pids": torch.tensor([r.pid for r in records], dtype=torch.int64),
                "camids": torch.tensor([r.camid for r in records], dtype=torch.int64),
                "paths": [r.path for r in records]}


class TrackletFrames(Dataset):
    """Test input of tracklets: one item per chosen frame (:func:`eval_frames`), tracklet after tracklet, each
    with the index of its tracklet in ``records`` (``tracklets``) and the tracklet's pid and camera."""

    def __init__(self, records: Sequence[TrackletRecord], transform: Callable, seq_len: int) -> None:
        self.records = list(records)
        self.transform = transform
        self.seq_len = seq_len
        self.frames: List[Tuple[int, str]] = [(t, path) for t, r in enumerate(self.records)
                                              for path in eval_frames(r, seq_len)]

    @property
    def num_tracklets(self) -> int:
        return len(self.records)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Dict[str, object]:
        t, path = self.frames[index]
        r = self.records[t]
        return {"images": self.transform(read_image(path)), "tracklets": t, "pids": r.pid, "camids": r.camid,
                "paths": path}

    def subset(self, indices: Sequence[int]) -> "TrackletFrames":
        """The frames of the tracklets ``indices`` only (tracklet i of the subset is ``records[indices[i]]``)."""
        return TrackletFrames([self.records[i] for i in indices], self.transform, self.seq_len)
