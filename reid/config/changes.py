"""Which config changes a resumed run may carry: the one table ``tools/train.py --resume`` checks.

A run resumed from ``model_last.pt`` is only the run it continues if what decides the trained weights is
unchanged: the model (architecture, losses, initial weights), the training data and its input pipeline, the
solver, the seed. A change of such a key is an error naming each key with both values, unless
``--allow-config-change`` (then it is logged). Keys that change only speed, logging, evaluation or where files
are may change freely; each change is logged.

The rule of a key is the entry of its longest prefix in :data:`RESUME_RULES` (every key has one: a test checks
the defaults against this table, so a new top-level section must be classified here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Tuple

# key or section -> True when a change makes the resumed run differ from an uninterrupted one
RESUME_RULES: Dict[str, bool] = {
    "MODEL": True,  # architecture, heads, losses, initial weights (MODEL.WEIGHTS, ImageNet)
    "MODEL.DEVICE": False,  # a run may continue on another machine
    "MODEL.CHANNELS_LAST": False,  # memory layout: the same function, computed faster
    "MODEL.COMPILE": False,  # torch.compile: the same function, computed faster
    "INPUT": True,  # training sizes and augmentation (and the test transform)
    "DATASETS": True,  # training sets, synthetic-set generation, unreadable-image policy
    "DATASETS.ROOT": False,  # the same data may live elsewhere
    "DATASETS.TESTS": False,  # evaluation only
    "DATASETS.KEEP_JUNK": False,  # junk takes no part in training or ranking
    "DATALOADER": True,  # sampler, K, pipeline and cached image size decide the batches
    "DATALOADER.NUM_WORKERS": False,  # the batches do not depend on the worker count (reid.data.build.TrainLoader)
    "DATALOADER.CACHE_RAM_GB": False,  # where the decoded cache lives, not what it holds
    "DATALOADER.CACHE_DIR": False,
    "DATALOADER.CACHE_DEVICE_GB": False,
    "SOLVER": True,  # optimizer, schedule, epochs, batch size, precision, EMA
    "SOLVER.LOG_PERIOD": False,  # logging
    "SOLVER.CHECKPOINT_PERIOD": False,  # how often model_last.pt is written
    "SOLVER.FUSED": False,  # one fused kernel for the same update
    "SEED": True,
    "DETERMINISTIC": True,  # exact resume needs the same algorithms
    "TEST": False,  # evaluation only (TEST.EVAL_PERIOD decides when; TEST.BEST_METRIC what model_best.pt keeps)
    "VIS": False,  # pictures and reports
    "OUTPUT_DIR": False,  # the run's folder may have moved
}


@dataclass(frozen=True)
class Change:
    """One key whose value in the checkpoint's config differs from the resumed run's."""

    key: str
    stored: Any
    now: Any
    changes_result: bool

    def __str__(self) -> str:
        return f"{self.key}: {self.stored!r} in the checkpoint, {self.now!r} now"


def changes_result(key: str) -> bool:
    """The rule of ``key`` in :data:`RESUME_RULES` (its longest prefix that is a key or section)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        rule = RESUME_RULES.get(".".join(parts[:n]))
        if rule is not None:
            return rule
    raise KeyError(f"{key} has no entry in reid.config.changes.RESUME_RULES; classify its section there")


def flat_items(node: Mapping, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """``(KEY.SUB, value)`` for every leaf of a nested config mapping (tuples as lists)."""
    for key, value in node.items():
        if isinstance(value, Mapping):
            yield from flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", list(value) if isinstance(value, tuple) else value


def resume_changes(stored: Mapping, cfg: Mapping, defaults: Mapping) -> List[Change]:
    """Every key whose value in ``stored`` (a checkpoint's config as a plain dict) differs from ``cfg``, in the
    order of ``cfg``. A key the checkpoint lacks (written before the key existed) had its default value then;
    a key the checkpoint has that no longer exists is listed with ``now`` None."""
    old, new, default = (dict(flat_items(c)) for c in (stored, cfg, defaults))
    out = [Change(key, old.get(key, default.get(key)), value, changes_result(key))
           for key, value in new.items() if old.get(key, default.get(key)) != value]
    out += [Change(key, value, None, False) for key, value in old.items() if key not in new]
    return out
