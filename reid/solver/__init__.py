"""Optimizers and the learning-rate schedule (``SOLVER.*``)."""
from . import amp  # noqa: F401 - registers the SOLVER.AMP modes
from .build import Schedule, build_lr_scheduler, build_optimizer, lr_factor, warmup_factor

__all__ = ["build_optimizer", "build_lr_scheduler", "lr_factor", "Schedule", "warmup_factor"]
