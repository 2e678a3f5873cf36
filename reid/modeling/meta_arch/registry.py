"""Meta-architecture registry: ``MODEL.META_ARCHITECTURE`` -> class ``Cls(cfg, num_classes)``."""
from ...utils.registry import Registry

META_ARCH_REGISTRY = Registry("meta-architecture")
