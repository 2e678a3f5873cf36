"""Loading configs: YAML files with ``_BASE_`` inheritance, then ``KEY VALUE`` overrides.

Unlike yacs' own merge, every unknown key or wrong type names the key, says what was expected and suggests the
closest valid keys. YAML is read with ``yaml.safe_load`` (no Python tags); override values are parsed with
``ast.literal_eval`` (literals only, never code).
"""
from __future__ import annotations

import ast
import copy
import difflib
import math
from pathlib import Path
from typing import Any, Iterable, List, Sequence

import yaml
from yacs.config import CfgNode

from ..utils.errors import ConfigError
from .defaults import _C

BASE_KEY = "_BASE_"
_MAX_BASE_DEPTH = 16


def get_cfg() -> CfgNode:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()


def _all_keys(node: CfgNode, prefix: str = "") -> List[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CfgNode):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _unknown_key(cfg: CfgNode, full_key: str, where: str) -> ConfigError:
    candidates = _all_keys(cfg)
    close = difflib.get_close_matches(full_key, candidates, n=3, cutoff=0.5)
    if not close:  # a misspelt leaf under a right section: compare the last component too
        leaf = full_key.rsplit(".", 1)[-1]
        close = [c for c in candidates if difflib.get_close_matches(leaf, [c.rsplit(".", 1)[-1]], cutoff=0.8)][:3]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"Unknown config key {full_key!r} ({where}).{hint} Every key is listed in "
                       f"reid/config/defaults.py.")


_MISMATCH, _NOT_FINITE = object(), object()  # what _scalar returns for a value it cannot accept
_SCALARS = (bool, int, float, str)


def _scalar(value: Any, default: Any) -> Any:
    """``value`` as the type of the scalar ``default`` (int -> float allowed), or ``_MISMATCH`` / ``_NOT_FINITE``."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else _MISMATCH
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if math.isfinite(value) else _NOT_FINITE
        return _MISMATCH
    if isinstance(default, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISMATCH
    if isinstance(default, str):
        return value if isinstance(value, str) else _MISMATCH
    return _MISMATCH


def _element(value: Any, proto: Any) -> Any:
    """A list element checked against ``proto`` (an element of the default list); with no prototype (the default
    list is empty or mixed) any finite scalar."""
    if proto is None:
        return value if isinstance(value, _SCALARS) and _finite(value) else _MISMATCH
    return _scalar(value, proto)


def _coerce(full_key: str, value: Any, default: Any, where: str) -> Any:
    """Check ``value`` against the default's type; allow int -> float and tuple <-> list. List elements are
    checked against the default's elements (any scalar when the default list is empty); floats must be finite."""
    if isinstance(default, CfgNode):
        raise ConfigError(f"Config key {full_key!r} ({where}) is a section; set its sub-keys, not a value.")
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            proto = default[0] if default and len({type(d) for d in default}) == 1 else None
            out = [_element(x, proto) for x in value]
            bad = [x for x, o in zip(value, out) if o is _MISMATCH or o is _NOT_FINITE]
            if not bad:
                return out
            kind = f"a list of {type(proto).__name__}" if proto is not None else "a list of numbers or strings"
            raise ConfigError(f"Config key {full_key!r} ({where}) expects {kind} like {default!r}, got "
                              f"{_show(value)} (element {_show(bad[0])} is {_describe(bad[0])}).")
    elif default is None:
        return value
    else:
        out = _scalar(value, default)
        if out is _NOT_FINITE:
            raise ConfigError(f"Config key {full_key!r} ({where}) expects a finite number like {default!r}, "
                              f"got {value!r}.")
        if out is not _MISMATCH:
            return out
    raise ConfigError(
        f"Config key {full_key!r} ({where}) expects a {type(default).__name__} like {default!r}, "
        f"got {type(value).__name__} {_show(value)}."
    )


def _finite(x: Any) -> bool:
    return not isinstance(x, float) or math.isfinite(x)


