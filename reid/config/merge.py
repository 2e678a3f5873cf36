"""Merging YAML files (with ``_BASE_`` inheritance) and ``KEY VALUE`` overrides into a config, checking each key.

Unlike yacs' own merge, every unknown key or wrong type names the key, says what was expected and suggests the
closest valid keys (ignoring case). YAML is read with a safe loader (no Python tags) that reads numbers such
as ``1e-3`` as floats, as YAML 1.2 does; override values are parsed with ``ast.literal_eval`` (literals only,
never code).
"""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any, List, Sequence

import yaml
from yacs.config import CfgNode

from ..utils.errors import ConfigError, close_matches

BASE_KEY = "_BASE_"
_MAX_BASE_DEPTH = 16
_CONFIG_FILE = (".yml", ".yaml")


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python tags) that also reads ``1e-3``, ``5E-4`` and ``1.0e3`` as floats.

    PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent, so it reads ``1e-3`` as the string
    '1e-3'; YAML 1.2 (and Python, and the command line's ``ast.literal_eval``) read it as a number.
    """


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


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
    close = close_matches(full_key, candidates, cutoff=0.5)
    if not close:  # a misspelt leaf under a right section: compare the last component too
        leaf = full_key.rsplit(".", 1)[-1]
        close = [c for c in candidates if close_matches(leaf, [c.rsplit(".", 1)[-1]], cutoff=0.8)][:3]
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
        f"Config key {full_key!r} ({where}) expects {_article(type(default).__name__)} like {default!r}, "
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
    return _article(type(value).__name__)


def _article(noun: str) -> str:
    """'an int', 'a float'."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


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
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=ConfigLoader) or {}
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


def merge_file(cfg: CfgNode, path: str | Path) -> CfgNode:
    """Merge a YAML config file (and its ``_BASE_`` chain) into ``cfg`` in place."""
    path = Path(path)
    _merge(cfg, cfg, _read_yaml(path), f"in {path}")
    return cfg


def merge_dict(cfg: CfgNode, data: dict, where: str) -> CfgNode:
    """Merge a nested mapping of keys (e.g. a checkpoint's stored config) into ``cfg`` in place; ``where`` names
    its source in errors."""
    _merge(cfg, cfg, data, where)
    return cfg


def parse_override_value(text: str) -> Any:
    """A command-line value: a Python literal (number, bool, list, quoted string) or else a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def merge_list(cfg: CfgNode, opts: Sequence[str]) -> CfgNode:
    """Merge ``KEY VALUE KEY VALUE ...`` overrides (from the command line) into ``cfg`` in place.

    Any mistake (odd number of words, unknown key, value of the wrong type) is a ConfigError naming the key."""
    opts = list(opts)
    for word in opts[0::2]:  # e.g. "tools/train.py configs/x.yml": the config file without --config
        if isinstance(word, str) and word.lower().endswith(_CONFIG_FILE):
            raise ConfigError(f"{word!r} stands where a config KEY is expected; to use it as the config file write "
                              f"--config {word} (in Python: cfg.merge_from_file).")
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
