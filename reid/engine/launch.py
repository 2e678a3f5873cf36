"""Several training processes with torchrun (DistributedDataParallel): process group, devices and collectives.

    torchrun --nproc_per_node 8 tools/train.py --config CONFIG                     # one machine, 8 GPUs
    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 tools/train.py --config CONFIG               # on each of two machines

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``distributed()`` joins the process group
they describe (NCCL for CUDA devices, gloo for the CPU). Without them (plain ``python``) every helper here is the
single-process identity, so the engine calls them unconditionally.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator, Tuple

import torch
import torch.distributed as dist
from torch import nn

from ..utils.env import resolve_device
from ..utils.errors import ConfigError

# Rank 0 alone evaluates and writes checkpoints while the others wait in a collective; NCCL's default 10 minutes
# can be too short for a large test set with re-ranking.
TIMEOUT = timedelta(minutes=60)


def dist_info() -> Tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


@contextmanager
def distributed(device: str) -> Iterator[None]:
    """Join the process group of torchrun's environment for the block (``device`` = MODEL.DEVICE picks the
    backend); a no-op for a single process or when a group already exists."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(_local_rank())
    dist.init_process_group("nccl" if cuda else "gloo", init_method="env://", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def process_device(name: str) -> torch.device:
    """MODEL.DEVICE of this process: under DDP any CUDA device means the GPU of LOCAL_RANK."""
    device = resolve_device(name)
    if device.type == "cuda" and dist_info()[1] > 1:
        return torch.device("cuda", _local_rank())
    return device


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


def to_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """SyncBatchNorm for MODEL.SYNC_BN under DDP; PyTorch implements it for CUDA only."""
    if device.type != "cuda":
        raise ConfigError(f"MODEL.SYNC_BN needs CUDA devices (PyTorch's SyncBatchNorm), but training runs on "
                          f"{device}; set MODEL.SYNC_BN False.")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


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
