"""Backbone registry: ``MODEL.BACKBONE.NAME`` -> builder ``f(cfg) -> nn.Module`` with ``out_channels``."""
from ...utils.registry import Registry

BACKBONE_REGISTRY = Registry("backbone")
