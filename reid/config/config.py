"""Getting a config: the defaults (``defaults.py``), then a YAML file, then ``KEY VALUE`` overrides, validated."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable

from .defaults import DEFAULTS
from .merge import merge_dict
from .node import CfgNode


def get_cfg() -> CfgNode:
    """A fresh, mutable copy of the defaults."""
    return DEFAULTS.clone()


def load_cfg(config_file: str | Path | None = None, opts: Iterable[str] = (), freeze: bool = True) -> CfgNode:
    """Defaults, then the YAML file (with its ``_BASE_`` chain), then ``KEY VALUE`` overrides; validated."""
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.validate()
    if freeze:
        cfg.freeze()
    return cfg


def dump_cfg(cfg: CfgNode, path: str | Path) -> None:
    """Write the resolved config as YAML that ``load_cfg`` reads back to the same values."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(cfg.dump(), encoding="utf-8")


def cfg_to_dict(cfg: CfgNode) -> dict:
    """Plain nested dict (for storing inside checkpoints, which load with weights_only=True)."""
    out = {}
    for k, v in cfg.items():
        out[k] = cfg_to_dict(v) if isinstance(v, CfgNode) else copy.deepcopy(v)
    return out


def cfg_from_dict(data: dict, freeze: bool = True) -> CfgNode:
    """Rebuild a config from ``cfg_to_dict`` output, checking every key against the current defaults."""
    cfg = get_cfg()
    merge_dict(cfg, data, "in the checkpoint's stored config")
    if freeze:
        cfg.freeze()
    return cfg
