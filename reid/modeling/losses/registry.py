"""Registries tying config names to loss, classifier and miner classes."""
from ...utils.registry import Registry

LOSS_REGISTRY = Registry("loss")  # MODEL.LOSSES.NAME entries; each class has ``kind`` and ``from_config(cfg)``
CLASSIFIER_REGISTRY = Registry("classifier")  # MODEL.HEADS.CLS_LAYER: linear, circle, cosface
MINER_REGISTRY = Registry("pair miner")  # MODEL.LOSSES.<LOSS>.MINER: which pairs a pair loss may use
