"""Several training processes with torchrun (DistributedDataParallel): joining the process group and devices.

    torchrun --nproc_per_node 8 tools/train.py --config CONFIG                     # one machine, 8 GPUs
    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 tools/train.py --config CONFIG               # on each of two machines

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``distributed()`` joins the process group
they describe (NCCL for CUDA devices, gloo for the CPU; ``REID_DIST_BACKEND`` overrides it). Without them (plain
``python``) it is a no-op, and the collectives of ``reid.utils.distributed`` are the single-process identity, so
the engine calls them unconditionally.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..utils.distributed import dist_info, local_rank
from ..utils.env import resolve_device
from ..utils.errors import ConfigError

# Rank 0 alone evaluates and writes checkpoints while the others wait in a collective; NCCL's default 10 minutes
# can be too short for a large test set with re-ranking.
TIMEOUT = timedelta(minutes=60)
# The backend, when not NCCL for GPUs / gloo for the CPU: "gloo" runs several processes on one GPU (NCCL refuses two
# ranks on one device: "Duplicate GPU detected"), as the GPU tests do on a one-GPU machine.
BACKEND_VARIABLE = "REID_DIST_BACKEND"


@contextmanager
def distributed(device: str) -> Iterator[None]:
    """Join the process group of torchrun's environment for the block (``device`` = MODEL.DEVICE picks the
    backend); a no-op for a single process or when a group already exists."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank())
    backend = os.environ.get(BACKEND_VARIABLE) or ("nccl" if cuda else "gloo")
    dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def process_device(name: str) -> torch.device:
    """MODEL.DEVICE of this process: under DDP any CUDA device means the GPU of LOCAL_RANK."""
    device = resolve_device(name)
    if device.type == "cuda" and dist_info()[1] > 1:
        return torch.device("cuda", local_rank())
    return device


def to_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """SyncBatchNorm for MODEL.SYNC_BN under DDP; PyTorch implements it for CUDA only."""
    if device.type != "cuda":
        raise ConfigError(f"MODEL.SYNC_BN needs CUDA devices (PyTorch's SyncBatchNorm), but training runs on "
                          f"{device}; set MODEL.SYNC_BN False.")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
