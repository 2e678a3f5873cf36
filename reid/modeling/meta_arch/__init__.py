"""Meta-architectures behind META_ARCH_REGISTRY (importing a module registers it)."""
from . import baseline, clipreid, mgn, transreid  # noqa: F401
from .registry import META_ARCH_REGISTRY

__all__ = ["META_ARCH_REGISTRY"]
