"""Query x gallery distances computed block by block on the features' device.

Nothing of size query x gallery is built on the host: `iter_distance_blocks` lets the evaluator consume one block
of query rows at a time, and `compute_distance` assembles the whole matrix on the features' own device. Matrix
products run in full float32 even where TF32 or bf16 is switched on for training, so rankings do not depend on it.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from reid.registry import METRIC_REGISTRY
from reid.utils.errors import ReIDError
from reid.utils.precision import ieee_matmul

# TEST.METRIC choices, with what each computes (the block code below implements them).
METRIC_REGISTRY.register("cosine", "1 - cosine similarity of L2-normalised features")
METRIC_REGISTRY.register("euclidean", "Euclidean distance |q - g| (not squared)")

# Elements per work block: 2^23 float32 = 32 MiB on the CPU; a GPU gets larger blocks (fewer launches).
BLOCK_ELEMS = {"cpu": 1 << 23, "cuda": 1 << 26}
# Query x gallery distance blocks are larger on the CPU: each block's matrix product streams all the gallery
# features from memory once, so several hundred query rows per block keep it compute-bound (256 MiB blocks: MKL's
# sgemm runs about 10 % faster with 800 rows than with 400 against MSMT17's 82,161 gallery features).
DISTANCE_ELEMS = {"cpu": 1 << 26, "cuda": 1 << 26}


class EvaluationError(ReIDError):
    """Inputs the evaluator cannot use: wrong shapes, an unknown metric, no query with a true match."""


def block_rows(num_cols: int, device: torch.device, chunk_size: int | None = None,
               budgets: dict[str, int] = BLOCK_ELEMS) -> int:
    """Rows per block so that a block of `num_cols` columns stays within the device's element budget."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise EvaluationError(f"chunk_size must be a positive number of rows, got {chunk_size}.")
        return chunk_size
    return max(1, budgets.get(device.type, budgets["cpu"]) // max(1, num_cols))


def as_features(feats: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """A 2-D floating tensor (float32 unless it is float64) on the input's device; NumPy arrays are wrapped."""
    if isinstance(feats, np.ndarray):
        feats = torch.from_numpy(feats)
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
        shape = tuple(feats.shape) if hasattr(feats, "shape") else type(feats).__name__
        raise EvaluationError(f"{name} must be a 2-D (num_samples, dim) tensor or array, got {shape}.")
    if feats.dtype != torch.float64:
        feats = feats.float()
    return feats


def check_pair(q_feats: torch.Tensor, g_feats: torch.Tensor) -> None:
    if q_feats.shape[1] != g_feats.shape[1]:
        raise EvaluationError(
            f"query and gallery features differ in dimension ({q_feats.shape[1]} vs {g_feats.shape[1]}); "
            "extract both with the same model."
        )
    if q_feats.device != g_feats.device:
        raise EvaluationError(
            f"query features are on {q_feats.device} but gallery features on {g_feats.device}; "
            "move both to one device."
        )
    if q_feats.dtype != g_feats.dtype:
        raise EvaluationError(f"query features are {q_feats.dtype} but gallery features {g_feats.dtype}.")


def check_finite(feats: torch.Tensor, name: str) -> None:
    """Raise an EvaluationError naming the first rows of ``feats`` with NaN or infinite values (cheaply: a sum is
    finite when every value is, the rows are looked for only when it is not)."""
    if bool(torch.isfinite(feats.sum())):
        return
    bad = (~torch.isfinite(feats)).any(1).nonzero().squeeze(1)
    if bad.numel():
        rows = ", ".join(str(int(r)) for r in bad[:5]) + (" ..." if bad.numel() > 5 else "")
        raise EvaluationError(f"{name} has NaN or infinite values in {bad.numel()} row(s) ({rows}); check the "
                              "model's outputs (a diverged model or bad input images).")


def check_metric(metric: str) -> None:
    if metric not in METRIC_REGISTRY:
        raise EvaluationError(f"unknown distance metric {metric!r}; expected one of {METRIC_REGISTRY.choices()}.")


def exact_mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """`a @ b` in full float32 even where TF32 (GPUs) or bf16 (oneDNN CPUs) was switched on for training: it would
    change rankings. Thread-safe; see `reid.utils.precision.ieee_matmul`."""
    with ieee_matmul(a.device):
        return torch.mm(a, b, out=out)


def exact_addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float, out: torch.Tensor) -> torch.Tensor:
    """`out = c + alpha * (a @ b)` (``c`` broadcast) in one matrix product, in full float32 as :func:`exact_mm`:
    the product accumulates onto ``c``, one pass over ``out`` fewer than adding afterwards."""
    with ieee_matmul(a.device):
        return torch.addmm(c.expand(out.shape), a, b, beta=1.0, alpha=alpha, out=out)


def as_distmat(distmat: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A (num_query, num_gallery) distance matrix as a tensor on its device (NumPy arrays are wrapped)."""
    if isinstance(distmat, np.ndarray):
        distmat = torch.from_numpy(distmat)
    if not isinstance(distmat, torch.Tensor) or distmat.dim() != 2:
        raise EvaluationError("distmat must be a 2-D (num_query, num_gallery) tensor or array.")
    return distmat


def as_distances(block: torch.Tensor) -> torch.Tensor:
    """A block of distances in float32 or float64 (other dtypes are widened to float64), to compare and sort."""
    return block if block.dtype in (torch.float32, torch.float64) else block.to(torch.float64)


def row_blocks(distmat: torch.Tensor, chunk_size: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first_query_row, block)`` views of consecutive rows of a given distance matrix, as
    :func:`iter_distance_blocks` yields them from features (``chunk_size`` rows, default: the element budget)."""
    rows = block_rows(distmat.shape[1], distmat.device, chunk_size)
    for start in range(0, distmat.shape[0], rows):
        yield start, distmat[start : start + rows]


def _prepare(
    q_feats: torch.Tensor | np.ndarray, g_feats: torch.Tensor | np.ndarray, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    check_metric(metric)
    same = g_feats is q_feats  # the query is the gallery (leave-one-out): prepared once, for both sides
    q_feats = as_features(q_feats, "q_feats")
    g_feats = q_feats if same else as_features(g_feats, "g_feats")
    check_pair(q_feats, g_feats)
    if metric != "cosine":
        return q_feats, g_feats
    q = F.normalize(q_feats, dim=1)
    return q, q if same else F.normalize(g_feats, dim=1)


def _blocks(
    q: torch.Tensor, g: torch.Tensor, metric: str, chunk_size: int | None, out: torch.Tensor | None = None,
    reuse: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Distances of consecutive query rows to all of `g` (prepared features): written into `out` when given, else
    into one buffer used again for every block (`reuse`: no fresh memory, and no page faults, per block) or into
    a new tensor per block."""
    rows = block_rows(g.shape[0], q.device, chunk_size, DISTANCE_ELEMS)
    # cosine: 1 - q.g; euclidean: sqrt(max(0, |g|^2 - 2 q.g + |q|^2)), the products accumulated onto 1 or |g|^2
    base = g.pow(2).sum(1) if metric == "euclidean" else torch.ones((), dtype=q.dtype, device=q.device)
    alpha = -2.0 if metric == "euclidean" else -1.0
    buffer = None
    for start in range(0, q.shape[0], rows):
        q_rows = q[start : start + rows]
        if out is not None:
            block = out[start : start + rows]
        elif reuse:
            if buffer is None:
                buffer = torch.empty(q_rows.shape[0], g.shape[0], dtype=q.dtype, device=q.device)
            block = buffer[: q_rows.shape[0]]
        else:
            block = torch.empty(q_rows.shape[0], g.shape[0], dtype=q.dtype, device=q.device)
        exact_addmm(base, q_rows, g.T, alpha, out=block)
        if metric == "euclidean":
            block.add_(q_rows.pow(2).sum(1, keepdim=True)).clamp_(min=0.0).sqrt_()
        yield start, block


def iter_distance_blocks(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    metric: str = "cosine",
    chunk_size: int | None = None,
    *,
    reuse: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield `(first_query_row, block)` with `block` = distances of consecutive query rows to the whole gallery.

    cosine: 1 - <q/|q|, g/|g|>; euclidean: |q - g| (not squared). Memory: one block at a time. With `reuse`, every
    block is written into the same buffer: a block is valid until the next one is asked for (copy what you keep).
    """
    q, g = _prepare(q_feats, g_feats, metric)  # checked here, not at the first block
    return _blocks(q, g, metric, chunk_size, reuse=reuse)


def compute_distance(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    metric: str = "cosine",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The (num_query, num_gallery) distance matrix on the features' device (see `iter_distance_blocks`)."""
    q, g = _prepare(q_feats, g_feats, metric)
    out = torch.empty(q.shape[0], g.shape[0], dtype=q.dtype, device=q.device)
    for _ in _blocks(q, g, metric, chunk_size, out):
        pass
    return out
