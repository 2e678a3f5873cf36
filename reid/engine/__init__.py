"""Training engine: ``trainer.Trainer``, ``optim`` (optimizer/schedule), ``checkpoint``, ``evaluate``, ``launch``
(torchrun / DDP) and ``cli``.

Submodules are imported where needed so that loading a checkpoint does not import the data pipeline.
"""
from .checkpoint import load_checkpoint, load_model_weights, save_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "load_model_weights"]
