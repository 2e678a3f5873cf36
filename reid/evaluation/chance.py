"""The chance level of a split: the exact expected rank-1 and mAP of a uniformly random ranking."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from reid.evaluation.distance import EvaluationError, block_rows
from reid.evaluation.protocol import IdsLike, Protocol, resolve_protocol


class ChanceLevel(NamedTuple):
    """Expected rank-1 and mAP under a uniformly random ranking of each valid query's valid gallery items."""

    rank1: float
    mAP: float
    num_valid: int


def chance_level(*split: Protocol | IdsLike, **rule: Any) -> ChanceLevel:
    """Exact expected rank-1 and mAP of a uniformly random ranking under the protocol's removals. ``split``: a
    :class:`Protocol`, or ``q_pids, g_pids, q_camids, g_camids`` with ``evaluate_rank``'s rule keywords.

    A valid query with n true matches among N valid gallery items: E[rank-1] = n / N and, since
    AP = 1/n sum_j rel_j (sum_{i<=j} rel_i) / j with E[rel_j] = n / N and E[rel_i rel_j] = n (n-1) / (N (N-1)),
    E[AP] = H_N / N + (n - 1) (N - H_N) / (N (N - 1))   (H_N = 1 + 1/2 + ... + 1/N; E[AP] = 1 when N = 1).
    Both are averaged over the valid queries, as CMC and mAP are.
    """
    cpu = torch.device("cpu")
    protocol = resolve_protocol(split, rule, cpu)
    # Per query: its true matches and the gallery items of its identity the protocol removes, a block of queries
    # at a time (a block's candidates are at most block x gallery).
    step = block_rows(protocol.num_gallery, cpu)
    matches, removals = [], []
    for start in range(0, protocol.num_query, step):
        _, match, removed = protocol.candidates(slice(start, start + step))
        matches.append(match.sum(1))
        removals.append(removed.sum(1))
    n, removed = torch.cat(matches).numpy(), torch.cat(removals).numpy()
    valid = n > 0
    if not valid.any():
        raise EvaluationError(f"none of the {len(valid)} queries has a true match in the gallery "
                              f"({protocol.rule.description}); chance level is undefined.")
    usable = int((~protocol.junk).sum())
    n, size = n[valid].astype(np.float64), (usable - removed[valid]).astype(np.float64)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(size.max()) + 1))])[size.astype(np.int64)]
    pairs = np.where(size > 1, (n - 1) * (size - harmonic) / np.maximum(size * (size - 1), 1.0), 0.0)
    return ChanceLevel(float(np.mean(n / size)), float(np.mean(harmonic / size + pairs)), int(valid.sum()))