def _show(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "not finite"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _merge(root: CfgNode, node: CfgNode, new: dict, where: str, prefix: str = "") -> None:
    """Merge the mapping ``new`` into ``node`` (a section of ``root``), checking every key and type."""
    if not isinstance(new, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys, got {type(new).__name__}.")
    for k, v in new.items():
        full = f"{prefix}{k}"
        if not isinstance(k, str) or k not in node:
            raise _unknown_key(root, full, where)
        if isinstance(node[k], CfgNode):
            if not isinstance(v, dict):
                raise ConfigError(f"Config key {full!r} ({where}) is a section; expected a mapping of its keys.")
            _merge(root, node[k], v, where, full + ".")
        else:
            node[k] = _coerce(full, v, node[k], where)


def _read_yaml(path: Path, depth: int = 0) -> dict:
    """Read a YAML config, resolving ``_BASE_`` (a path relative to the file) recursively."""
    if depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: _BASE_ chain deeper than {_MAX_BASE_DEPTH} (a cycle?).")
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Configs live under configs/, "
                          f"e.g. configs/Synthetic/resnet50_circle.yml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"Config file {str(path)!r} is not valid (safe) YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}.")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file path string.")
    merged = _read_yaml((path.parent / base).resolve(), depth + 1)
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def merge_from_file(cfg: CfgNode, path: str | Path) -> CfgNode:
    """Merge a YAML config file (and its ``_BASE_`` chain) into ``cfg`` in place."""
    path = Path(path)
    _merge(cfg, cfg, _read_yaml(path), f"in {path}")
    return cfg


def parse_override_value(text: str) -> Any:
    """A command-line value: a Python literal (number, bool, list, quoted string) or else a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def merge_from_list(cfg: CfgNode, opts: Sequence[str]) -> CfgNode:
    """Merge ``KEY VALUE KEY VALUE ...`` overrides (from the command line) into ``cfg`` in place.

    Any mistake (odd number of words, unknown key, value of the wrong type) is a ConfigError naming the key."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"Overrides come in KEY VALUE pairs; got an odd number of words: "
                          f"{_show(' '.join(map(str, opts)), 300)}.")
    for key, text in zip(opts[0::2], opts[1::2]):
        if not isinstance(key, str):
            raise ConfigError(f"Override keys are strings such as 'SOLVER.BASE_LR', got {_show(key)}.")
        node = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, CfgNode) or part not in node:
                raise _unknown_key(cfg, key, "on the command line")
            if i < len(parts) - 1:
                node = node[part]
        default = node[parts[-1]]
        value = parse_override_value(text) if isinstance(text, str) else text
        if isinstance(default, str) and isinstance(text, str) and not isinstance(value, str):
            value = text  # e.g. OUTPUT_DIR 123 or MODEL.DEVICE cuda:0 stay strings
        node[parts[-1]] = _coerce(key, value, default, "on the command line")
    return cfg


