"""ImageNet initialisation of a backbone from its publisher's file: a local copy or a download, checked key by key.

Publishers ship state dicts in their own layouts (torchvision's ResNets, Pan et al.'s IBN-Nets, torchreid's OSNets);
the backbones here keep those parameter names, so a file loads without renaming. Only the ImageNet classifier
(``fc.`` / ``classifier.``) is ignored, and layers that ImageNet training never had (``new``, e.g. non-local blocks)
may be absent; any other difference is an error that names the keys.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Iterable, Optional

import torch
from torch import nn

from ...utils.errors import CheckpointError

IMAGENET_HEADS = ("fc.", "classifier.")  # ImageNet classifiers in the publishers' files; never part of a backbone


def _unwrap(state: object, source: str) -> Dict[str, torch.Tensor]:
    """The tensor dict of a state-dict file ({'state_dict': ...} and 'module.' prefixes as torchreid writes them)."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} holds no state dict of tensors; point MODEL.BACKBONE.PRETRAIN_PATH at the "
                              f"publisher's ImageNet weights file.")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def imagenet_state_dict(path: str, url: str, what: str, file_name: Optional[str] = None,
                        check_hash: bool = False) -> Dict[str, torch.Tensor]:
    """ImageNet weights of ``what`` (e.g. "ResNet50-IBN-a") from the local file ``path`` or, when empty, downloaded
    from ``url`` into torch's hub cache (as ``file_name``; ``check_hash`` verifies the hash prefix in the name)."""
    if path:
        if not Path(path).is_file():
            raise CheckpointError(f"MODEL.BACKBONE.PRETRAIN_PATH {path!r} does not exist. Point it at the {what} "
                                  f"ImageNet weights ({url}).")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
            raise CheckpointError(f"Cannot read ImageNet weights from {path!r} (loaded with weights_only=True): "
                                  f"{e}") from None
        return _unwrap(state, repr(path))
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=check_hash,
                                                   file_name=file_name, weights_only=True)
    except Exception as e:  # noqa: BLE001 - network, cache, hash or format failure
        raise CheckpointError(
            f"Could not download the {what} ImageNet weights ({type(e).__name__}: {e}). Download {url} elsewhere and "
            f"set MODEL.BACKBONE.PRETRAIN_PATH to the file, or set MODEL.BACKBONE.PRETRAIN False to train from "
            f"random initialisation."
        ) from None
    return _unwrap(state, url)


def load_backbone_weights(model: nn.Module, state: Dict[str, torch.Tensor], what: str, hint: str,
                          new: Iterable[str] = ()) -> None:
    """Load ImageNet ``state`` into ``model`` (ignoring the ImageNet classifier); keys under the prefixes ``new``
    may be missing from the file. Anything else that does not fit is a CheckpointError ending with ``hint``."""
    new = tuple(new)
    state = {k: v for k, v in state.items() if not k.startswith(IMAGENET_HEADS)}
    own = model.state_dict()
    bad_shape = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
                 if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(new)]
    unexpected = [k for k in state if k not in own]
    if bad_shape or missing or unexpected:
        raise CheckpointError(
            f"ImageNet weights do not fit this {what}: {len(bad_shape)} shape mismatches {bad_shape[:5]}, "
            f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}. {hint}"
        )
    model.load_state_dict(state, strict=False)
