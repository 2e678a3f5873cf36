"""The one loader of trained models: checkpoint -> (model in eval mode on its device, resolved config).

``tools/test.py``, visualize, extract, search, export and ``ReIDModel`` all load weights through
:func:`load_for_inference`, so a checkpoint that does not fit gives the same message everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple, Union

import torch
from torch import nn
from yacs.config import CfgNode

from ..config import cfg_from_dict, get_cfg
from ..modeling import build_model
from ..utils.env import resolve_device
from ..utils.errors import CheckpointError
from .io import load_checkpoint
from .state import load_model_weights

ConfigLike = Union[None, str, os.PathLike, CfgNode]


def resolve_config(state: Dict[str, Any], path: str | Path, config: ConfigLike = None,
                   opts: Sequence[str] = ()) -> CfgNode:
    """The config a checkpoint is rebuilt with: the stored one, a YAML merged over it, or a given CfgNode.

    A YAML file is merged over the stored config (over the defaults for a bare state dict), so it only needs the
    keys it changes; a CfgNode is complete and replaces the stored config. ``opts`` are ``KEY VALUE`` overrides.
    """
    if isinstance(config, CfgNode):
        cfg = config.clone()
        cfg.defrost()
    else:
        stored = state.get("cfg")
        if stored is None and config is None:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} stores no config (a bare state dict, or a file not written by reid's "
                f"Trainer), so the model cannot be rebuilt from it. Pass the config it was trained with: "
                f"config='configs/...yml' in Python, --config FILE on the command line."
            )
        if stored is not None and not isinstance(stored, dict):
            raise CheckpointError(f"Checkpoint {str(path)!r} has a 'cfg' entry of type {type(stored).__name__}, "
                                  f"not the plain dict reid's Trainer stores; pass the training config instead.")
        cfg = cfg_from_dict(stored, freeze=False) if stored is not None else get_cfg()
        if config is not None:
            cfg.merge_from_file(config)
    cfg.merge_from_list(list(opts))
    cfg.validate()
    cfg.freeze()
    return cfg


def load_for_inference(path: str | os.PathLike, config: ConfigLike = None, opts: Sequence[str] = (),
                       device: Union[str, torch.device] = "auto", name: str = "Checkpoint",
                       state: Dict[str, Any] | None = None) -> Tuple[nn.Module, CfgNode]:
    """Load the checkpoint ``path`` for embedding: (model in eval mode on ``device``, its resolved config).

    The model is rebuilt from the config stored in the checkpoint (``config`` and ``opts`` as in
    :func:`resolve_config`) without ImageNet weights; classifier weights are not loaded (any number of training
    identities fits), every other weight must fit exactly. ``device`` is "auto" (CUDA when available), "cpu",
    "cuda" or "cuda:N". ``name`` says in errors where ``path`` came from (e.g. "MODEL.WEIGHTS file"). ``state``:
    the file's content when the caller has already loaded it (to read other entries, e.g. ``threshold``).
    """
    state = load_checkpoint(path, name) if state is None else state
    cfg = resolve_config(state, path, config, opts)
    trained_as = state.get("meta_architecture")
    if trained_as is not None and trained_as != cfg.MODEL.META_ARCHITECTURE:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds a {trained_as} model but the config builds "
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r}; drop that override or use the config "
            f"the checkpoint was trained with."
        )
    model = build_model(cfg, num_classes=1, pretrained=False)  # the classifier is skipped: one class suffices
    load_model_weights(model, path, state=state, cfg=cfg)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    return model.to(target).eval(), cfg
