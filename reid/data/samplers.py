"""Training samplers: P x K identity batches (reid's and fast-reid's) and a plain shuffle, all deterministic per
(seed, epoch) and DDP-aware.

Each builds the whole epoch's batch plan up front, so ``__len__`` is exact and ranks can take disjoint batches:
rank r gets batches r, r + W, r + 2W, ... of one shared plan, padded by wrapping around so every rank yields the
same number of batches (a rank running out early would hang the others in a collective).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler

from ..registry import SAMPLER_REGISTRY
from ..utils.errors import ConfigError

Batch = List[int]


class _PlannedSampler(Sampler[int]):
    """Yields the indices of this rank's batches of an epoch plan; subclasses say how to plan an epoch."""

    def __init__(self, batch_size: int, seed: int, rank: int, world_size: int) -> None:
        if batch_size <= 0:
            raise ConfigError(f"The per-rank batch size must be positive, got {batch_size}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"Invalid DDP rank {rank} of world size {world_size}.")
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._cache: Optional[Tuple[int, List[Batch]]] = None

    def set_epoch(self, epoch: int) -> None:
        """Like DistributedSampler.set_epoch: call before iterating so every epoch (and rank) differs."""
        self.epoch = epoch

    def _plan(self, rng: np.random.Generator) -> List[Batch]:
        raise NotImplementedError

    def _epoch_plan(self) -> List[Batch]:
        """The batches of ``self.epoch``, over all ranks."""
        return self._plan(np.random.default_rng([self.seed, self.epoch]))

    def _rank_batches(self) -> List[Batch]:
        if self._cache is None or self._cache[0] != self.epoch:
            plan = self._epoch_plan()
            per_rank = -(-len(plan) // self.world_size)  # ceil: pad by wrapping around
            mine = [plan[(self.rank + i * self.world_size) % len(plan)] for i in range(per_rank)] if plan else []
            self._cache = (self.epoch, mine)
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        for batch in self._rank_batches():
            yield from batch

    def __len__(self) -> int:
        return sum(len(b) for b in self._rank_batches())


def _index_by_pid(pids: Sequence[int]) -> Dict[int, List[int]]:
    """{pid: its record indices}, in sorted pid order."""
    index: Dict[int, List[int]] = defaultdict(list)
    for i, pid in enumerate(pids):
        index[int(pid)].append(i)
    return dict(sorted(index.items()))


def _check_pk(batch_size: int, num_instances: int, num_pids: int) -> int:
    """P, the identities of a batch; ConfigError unless the batch is P x K with P identities available."""
    if num_instances <= 0 or batch_size % num_instances:
        raise ConfigError(f"The batch size ({batch_size}) must be a positive multiple of "
                          f"DATALOADER.NUM_INSTANCE ({num_instances}) for P x K identity batches.")
    p = batch_size // num_instances
    if num_pids < p:
        raise ConfigError(f"A batch needs {p} distinct identities (batch size {batch_size} / NUM_INSTANCE "
                          f"{num_instances}) but the training set has only {num_pids}; lower SOLVER.IMS_PER_BATCH or "
                          f"raise DATALOADER.NUM_INSTANCE.")
    return p


class _PKSampler(_PlannedSampler):
    """Base of the P x K samplers: ``index`` ({pid: record indices}), K = ``num_instances``, P =
    ``num_pids_per_batch``."""

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__(batch_size, seed, rank, world_size)
        self.num_instances = num_instances
        self.index = _index_by_pid(pids)
        self.num_pids_per_batch = _check_pk(batch_size, num_instances, len(self.index))


class IdentitySampler(_PKSampler):
    """P x K batches: ``batch_size / num_instances`` distinct identities with ``num_instances`` images each.

    Per epoch every identity's images are shuffled and cut into groups of K (the last group, and identities with
    fewer than K images, completed by drawing with replacement), so every identity and nearly every image is seen
    once. Groups are dealt into batches of P distinct identities; only groups left when fewer than P identities
    still have some are dropped.
    """

    def _groups(self, rng: np.random.Generator) -> Dict[int, List[Batch]]:
        """Each identity's images in shuffled groups of K."""
        k = self.num_instances
        groups = {}
        for pid, idxs in self.index.items():
            order = rng.permutation(idxs).tolist()
            short = -len(order) % k
            if short:
                order += rng.choice(idxs, size=short, replace=True).tolist()
            groups[pid] = [order[i:i + k] for i in range(0, len(order), k)]
        return groups

    def _plan(self, rng: np.random.Generator) -> List[Batch]:
        """Deal groups into batches, each round from the P identities with the most groups left (random among
        ties), which uses the most groups possible; the batch order is then shuffled."""
        groups = self._groups(rng)
        pids = list(groups)
        left = np.array([len(groups[pid]) for pid in pids], dtype=np.float64)
        p = self.num_pids_per_batch
        batches = []
        while np.count_nonzero(left) >= p:
            chosen = np.argpartition(-(left + 0.5 * rng.random(len(left))), p - 1)[:p]
            batches.append([i for c in chosen for i in groups[pids[c]][int(left[c]) - 1]])
            left[chosen] -= 1
        return [batches[i] for i in rng.permutation(len(batches))]


class RoundIdentitySampler(_PKSampler):
    """fast-reid's ``NaiveIdentitySampler`` (``DATALOADER.SAMPLER naive_identity``): P x K batches drawn in rounds.

    A round starts with every identity available and each identity's images shuffled (an identity with fewer than
    K images: K drawn with replacement, then shuffled); each batch takes P available identities uniformly at random
    and the next K of each one's images; an identity with fewer than K images left leaves the round (its remainder
    is not used); the round ends when fewer than P identities are available. The rounds form one endless stream,
    and an epoch is the next ``len(pids) // (batch_size x world_size)`` batches of every rank (fast-reid's epoch:
    images // SOLVER.IMS_PER_BATCH iterations, rounds running across epoch ends). Round r is drawn from
    (seed, r) alone, so the batches of epoch e are a function of (seed, e) and resuming is exact.
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__(pids, batch_size, num_instances, seed, rank, world_size)
        self.batches_per_epoch = len(pids) // (batch_size * world_size) * world_size  # over all ranks
        if not self.batches_per_epoch:
            raise ConfigError(f"The training set has {len(pids)} images, fewer than one batch of "
                              f"{batch_size * world_size}; lower SOLVER.IMS_PER_BATCH.")
        self._rounds: List[List[Batch]] = []  # the stream's rounds from the one holding the current epoch's start
        self._offset = 0  # stream batches before self._rounds[0]
        self._next_round = 0  # index of the next round to draw

    def _round(self, rng: np.random.Generator) -> List[Batch]:
        k, p = self.num_instances, self.num_pids_per_batch
        available = list(self.index)
        left: Dict[int, List[int]] = {}
        batches = []
        while len(available) >= p:
            batch = []
            for pid in rng.choice(available, size=p, replace=False).tolist():
                if pid not in left:
                    idxs = self.index[pid]
                    drawn = rng.choice(idxs, size=k, replace=True) if len(idxs) < k else np.asarray(idxs)
                    left[pid] = rng.permutation(drawn).tolist()
                batch += left[pid][:k]
                del left[pid][:k]
                if len(left[pid]) < k:
                    available.remove(pid)
            batches.append(batch)
        return batches

    def _epoch_plan(self) -> List[Batch]:
        start, stop = self.epoch * self.batches_per_epoch, (self.epoch + 1) * self.batches_per_epoch
        if start < self._offset:  # an earlier epoch than the rounds kept: draw the stream again
            self._rounds, self._offset, self._next_round = [], 0, 0
        while self._offset + sum(map(len, self._rounds)) < stop:
            self._rounds.append(self._round(np.random.default_rng([self.seed, self._next_round])))
            self._next_round += 1
        while len(self._rounds[0]) + self._offset <= start:  # rounds wholly before this epoch are not kept
            self._offset += len(self._rounds.pop(0))
        stream = [b for r in self._rounds for b in r]
        return stream[start - self._offset:stop - self._offset]


class ShuffleSampler(_PlannedSampler):
    """A seeded shuffle of all indices cut into full batches (``DATALOADER.SAMPLER random``), DDP-aware like the
    identity sampler (unlike torch's RandomSampler)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(batch_size, seed, rank, world_size)
        if num_samples < batch_size:
            raise ConfigError(f"The training set has {num_samples} images, fewer than one batch of {batch_size}; "
                              f"lower SOLVER.IMS_PER_BATCH.")
        self.num_samples = num_samples

    def _plan(self, rng: np.random.Generator) -> List[Batch]:
        order = rng.permutation(self.num_samples).tolist()
        full = len(order) - len(order) % self.batch_size
        return [order[i:i + self.batch_size] for i in range(0, full, self.batch_size)]


@SAMPLER_REGISTRY.register("identity")
def identity_sampler(pids: Sequence[int], batch_size: int, cfg, seed: int, rank: int,
                     world_size: int) -> IdentitySampler:
    """``DATALOADER.SAMPLER identity``: P x K batches with K = ``DATALOADER.NUM_INSTANCE``."""
    return IdentitySampler(pids, batch_size, cfg.DATALOADER.NUM_INSTANCE, seed, rank, world_size)


@SAMPLER_REGISTRY.register("naive_identity")
def naive_identity_sampler(pids: Sequence[int], batch_size: int, cfg, seed: int, rank: int,
                           world_size: int) -> RoundIdentitySampler:
    """``DATALOADER.SAMPLER naive_identity``: fast-reid's P x K sampler (NaiveIdentitySampler)."""
    return RoundIdentitySampler(pids, batch_size, cfg.DATALOADER.NUM_INSTANCE, seed, rank, world_size)


@SAMPLER_REGISTRY.register("random")
def random_sampler(pids: Sequence[int], batch_size: int, cfg, seed: int, rank: int, world_size: int) -> ShuffleSampler:
    """``DATALOADER.SAMPLER random``: a plain shuffle of the training images."""
    return ShuffleSampler(len(pids), batch_size, seed, rank, world_size)
