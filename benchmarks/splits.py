"""Random features of the real test-split sizes with a realistic identity / camera structure (identity centre +
camera shift + per-image noise in a low-dimensional latent space, projected to ``dim``), for the evaluation and
re-ranking benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """Sizes of a test split: queries, gallery (with distractors pid 0), extra junk (pid -1), ids, cameras."""

    num_query: int
    num_gallery: int
    num_distractors: int
    num_junk: int
    num_ids: int
    num_cams: int


# Market-1501: 3,368 queries, 15,913 gallery images (2,793 distractors) + 3,819 junk, 750 query ids, 6 cameras.
# MSMT17: 11,659 queries, 82,161 gallery images, 3,060 test ids, 15 cameras.
SPLITS = {
    "market": Split(3368, 15913, 2793, 3819, 750, 6),
    "msmt17": Split(11659, 82161, 0, 0, 3060, 15),
    "tiny": Split(100, 400, 40, 20, 30, 4),  # a smoke run in a second (benchmarks/gpu_check.sh --cpu-smoke)
}
LATENT = 64  # identity structure lives in a low-dimensional space, as in real embeddings


def make_split(name: str, dim: int = 2048, seed: int = 0, device: str = "cpu", junk: bool = True):
    """Features (float32, on `device`) and ids: query, gallery (distractors, then junk unless `junk=False`).

    Built in chunks so that the peak memory is about the features themselves.
    """
    split = SPLITS[name]
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((split.num_ids, LATENT))
    cam_shift = 0.45 * rng.standard_normal((split.num_cams, LATENT))
    proj = rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)
    ids = np.arange(split.num_ids)
    q_pids = np.concatenate([ids, rng.choice(ids, split.num_query - split.num_ids)]) + 1
    num_real = split.num_gallery - split.num_distractors
    g_pids = np.concatenate([
        np.concatenate([ids, rng.choice(ids, num_real - split.num_ids)]) + 1,
        np.zeros(split.num_distractors, np.int64),
        np.full(split.num_junk if junk else 0, -1),
    ])
    q_cams = rng.integers(0, split.num_cams, split.num_query)
    g_cams = rng.integers(0, split.num_cams, len(g_pids))

    def features(pids: np.ndarray, cams: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(pids), dim, device=device)
        for start in range(0, len(pids), 8192):
            p, c = pids[start : start + 8192], cams[start : start + 8192]
            person = np.where(p > 0, p - 1, rng.integers(0, split.num_ids, len(p)))  # junk: a bad crop of anyone
            latent = centres[person] + cam_shift[c]
            latent[p == 0] = rng.standard_normal((int((p == 0).sum()), LATENT))  # each distractor: its own person
            noise = rng.lognormal(-0.1, 0.35, (len(p), 1))  # some images are much harder than others
            latent += noise * rng.standard_normal(latent.shape) * np.where(p == -1, 2.0, 1.0)[:, None]
            block = latent @ proj + 0.3 * rng.standard_normal((len(p), dim))
            out[start : start + len(p)] = torch.from_numpy(block.astype(np.float32))
        return out

    return features(q_pids, q_cams), features(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams
