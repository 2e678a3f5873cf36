"""Name -> object registries that tie config strings to code.

A registry knows the config key(s) it serves and the modules whose import fills it (``locations``). Looking a
name up (``get``, ``in``, iterating, ``names``) imports those modules first, as mmengine's Registry does, so the
config layer can check a choice against every built-in entry without importing the layers above it, and a
name registered anywhere in those modules is a valid choice at once: no list is ever copied by hand.

Parametrised entries: a registry built with a ``separator`` (the dataset registry uses ``":"``) accepts config
values ``NAME<separator>ARGUMENT`` for entries registered with ``argument="METAVAR"``; e.g. an entry registered
as ``register("folder", argument="PATH")`` is chosen by ``folder:/data/cams`` (with ``argument_required=False``
both ``Market1501`` and ``Market1501:/data/m`` are). :meth:`Registry.split` parts a value
into (entry, argument) and :meth:`Registry.check` says whether a value names an entry with the argument it needs.
"""
from __future__ import annotations

import importlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

from .errors import ConfigError, close_matches

T = TypeVar("T")
_DECORATE = object()  # ``register`` was called without an object: act as a decorator


class Registry:
    """A named table of classes, functions or values, filled with ``@REGISTRY.register()`` (or, for a plain
    value, ``REGISTRY.register(name, value)``).

    ``keys``: the config keys whose values name entries (``*`` stands for any one section, e.g.
    ``MODEL.LOSSES.*.MINER``); ``locations``: modules imported on the first lookup; ``optional``: the empty
    string is a valid choice meaning "none"; ``separator``: see the module docstring.
    """

    def __init__(self, name: str, keys: Sequence[str] = (), locations: Sequence[str] = (), optional: bool = False,
                 separator: Optional[str] = None) -> None:
        self.name = name
        self.keys: Tuple[str, ...] = tuple(keys)
        self.locations: Tuple[str, ...] = tuple(locations)
        self.optional = optional
        self.separator = separator
        self._obj: Dict[str, object] = {}
        # entry -> (metavar of the argument it takes after ``separator``, whether it needs one)
        self._arguments: Dict[str, Tuple[str, bool]] = {}
        self._loaded = not self.locations

    def register(self, name: Optional[str] = None, obj: object = _DECORATE, argument: Optional[str] = None,
                 argument_required: bool = True):
        """``@register()`` / ``@register("name")`` decorate a class or function; ``register("name", value)`` adds
        a value. ``argument`` (a metavar such as "PATH") makes the entry take ``name<separator>ARGUMENT``,
        which it needs unless ``argument_required`` is False."""
        if argument is not None and self.separator is None:
            raise ValueError(f"The {self.name} registry takes no arguments (it has no separator).")

        def add(value: T) -> T:
            key = name or value.__name__  # type: ignore[attr-defined]
            if key in self._obj:
                raise KeyError(f"{key!r} is already registered in the {self.name} registry")
            if self.separator and self.separator in key:
                raise ValueError(f"{key!r}: names in the {self.name} registry cannot contain {self.separator!r}")
            self._obj[key] = value
            if argument is not None:
                self._arguments[key] = (argument, argument_required)
            return value

        return add if obj is _DECORATE else add(obj)  # type: ignore[arg-type]

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first: a location looking a name up while it is imported must not recurse
            try:
                for module in self.locations:
                    importlib.import_module(module)
            except BaseException:
                self._loaded = False  # a failed import is raised again on the next lookup, never half a registry
                raise

    def names(self) -> List[str]:
        """Every registered name, sorted (ignoring case)."""
        self._load()
        return sorted(self._obj, key=str.lower)

    def split(self, value: str) -> Tuple[str, Optional[str]]:
        """``"folder:/data"`` -> ``("folder", "/data")``; a value without the separator -> ``(value, None)``."""
        if self.separator and self.separator in value:
            entry, argument = value.split(self.separator, 1)
            return entry, argument
        return value, None

    def choices(self) -> str:
        """The registered names as a config would write them: ``'avg', 'gem', 'max'``, ``'folder:PATH'``."""
        shown = []
        for n in self.names():
            metavar, required = self._arguments.get(n, ("", False))
            shown.append(repr(n + (f"{self.separator}{metavar}" if required else f"[{self.separator}{metavar}]"
                                   if metavar else "")))
        return ("'' (none), " if self.optional else "") + ", ".join(shown)

    def check(self, value: object, key: Optional[str] = None) -> None:
        """Raise a ConfigError naming ``key`` unless ``value`` chooses an entry (with the argument it needs)."""
        key = key or " / ".join(self.keys) or f"a {self.name} name"
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a {self.name} name, one of {self.choices()} (the {self.name} "
                              f"registry); got {type(value).__name__} {value!r}.")
        if value == "" and self.optional:
            return
        entry, argument = self.split(value)
        self._load()
        if entry not in self._obj:
            close = close_matches(entry, list(self._obj), cutoff=0.4)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"{key} must be one of {self.choices()} (the {self.name} registry); got "
                              f"{value!r}.{hint}")
        metavar, required = self._arguments.get(entry, (None, False))
        if metavar is None and argument is not None:
            raise ConfigError(f"{key}: the {self.name} {entry!r} takes no {self.separator!r} argument; got "
                              f"{value!r}; write {entry!r}.")
        if metavar is not None and argument is not None and not argument.strip():
            raise ConfigError(f"{key}: the {metavar} after {self.separator!r} is empty in {value!r}; write "
                              f"{entry}{self.separator}{metavar}.")
        if metavar is not None and required and argument is None:
            raise ConfigError(f"{key}: {entry!r} needs a {metavar}: write {entry}{self.separator}{metavar}; got "
                              f"{value!r}.")

    def get(self, name: str, key: Optional[str] = None):
        """The entry ``name`` chooses (the part before the separator of a parametrised value; None for "" in an
        optional registry). An unknown name is a ConfigError naming ``key`` (default: the registry's keys),
        listing the choices and the closest ones."""
        self.check(name, key)
        return self._obj.get(self.split(name)[0])

    def items(self) -> List[Tuple[str, object]]:
        """(name, entry) pairs in registration order."""
        self._load()
        return list(self._obj.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._obj

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._obj)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, keys={list(self.keys)}, {sorted(self._obj)})"
