"""Reading and checking loss hyperparameters, so every bad value names its config key."""
from __future__ import annotations

import math
from typing import Any, Callable

from ...utils.errors import ConfigError


def cfg_get(cfg, key: str) -> Any:
    """``cfg_get(cfg, "MODEL.LOSSES.MS.ALPHA")``; a missing key is a ConfigError naming it."""
    node = cfg
    for part in key.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError):
            raise ConfigError(f"Config key {key!r} is missing; every key is listed in "
                              f"reid/config/defaults.py.") from None
    return node


def _checked(cfg, key: str, ok: Callable[[float], bool], expected: str) -> float:
    value = cfg_get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"{key} must be {expected}, got {value!r}.")
    return float(value)


def positive(cfg, key: str) -> float:
    return _checked(cfg, key, lambda v: v > 0, "a finite number > 0")


def non_negative(cfg, key: str) -> float:
    return _checked(cfg, key, lambda v: v >= 0, "a finite number >= 0")


def finite(cfg, key: str) -> float:
    return _checked(cfg, key, lambda v: True, "a finite number")


def in_range(cfg, key: str, low: float, high: float) -> float:
    """A value in [low, high)."""
    return _checked(cfg, key, lambda v: low <= v < high, f"in [{low}, {high})")


def flag(cfg, key: str) -> bool:
    value = cfg_get(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be True or False, got {value!r}.")
    return value