def validate(cfg: CfgNode) -> None:
    """Cross-key checks that a type check cannot make; raise ConfigError naming the key."""
    s, d, t = cfg.SOLVER, cfg.DATALOADER, cfg.TEST

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(s.IMS_PER_BATCH > 0, f"SOLVER.IMS_PER_BATCH must be positive, got {s.IMS_PER_BATCH}.")
    need(d.NUM_INSTANCE > 0, f"DATALOADER.NUM_INSTANCE must be positive, got {d.NUM_INSTANCE}.")
    if d.SAMPLER == "identity":
        need(s.IMS_PER_BATCH % d.NUM_INSTANCE == 0,
             f"SOLVER.IMS_PER_BATCH ({s.IMS_PER_BATCH}) must be a multiple of DATALOADER.NUM_INSTANCE "
             f"({d.NUM_INSTANCE}) for P x K identity batches.")
    need(d.SAMPLER in ("identity", "random"), f"DATALOADER.SAMPLER must be 'identity' or 'random', got {d.SAMPLER!r}.")
    need(d.NUM_WORKERS >= 0, f"DATALOADER.NUM_WORKERS must be >= 0, got {d.NUM_WORKERS}.")
    need(s.MAX_EPOCHS > 0, f"SOLVER.MAX_EPOCHS must be positive, got {s.MAX_EPOCHS}.")
    need(s.BASE_LR > 0, f"SOLVER.BASE_LR must be positive, got {s.BASE_LR}.")
    need(s.CHECKPOINT_PERIOD > 0, f"SOLVER.CHECKPOINT_PERIOD must be positive, got {s.CHECKPOINT_PERIOD}.")
    need(t.EVAL_PERIOD > 0, f"TEST.EVAL_PERIOD must be positive, got {t.EVAL_PERIOD}.")
    need(t.IMS_PER_BATCH > 0, f"TEST.IMS_PER_BATCH must be positive, got {t.IMS_PER_BATCH}.")
    need(t.MAX_RANK > 0, f"TEST.MAX_RANK must be positive, got {t.MAX_RANK}.")
    need(t.METRIC in ("cosine", "euclidean"), f"TEST.METRIC must be 'cosine' or 'euclidean', got {t.METRIC!r}.")
    need(s.OPTIMIZER in ("SGD", "Adam", "AdamW"), f"SOLVER.OPTIMIZER must be SGD, Adam or AdamW, got {s.OPTIMIZER!r}.")
    need(s.SCHED in ("multistep", "cosine"), f"SOLVER.SCHED must be 'multistep' or 'cosine', got {s.SCHED!r}.")
    for key in ("SIZE_TRAIN", "SIZE_TEST"):
        v = cfg.INPUT[key]
        need(len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v),
             f"INPUT.{key} must be [height, width] of positive ints, got {v!r}.")
    need(len(cfg.DATASETS.NAMES) > 0, "DATASETS.NAMES must name at least one training dataset.")
    need(0.0 <= cfg.INPUT.FLIP_PROB <= 1.0, f"INPUT.FLIP_PROB must be in [0, 1], got {cfg.INPUT.FLIP_PROB}.")
    need(t.RERANK.K1 > 0 and t.RERANK.K2 > 0, "TEST.RERANK.K1 and TEST.RERANK.K2 must be positive.")
    need(0.0 <= t.RERANK.LAMBDA <= 1.0, f"TEST.RERANK.LAMBDA must be in [0, 1], got {t.RERANK.LAMBDA}.")
    if t.RERANK.ENABLED:
        need(t.RERANK.K2 <= t.RERANK.K1 + 1, f"TEST.RERANK.K2 ({t.RERANK.K2}) must be at most TEST.RERANK.K1 + 1 "
                                             f"({t.RERANK.K1 + 1}).")
    need(len(cfg.DATASETS.TESTS) > 0, "DATASETS.TESTS must name at least one test set.")
    need(s.LOG_PERIOD > 0, f"SOLVER.LOG_PERIOD must be positive, got {s.LOG_PERIOD}.")
    need(s.WARMUP_EPOCHS >= 0, f"SOLVER.WARMUP_EPOCHS must be >= 0, got {s.WARMUP_EPOCHS}.")
    need(0.0 < s.WARMUP_FACTOR <= 1.0, f"SOLVER.WARMUP_FACTOR must be in (0, 1], got {s.WARMUP_FACTOR}.")
    need(s.GAMMA > 0, f"SOLVER.GAMMA must be positive, got {s.GAMMA}.")
    need(list(s.STEPS) == sorted(s.STEPS) and all(x >= 0 for x in s.STEPS),
         f"SOLVER.STEPS must be epochs >= 0 in increasing order, got {list(s.STEPS)!r}.")
    for key in ("MOMENTUM", "WEIGHT_DECAY", "WEIGHT_DECAY_BIAS", "BIAS_LR_FACTOR", "GRAD_CLIP", "ETA_MIN_LR"):
        need(s[key] >= 0, f"SOLVER.{key} must be >= 0, got {s[key]}.")
    need(cfg.INPUT.PADDING >= 0, f"INPUT.PADDING must be >= 0, got {cfg.INPUT.PADDING}.")
    need(0.0 <= cfg.INPUT.REA.PROB <= 1.0, f"INPUT.REA.PROB must be in [0, 1], got {cfg.INPUT.REA.PROB}.")
    need(len(cfg.INPUT.PIXEL_MEAN) == 3, f"INPUT.PIXEL_MEAN must have 3 (RGB) values, got {cfg.INPUT.PIXEL_MEAN!r}.")
    need(len(cfg.INPUT.PIXEL_STD) == 3 and all(x > 0 for x in cfg.INPUT.PIXEL_STD),
         f"INPUT.PIXEL_STD must be 3 (RGB) positive values, got {cfg.INPUT.PIXEL_STD!r}.")
    layers = cfg.MODEL.BACKBONE.LAYERS
    need(not layers or (len(layers) == 4 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                                  for x in layers)),
         f"MODEL.BACKBONE.LAYERS must be [] or 4 positive block counts, got {list(layers)!r}.")
    need(cfg.MODEL.HEADS.NUM_CLASSES >= 0, f"MODEL.HEADS.NUM_CLASSES must be >= 0, got {cfg.MODEL.HEADS.NUM_CLASSES}.")
    need(cfg.MODEL.HEADS.EMBEDDING_DIM >= 0,
         f"MODEL.HEADS.EMBEDDING_DIM must be >= 0, got {cfg.MODEL.HEADS.EMBEDDING_DIM}.")


def load_cfg(config_file: str | Path | None = None, opts: Iterable[str] = (), freeze: bool = True) -> CfgNode:
    """Defaults, then the YAML file (with its ``_BASE_`` chain), then ``KEY VALUE`` overrides; validated."""
    cfg = get_cfg()
    if config_file:
        merge_from_file(cfg, config_file)
    merge_from_list(cfg, list(opts))
    validate(cfg)
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
    _merge(cfg, cfg, data, "in the checkpoint's stored config")
    if freeze:
        cfg.freeze()
    return cfg
