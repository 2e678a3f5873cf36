"""What every importer shares: reading a peer's file safely, mapping its tensors strictly, writing our checkpoint.

*Safe*: files are read with ``torch.load(weights_only=True)``; NumPy scalars and arrays (torchreid stores its
rank-1 as a NumPy float) are allowed, since rebuilding them runs no code of the file. Anything else that needs
full unpickling is refused unless the caller passes ``trust_pickle=True`` (``--trust-pickle``).

*Strict*: a :class:`Plan` lists (regular expression -> our key) rules; every tensor of the peer's file must match
exactly one rule whose target exists in our model with the same shape (up to singleton dimensions: GeM's exponent
is (1,) in fast-reid, a scalar here), no two tensors may land on one key, and every tensor of our model must be
filled, except the classifier (rules with target ``None``: a classifier of the training identities, never used
for embeddings) and BatchNorm's ``num_batches_tracked`` counter (filled with 0 when a file lacks it; inference
does not read it). A failure names the keys and shapes.
"""
from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml
from torch import nn
from yacs.config import CfgNode

from ...config import cfg_to_dict
from ...modeling import build_model
from ...utils.errors import CheckpointError
from ...utils.files import file_sha256
from ..io import load_failure_reason, save_checkpoint
from ..state import CLASSIFIER_MARKER, abbreviate

Rule = Tuple[str, Optional[str]]  # (regular expression matching a whole peer key, our key template or None)

TRUST_HINT = ("If the file comes from a source you trust, pass --trust-pickle (trust_pickle=True in Python), which "
              "unpickles it fully and so runs any code it contains.")


