"""The hook protocol of the training loop (after detectron2's ``HookBase``) and the checkpoint entry of hook states.

A hook extends training without editing the loop: the loop (``reid.engine.train_loop.TrainerBase``) calls
``before_train``, then per epoch ``before_epoch``, ``after_step`` after every optimisation step and
``after_epoch``, and ``after_train`` once training succeeded (not after an error: a crashed run writes no final
checkpoint or metrics). Hooks run by ascending ``priority``, ties in the order they were registered. A hook with
state implements ``state_dict()`` / ``load_state_dict(state)``; the checkpoint keeps it under ``hooks[name]`` and
``--resume`` restores it.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Sequence

logger = logging.getLogger("reid")

# Checkpointers save the state of every hook after it ran in an epoch, so they run late, the report last (it
# links the final checkpoint). A hook that must run before or after the others sets its own priority.
PRIORITY_HIGH = 30
PRIORITY_NORMAL = 50
PRIORITY_CHECKPOINT = 80
PRIORITY_LAST = 90


class HookBase:
    """Base class of training hooks: every method is optional.

    ``self.trainer`` is the trainer that registered the hook (a weak proxy): its ``model``, ``optimizer``,
    ``epoch`` (0-based, the running epoch), ``iter`` (0-based, within the epoch), ``max_epochs``, ``losses`` (the
    epoch's loss sums on the device), ``terms`` (the last step's loss terms), ``records``, ``metrics`` and
    ``results`` (see ``TrainerBase``).
    """

    trainer: Any = None
    priority: int = PRIORITY_NORMAL

    @property
    def name(self) -> str:
        """The key of this hook's state in a checkpoint's ``hooks`` entry (unique within a trainer)."""
        return type(self).__name__

    def before_train(self) -> None:
        """Once, before the first epoch of this run (also after a resume)."""

    def before_epoch(self) -> None:
        """At the start of every epoch, after the loader was set to it."""

    def after_step(self) -> None:
        """After every optimisation step; runs on every iteration, so it must not read values back from the
        device (no ``.item()``) except every few iterations."""

    def after_epoch(self) -> None:
        """At the end of every epoch."""

    def after_train(self) -> None:
        """Once, after the last epoch of a successful run."""


def has_state(hook: HookBase) -> bool:
    return callable(getattr(hook, "state_dict", None)) and callable(getattr(hook, "load_state_dict", None))


class HookStates:
    """The checkpointable of the hooks that have state: ``{hook.name: hook.state_dict()}``."""

    def __init__(self, hooks: Sequence[HookBase]) -> None:
        self.hooks = [h for h in hooks if has_state(h)]

    def state_dict(self) -> Dict[str, Any]:
        return {h.name: h.state_dict() for h in self.hooks}

    def load_state_dict(self, states: Dict[str, Any]) -> None:
        for hook in self.hooks:
            if hook.name in states:
                hook.load_state_dict(states[hook.name])
            else:
                logger.warning("The checkpoint has no state of the %s hook (it was off when the checkpoint was "
                               "written); it starts afresh.", hook.name)
        unused = sorted(set(states) - {h.name for h in self.hooks})
        if unused:
            logger.warning("The checkpoint holds state of hooks this run does not have (%s); ignored.",
                           ", ".join(unused))
