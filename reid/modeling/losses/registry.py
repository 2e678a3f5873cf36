"""The loss, classifier and miner registries, declared with the others in ``reid.registry`` (kept here for
imports)."""
from ...registry import CLASSIFIER_REGISTRY, LOSS_REGISTRY, MINER_REGISTRY

__all__ = ["LOSS_REGISTRY", "CLASSIFIER_REGISTRY", "MINER_REGISTRY"]
