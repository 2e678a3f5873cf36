"""Collectives of a torchrun process group, each the single-process identity without one.

Everything below the engine (evaluation on several GPUs, data generation by rank 0) needs these; joining or
leaving the group is the engine's (``reid.engine.launch``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .errors import ReIDError

_MAX_DIMS = 8  # the shapes all_gather_with_grad compares, padded to a fixed length


def dist_info() -> Tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank() -> int:
    """The GPU index of this process on its machine (torchrun's LOCAL_RANK)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Rank 0 runs the block before the others do, so that what it creates on disk (a generated dataset, an
    image cache file) is made once and found by the rest."""
    rank, world = dist_info()
    if world > 1 and rank > 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for small things such as a metrics dict or a seed)."""
    if dist_info()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shared_seed(seed: int) -> int:
    """``SEED``, or for a negative SEED one fresh seed drawn by rank 0 and used by every rank (the sampler's batch
    plan must be the same on all ranks for their batches to be disjoint)."""
    if seed >= 0:
        return seed
    return broadcast_object(int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF)


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BN running statistics: they drift apart per rank) to all ranks, so that every
    rank embeds with the model rank 0 saves."""
    if dist_info()[1] == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=0)


def shard_bounds(total: int, rank: int, world: int) -> Tuple[int, int]:
    """[start, stop) of ``rank``'s contiguous share of ``total`` items (sizes differ by at most one)."""
    return rank * total // world, (rank + 1) * total // world


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over all ranks, in place (returned for convenience); unchanged without a process group."""
    if dist_info()[1] > 1:
        dist.all_reduce(tensor)
    return tensor


class _AllGatherWithGrad(torch.autograd.Function):
    """``all_gather`` of equally shaped tensors, concatenated in rank order, whose backward hands each rank the
    gradient of its own rows summed over all ranks.

    Every rank computes the same loss ``L`` on the gathered rows, so the gradient of rank r's rows is the sum of
    what every rank's copy of ``L`` sends them, i.e. ``W * dL/dx_r``; DistributedDataParallel's average over the W
    ranks then gives every parameter exactly ``dL/dtheta``, the single-process gradient on the whole batch (the
    all-gather of SimCLR-style contrastive training). fast-reid's ``GatherLayer`` (from OpenSelfSup; disabled in
    its triplet loss) returns only the rank's own copy's gradient, so DDP's average is 1/W of this one.
    """

    @staticmethod
    def forward(ctx, part: torch.Tensor) -> torch.Tensor:
        rank, world = dist_info()
        part = part.contiguous()
        pieces = [torch.empty_like(part) for _ in range(world)]
        dist.all_gather(pieces, part)
        ctx.rows = (rank * part.shape[0], (rank + 1) * part.shape[0])
        return torch.cat(pieces)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()  # reduced in place: never the caller's buffer
        dist.all_reduce(grad)
        lo, hi = ctx.rows
        return grad[lo:hi]


@lru_cache(maxsize=1)
def _host_group(world_group: Any) -> Any:
    """A process group for small host-side collectives over the ranks of ``world_group`` (the default group):
    itself when it is gloo, else a gloo group made once (collectively: every rank reaches the first call at the
    same step). Its collectives read CPU tensors: no wait for the GPU's queued work."""
    if dist.get_backend(world_group) == "gloo":
        return world_group
    return dist.new_group(backend="gloo")


def check_same_shape(part: torch.Tensor, what: str = "all_gather_with_grad") -> None:
    """Raise a ReIDError on every rank, naming each rank's shape, unless ``part`` has the same shape on all ranks.

    The shapes travel as CPU tensors through a gloo group (``_host_group``), so the check never synchronises with
    a GPU; without it, gloo kills the process with SIGABRT ("Received data size doesn't match") and NCCL hangs or
    reads garbage."""
    _, world = dist_info()
    if world == 1:
        return
    if part.dim() > _MAX_DIMS:
        raise ReIDError(f"{what}: tensors of at most {_MAX_DIMS} dimensions, got {part.dim()}.")
    mine = torch.full((_MAX_DIMS + 1,), -1, dtype=torch.int64)
    mine[0] = part.dim()
    mine[1:part.dim() + 1] = torch.tensor(part.shape, dtype=torch.int64)
    shapes = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(shapes, mine, group=_host_group(dist.group.WORLD))
    described = [tuple(s[1:int(s[0]) + 1].tolist()) for s in shapes]
    if len(set(described)) > 1:
        sizes = ", ".join(f"rank {r}: {tuple(shape)}" for r, shape in enumerate(described))
        raise ReIDError(f"{what} needs the same shape on every rank, got {sizes}. Every rank must give the same "
                        "number of rows (e.g. equal per-GPU batches: SOLVER.IMS_PER_BATCH divisible by the number "
                        "of GPUs, and no smaller last batch).")


def all_gather_with_grad(part: torch.Tensor) -> torch.Tensor:
    """Every rank's ``part`` (the same shape on all ranks, e.g. a batch of embeddings) concatenated in rank order,
    differentiable (see :class:`_AllGatherWithGrad`); ``part`` itself without a process group. Unequal shapes are a
    ReIDError on every rank that names them (:func:`check_same_shape`)."""
    if dist_info()[1] == 1:
        return part
    check_same_shape(part)
    return _AllGatherWithGrad.apply(part)


def all_gather_rows(part: torch.Tensor, total: int) -> torch.Tensor:
    """Every rank's ``part`` (its ``shard_bounds`` rows of a ``total``-row tensor) concatenated in rank order."""
    world = dist_info()[1]
    if world == 1:
        return part
    most = -(-total // world)
    padded = part.new_zeros((most, *part.shape[1:]))
    padded[:len(part)] = part
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded)
    sizes = [hi - lo for lo, hi in (shard_bounds(total, r, world) for r in range(world))]
    return torch.cat([p[:n] for p, n in zip(pieces, sizes)])
