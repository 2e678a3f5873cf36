"""Loading a checkpoint's model state into a model: every key and shape must fit, and a mismatch names the keys
and the MODEL settings in which the checkpoint's stored config differs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping

import torch
from torch import nn

from ..config.changes import flat_items
from ..utils.errors import CheckpointError
from .io import load_checkpoint

# Parameters that depend on the training identities; evaluation never needs them (MODEL.WEIGHTS skips them).
CLASSIFIER_MARKER = "classifier."


def model_state_from(state: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint (ours: state['model']; a bare state dict is accepted too)."""
    inner = state.get("model", state)
    if not isinstance(inner, dict) or not all(isinstance(v, torch.Tensor) for v in inner.values()):
        raise CheckpointError("The checkpoint holds no model state dict (expected a 'model' entry of tensors).")
    return inner


def abbreviate(items: List[str], limit: int = 6) -> str:
    """The first ``limit`` items of a list of keys, comma-separated, with how many more there are (for errors)."""
    return ", ".join(items[:limit]) + (f" ... (+{len(items) - limit} more)" if len(items) > limit else "")


def state_mismatch(model: nn.Module, given: Mapping[str, torch.Tensor], skip: Iterable[str] = ()) -> str:
    """'' when ``given`` fits ``model`` exactly (keys and shapes, ignoring keys containing any of ``skip``), else
    a description listing the missing, unexpected and differently shaped keys."""
    skip = tuple(skip)
    wanted = {k: v for k, v in model.state_dict().items() if not any(s in k for s in skip)}
    given = {k: v for k, v in given.items() if not any(s in k for s in skip)}
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    shapes = sorted(f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(v.shape)}"
                    for k, v in wanted.items() if k in given and given[k].shape != v.shape)
    parts = [f"{len(missing)} missing: {abbreviate(missing)}" if missing else "",
             f"{len(unexpected)} unexpected: {abbreviate(unexpected)}" if unexpected else "",
             f"{len(shapes)} with other shapes: {abbreviate(shapes)}" if shapes else ""]
    return "; ".join(p for p in parts if p)


def config_differences(state: Mapping[str, Any], cfg, section: str = "MODEL",
                       ignore: Iterable[str] = ("WEIGHTS", "DEVICE")) -> List[str]:
    """``KEY: checkpoint X vs config Y`` for the keys of ``section`` where the checkpoint's stored config differs
    from ``cfg`` (empty without either)."""
    stored = state.get("cfg") if isinstance(state, Mapping) else None
    if cfg is None or not isinstance(stored, Mapping) or not isinstance(stored.get(section), Mapping):
        return []
    ignored = set(ignore)
    old, new = (dict(flat_items(c[section], f"{section}.")) for c in (stored, cfg))
    return [f"{key}: checkpoint {value!r} vs config {new[key]!r}" for key, value in old.items()
            if key in new and value != new[key] and not ignored.intersection(key.split(".")[1:])]


def load_model_state(model: nn.Module, state: Dict[str, Any], path: str | Path, skip: Iterable[str] = (),
                     cfg=None, advice: str = "") -> None:
    """Load the model state of the checkpoint ``state`` (read from ``path``) into ``model``, requiring every key
    and shape to match except keys containing any of ``skip``. On a mismatch the CheckpointError lists the keys,
    and (with ``cfg``) the MODEL settings in which the checkpoint's stored config differs from ``cfg``."""
    skip = tuple(skip)
    loaded = model_state_from(state)
    problem = state_mismatch(model, loaded, skip)
    if problem:
        diffs = config_differences(state, cfg)
        stored, current = state.get("num_classes"), getattr(model, "num_classes", None)
        classes_differ = (isinstance(stored, int) and isinstance(current, int) and stored != current
                          and not any(s in CLASSIFIER_MARKER for s in skip))
        only_classifier = state_mismatch(model, loaded, skip + (CLASSIFIER_MARKER,)) == ""
        if classes_differ:
            problem += (f". The checkpoint's classifier has {stored} classes, this model {current}: it was trained "
                        f"on data with another number of identities")
        if diffs:
            where = f" Its MODEL settings differ from this config: {abbreviate(diffs, 4)}."
        elif classes_differ and only_classifier:
            where = ""
        else:
            where = (" It was probably trained with another MODEL.META_ARCHITECTURE / MODEL.BACKBONE / MODEL.HEADS "
                     "setting.")
        raise CheckpointError(f"Checkpoint {str(path)!r} does not fit this model ({problem}).{where} "
                              f"{advice or 'Use the config it was trained with.'}")
    model.load_state_dict({k: v for k, v in loaded.items() if not any(s in k for s in skip)}, strict=not skip)


def load_model_weights(model: nn.Module, path: str | Path, skip: Iterable[str] = (CLASSIFIER_MARKER,),
                       state: Dict[str, Any] | None = None, cfg=None) -> None:
    """Load model weights for evaluation/fine-tuning, ignoring classifier weights by design.

    ``state`` is the already loaded checkpoint at ``path`` (to avoid reading it twice); ``path`` names it in
    errors. Any other difference (missing or unexpected keys, shape mismatch) means the checkpoint comes from
    another architecture or configuration; the error lists the mismatched keys (and, given ``cfg``, the MODEL
    settings that differ from the checkpoint's stored config).
    """
    load_model_state(model, state if state is not None else load_checkpoint(path), path, skip, cfg,
                     "Use the config it was trained with (its classifier is ignored: any number of training "
                     "identities fits).")
