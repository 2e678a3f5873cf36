"""Name -> object registries that tie config strings to code."""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry:
    """A named table of classes or functions, filled with the ``@REGISTRY.register()`` decorator."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._obj: Dict[str, object] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._obj:
                raise KeyError(f"{key!r} is already registered in the {self.name} registry")
            self._obj[key] = obj
            return obj

        return deco

    def get(self, name: str):
        if name not in self._obj:
            close = difflib.get_close_matches(name, list(self._obj), n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(
                f"No {self.name} named {name!r}.{hint} Registered: {', '.join(sorted(self._obj))}."
            )
        return self._obj[name]

    def __contains__(self, name: str) -> bool:
        return name in self._obj

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._obj))

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {sorted(self._obj)})"
