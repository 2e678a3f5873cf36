"""Shared helpers: registries, errors, logging, checkpoints, devices and seeding."""
from .errors import CheckpointError, ConfigError, DatasetError, ReIDError
from .registry import Registry

__all__ = ["Registry", "ReIDError", "ConfigError", "DatasetError", "CheckpointError"]
