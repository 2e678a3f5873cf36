"""Training hooks: one small class per concern, assembled by ``Trainer.build_hooks()`` (see CONTRIBUTING.md,
"Adding a hook")."""
from .base import PRIORITY_CHECKPOINT, PRIORITY_HIGH, PRIORITY_LAST, PRIORITY_NORMAL, HookBase, HookStates
from .checkpoint import BestCheckpointer, PeriodicCheckpointer
from .ema import EMAHook, ema_decay
from .evaluation import EvalHook
from .freeze import LayerFreeze
from .step import LRScheduler, NonFiniteGuard
from .writers import HISTORY, TENSORBOARD, ConsoleWriter, HistoryWriter, RecordWriter, ReportHook, TensorBoardWriter

__all__ = ["HookBase", "HookStates", "PRIORITY_HIGH", "PRIORITY_NORMAL", "PRIORITY_CHECKPOINT", "PRIORITY_LAST",
           "LRScheduler", "NonFiniteGuard", "LayerFreeze", "EMAHook", "ema_decay", "EvalHook", "BestCheckpointer",
           "PeriodicCheckpointer", "RecordWriter", "ConsoleWriter", "HistoryWriter", "TensorBoardWriter",
           "ReportHook", "HISTORY", "TENSORBOARD"]