def _numpy_globals() -> List[Any]:
    """NumPy's scalar / array / dtype constructors, under both the NumPy 1 and NumPy 2 module paths."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    out: List[Any] = []
    for obj in (core.scalar, core._reconstruct):
        out += [obj, (obj, f"numpy.core.multiarray.{obj.__name__}")]
    out += [np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and not n.startswith("_")]
    return out


def read_peer_file(path: str | Path, trust_pickle: bool = False) -> Any:
    """The object in a peer's checkpoint file, loaded safely (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Peer checkpoint {str(path)!r} does not exist; check --weights.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if trust_pickle:
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except Exception as e:  # noqa: BLE001 - any failure of a full unpickle means the same to the user
                raise CheckpointError(f"Cannot load {str(path)!r} even with --trust-pickle: {type(e).__name__}: "
                                      f"{e}") from None
        try:
            with torch.serialization.safe_globals(_numpy_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - unpickling errors have many types
            why = load_failure_reason(e)
            if "import the Python object" in why:
                raise CheckpointError(f"{str(path)!r} needs full unpickling: {why}. Checkpoints are read with "
                                      f"torch.load(weights_only=True) for safety. {TRUST_HINT}") from None
            raise CheckpointError(f"Cannot load {str(path)!r} as a checkpoint: {why}.") from None


def state_dict_of(obj: Any, containers: Sequence[str], path: str | Path) -> Dict[str, torch.Tensor]:
    """The model tensors of a loaded peer file: ``obj[c]`` for the first container key ``c`` present (torchreid's
    'state_dict', fast-reid's 'model'), or ``obj`` itself when it is a bare state dict; 'module.' prefixes (a
    model saved inside DataParallel) are removed."""
    if isinstance(obj, dict):
        for c in containers:
            if isinstance(obj.get(c), dict):
                obj = obj[c]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        entries = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{str(path)!r} holds no model state dict (looked for a bare dict of tensors or one "
                              f"under {', '.join(repr(c) for c in containers)}; found {entries}).")
    out = {}
    for k, v in obj.items():
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def merge_dicts(base: Dict[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """``base`` with ``over`` merged in, nested mappings key by key (a peer's defaults under its YAML)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def read_peer_yaml(path: Path, peer: str, hint: str, seen: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """A peer's YAML config (read safely) with its ``_BASE_`` chain (relative to the file) merged, base first;
    ``peer`` names the toolkit in errors, ``hint`` says which file to pass."""
    if path in seen:
        raise CheckpointError(f"{peer} config {str(path)!r} includes itself through _BASE_.")
    if not path.is_file():
        raise CheckpointError(f"{peer} config {str(path)!r} does not exist" +
                              (f" (named by _BASE_ in {str(seen[-1])!r})" if seen else "") + f". {hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{peer} config {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{peer} config {str(path)!r} is not a mapping of keys.")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    return merge_dicts(read_peer_yaml((path.parent / str(base)).resolve(), peer, hint, seen + (path,)), data)


PeerConfig = Union[str, Path, Mapping[str, Any]]  # a peer's YAML file, or its content as a nested dict


def peer_config_dict(peer_config: PeerConfig, peer: str, hint: str) -> Dict[str, Any]:
    """A peer's config: a YAML file (see :func:`read_peer_yaml`) or a nested dict (the model zoo's recipes)."""
    if isinstance(peer_config, Mapping):
        return copy.deepcopy(dict(peer_config))
    return read_peer_yaml(Path(peer_config).resolve(), peer, hint)


@dataclass
class Plan:
    """How one peer checkpoint becomes ours: our config, the key rules and what the peer's file holds."""

    source: str  # "torchreid" / "fastreid"
    description: str  # e.g. "torchreid osnet_x1_0" (used in messages)
    cfg: CfgNode  # our resolved, frozen config
    rules: Sequence[Rule]
    state: Dict[str, torch.Tensor]  # the peer's tensors (legacy names already normalised)
    num_classes: Optional[int]  # training identities of the peer's classifier, when it has one
    hint: str = ""  # appended to mismatch errors (e.g. "check --arch")
    info: Dict[str, Any] = field(default_factory=dict)  # recorded in the checkpoint's "converted_from"


def _same_shape(a: torch.Size, b: torch.Size) -> bool:
    return a == b or [d for d in a if d != 1] == [d for d in b if d != 1]


def _target(key: str, rules: Sequence[Rule]) -> Tuple[bool, Optional[str]]:
    """(matched, our key or None for a dropped classifier tensor)."""
    for pattern, template in rules:
        found = re.fullmatch(pattern, key)
        if found:
            return True, None if template is None else found.expand(template)
    return False, None


def map_state(plan: Plan, model: nn.Module) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """(our state dict without classifier tensors, the peer keys dropped as classifier); CheckpointError naming
    every unmapped, unfilled, doubly mapped or mis-shaped key."""
    own = model.state_dict()
    mapped: Dict[str, torch.Tensor] = {}
    sources: Dict[str, str] = {}
    dropped, unmatched, foreign, twice, shapes = [], [], [], [], []
    for key, value in plan.state.items():
        matched, ours = _target(key, plan.rules)
        if not matched:
            unmatched.append(key)
        elif ours is None:
            dropped.append(key)
        elif ours not in own:
            foreign.append(f"{key} -> {ours}")
        elif ours in mapped:
            twice.append(f"{sources[ours]} and {key} -> {ours}")
        elif not _same_shape(value.shape, own[ours].shape):
            shapes.append(f"{key}: file {tuple(value.shape)} vs ours {ours} {tuple(own[ours].shape)}")
        else:
            mapped[ours] = value.reshape(own[ours].shape).to(own[ours].dtype)
            sources[ours] = key
    missing = []
    for k, v in own.items():
        if k in mapped or CLASSIFIER_MARKER in k:
            continue
        if k.endswith("num_batches_tracked"):
            mapped[k] = torch.zeros_like(v)
        else:
            missing.append(k)
    found = [(unmatched, "tensors of the file that no rule maps"), (foreign, "mapped to keys this model lacks"),
             (twice, "mapped twice"), (shapes, "shape mismatches"), (missing, "tensors of ours not in the file")]
    problems = [f"{len(keys)} {what}: {abbreviate(keys, 8)}" for keys, what in found if keys]
    if problems:
        raise CheckpointError(f"The file does not fit {plan.description}: {'; '.join(problems)}. {plan.hint}".strip())
    return {k: v for k, v in mapped.items() if CLASSIFIER_MARKER not in k}, dropped


def count_parameters(model: nn.Module, skip: Callable[[str], bool]) -> int:
    """Parameters of ``model`` whose names ``skip`` rejects not (used without the classifiers)."""
    return sum(p.numel() for name, p in model.named_parameters() if not skip(name))


@dataclass
class Converted:
    """The written checkpoint and what went into it."""

    path: Path
    plan: Plan
    dropped: List[str]  # peer keys not converted (classifier)
    parameters: int  # parameters of our model without the classifier


def write_checkpoint(plan: Plan, weights: str | Path, output: str | Path,
                     check: Optional[Callable[[Plan, nn.Module], None]] = None) -> Converted:
    """Build our model from ``plan.cfg``, fill it with the mapped tensors (strict) and write an ordinary reid
    checkpoint (model without classifier, resolved config, provenance). ``check(plan, model)`` may refuse the
    model before anything is written."""
    model = build_model(plan.cfg, num_classes=1, pretrained=False)
    state, dropped = map_state(plan, model)
    if check is not None:
        check(plan, model)
    save_checkpoint(output, {
        "model": state,
        "cfg": cfg_to_dict(plan.cfg),
        "num_classes": plan.num_classes or 0,
        "meta_architecture": plan.cfg.MODEL.META_ARCHITECTURE,
        "converted_from": {"source": plan.source, "model": plan.description, "file": Path(weights).name,
                           "sha256": file_sha256(weights), "classifier_keys_dropped": dropped, **plan.info},
    })
    params = count_parameters(model, lambda name: CLASSIFIER_MARKER in name)
    return Converted(Path(output), plan, dropped, params)
