"""Where a run and its evaluations write, checked before any work: the output-folder rules in one place.

Training (:func:`prepare_output_dir`):

- A new run starts only in a folder without a run's records (``reid.utils.outputs.RUN_RECORDS``); otherwise it
  stops with the choices: ``--resume``, another ``OUTPUT_DIR``, or ``--overwrite``, which moves the old run into
  ``OUTPUT_DIR/previous-<timestamp>/`` first and deletes nothing.
- ``--resume`` continues from ``model_last.pt``. The config stored in it is compared with the given one: a
  change of a key that changes the result (``reid.config.changes.RESUME_RULES``) is an error naming each key
  with both values, unless ``--allow-config-change``; other changes are logged.
- ``--resume`` of a finished run (``model_last.pt`` at ``SOLVER.MAX_EPOCHS``, ``model_final.pt`` and
  ``metrics.json`` written) raises :class:`FinishedRun`: nothing is trained, evaluated or appended.

Evaluations (:func:`evaluation_dir`; ``reid-test`` and ``reid-visualize`` through ``reid.engine.evaluator``):

- An evaluation writes into ``OUTPUT_DIR/eval/<name>/`` (:func:`reid.utils.outputs.evaluation_name`) when
  ``OUTPUT_DIR`` holds a training run (``TRAINING_RECORDS``), so a run's ``config.yaml``, ``metrics.json``,
  ``train_log.jsonl`` and ``report.html`` stay those of the training; when a name is given; when it evaluates a
  checkpoint (MODEL.WEIGHTS) without an OUTPUT_DIR given on the command line (a standalone checkpoint, e.g. one
  reid-convert wrote, gets its own folder, as a run's checkpoints do, instead of the top of the config's shared
  ``output/``); and when ``OUTPUT_DIR`` holds another evaluation (another config). Otherwise (the untrained model,
  or a checkpoint into an OUTPUT_DIR given for it) into ``OUTPUT_DIR`` itself. A folder of that name holding an
  evaluation with another config is kept: ``-2``, ``-3``, ... is appended instead.
- An evaluation of a checkpoint given without ``--config`` goes into the eval/ of the run the checkpoint is in
  (:func:`checkpoint_opts`). ``eval/index.html`` lists the evaluations in an ``eval/`` folder (drawn by
  ``reid.visualization.evaluations``; rewritten after each one, and at the end of a training run).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..checkpoint import load_checkpoint
from ..config import cfg_to_dict, get_cfg, load_cfg
from ..config.changes import Change, flat_items, resume_changes
from ..utils.distributed import broadcast_object, dist_info
from ..utils.errors import CheckpointError, ConfigError, ReIDError
from ..utils.outputs import CONFIG, EVAL_DIR, FINAL, LAST, METRICS, NOT_EVALUATED, PREVIOUS_PREFIX, RUN_RECORDS, \
    evaluation_name, holds_training_run, present

logger = logging.getLogger("reid")


class FinishedRun(Exception):
    """``--resume`` of a run that is finished: there is nothing to do (tools/train.py says so and exits 0).
    ``metrics`` is the run's ``metrics.json``."""

    def __init__(self, message: str, metrics: Dict[str, Any]) -> None:
        super().__init__(message)
        self.metrics = metrics


@dataclass
class RunStart:
    """How a run starts in its folder: ``state`` is model_last.pt's content when resuming; ``changes`` the config
    keys that differ from the checkpoint's; ``moved_to`` where ``--overwrite`` moved the old run."""

    state: Optional[Dict[str, Any]] = None
    changes: List[Change] = field(default_factory=list)
    moved_to: Optional[Path] = None

    def log(self, logger: logging.Logger) -> None:
        if self.moved_to is not None:
            logger.info("--overwrite: the run that was in this folder is now in %s (nothing was deleted)",
                        self.moved_to)
        for change in self.changes:
            if change.changes_result:
                logger.warning("Resumed with a changed config (--allow-config-change): %s", change)
            else:
                logger.info("Resumed with a changed config (does not change the trained weights): %s", change)


def prepare_output_dir(cfg, resume: bool = False, overwrite: bool = False,
                       allow_config_change: bool = False) -> RunStart:
    """Check ``cfg.OUTPUT_DIR`` for a new run (``resume`` False) or a resumed one, before any data is read or any
    file written; ``overwrite`` moves an existing run aside (rank 0; the other ranks wait for it)."""
    out = Path(cfg.OUTPUT_DIR)
    if resume and overwrite:
        raise ConfigError("--resume continues the run in OUTPUT_DIR and --overwrite moves it aside to start a new "
                          "one; give one of them.")
    if resume:
        return _resume(cfg, out, allow_config_change)
    found = present(out, RUN_RECORDS)
    if found and not overwrite:
        raise ConfigError(
            f"OUTPUT_DIR {str(out)!r} already holds a run ({', '.join(found)}); a new run would write over it. "
            f"Continue that run with --resume, choose another OUTPUT_DIR (e.g. OUTPUT_DIR {out}_2), or add "
            f"--overwrite to move it into {out / PREVIOUS_PREFIX}<timestamp>/ first (nothing is deleted).")
    moved = move_aside(out) if found and dist_info()[0] == 0 else None
    return RunStart(moved_to=broadcast_object(moved))  # the other ranks start after rank 0 moved the old run


def move_aside(folder: Path) -> Path:
    """Move everything in ``folder`` except earlier ``previous-*`` folders into ``folder/previous-<timestamp>/``;
    returns that folder."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = folder / f"{PREVIOUS_PREFIX}{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{PREVIOUS_PREFIX}{stamp}-{n}"
    target.mkdir()
    for entry in sorted(folder.iterdir()):
        if entry != target and not entry.name.startswith(PREVIOUS_PREFIX):
            entry.rename(target / entry.name)
    return target


def _resume(cfg, out: Path, allow_config_change: bool) -> RunStart:
    path = out / LAST
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint {str(path)!r} to resume from. Start without --resume, "
                              f"or set OUTPUT_DIR to the folder of the run to continue.")
    state = load_checkpoint(path)
    stored = state.get("cfg")
    if not isinstance(stored, dict):
        raise CheckpointError(f"--resume: {str(path)!r} stores no config, so the run's settings cannot be checked; "
                              f"it was not written by reid's Trainer. Start a new run instead.")
    changes = resume_changes(stored, cfg_to_dict(cfg), cfg_to_dict(get_cfg()))
    blocking = [c for c in changes if c.changes_result]
    if blocking and not allow_config_change:
        raise ConfigError(
            f"--resume: the config differs from the one {str(path)!r} was trained with, in keys that change the "
            f"result:\n" + "".join(f"  {c}\n" for c in blocking)
            + f"Resume with the run's own config (--config {out / CONFIG}, or the same --config and "
            f"overrides as when it started), or add --allow-config-change to go on with the new values (the "
            f"result is then not that of an uninterrupted run).")
    epoch, max_epochs = int(state.get("epoch", 0)), cfg.SOLVER.MAX_EPOCHS
    if epoch > max_epochs:
        raise ConfigError(f"--resume: {str(path)!r} is at epoch {epoch}, beyond SOLVER.MAX_EPOCHS {max_epochs}; "
                          f"set SOLVER.MAX_EPOCHS {epoch} or more.")
    if epoch == max_epochs and len(present(out, (FINAL, METRICS))) == 2:
        raise FinishedRun(_finished_message(out, epoch, changes), json.loads((out / METRICS).read_text()))
    return RunStart(state=state, changes=changes)


def _finished_message(out: Path, epoch: int, changes: List[Change]) -> str:
    text = (f"The run in {out} is finished: {LAST} is at epoch {epoch} of SOLVER.MAX_EPOCHS {epoch}, and {FINAL} "
            f"and {METRICS} are written. Nothing was trained, evaluated or written. To train it longer, raise "
            f"SOLVER.MAX_EPOCHS and add --allow-config-change; to evaluate it again, run tools/test.py with "
            f"MODEL.WEIGHTS {out / FINAL} (it writes into {out / EVAL_DIR}/).")
    if changes:
        text += " Config changes given (not applied): " + "; ".join(str(c) for c in changes) + "."
    return text


# -- evaluations: OUTPUT_DIR itself, or OUTPUT_DIR/eval/<name>/ of a training run ------------------------------


def evaluation_dir(cfg, name: Optional[str] = None, opts: Sequence[str] = ()) -> Path:
    """The folder an evaluation with ``cfg`` (and the command-line overrides ``opts``) writes into.

    ``OUTPUT_DIR/eval/<name>/``, the name by default derived from MODEL.WEIGHTS and ``opts``
    (:func:`reid.utils.outputs.evaluation_name`), when ``OUTPUT_DIR`` holds a training run, ``name`` is given,
    MODEL.WEIGHTS is evaluated without an OUTPUT_DIR in ``opts``, or ``OUTPUT_DIR`` holds an evaluation with another
    config; else ``OUTPUT_DIR`` itself. A folder of that name holding an evaluation with another config is kept:
    ``-2``, ``-3``, ... is appended instead.
    """
    out = Path(cfg.OUTPUT_DIR)
    standalone = bool(cfg.MODEL.WEIGHTS) and "OUTPUT_DIR" not in list(opts)[0::2]
    if not (name or standalone or holds_training_run(out) or _holds_other_evaluation(out, cfg)):
        return out
    base = name or evaluation_name(cfg.MODEL.WEIGHTS, opts)
    n = 1
    while True:
        folder = out / EVAL_DIR / (base if n == 1 else f"{base}-{n}")
        if not (folder / CONFIG).is_file() or _same_evaluation(folder / CONFIG, cfg):
            if n > 1:
                logger.info("%s holds an evaluation with another config; this one goes into %s",
                            out / EVAL_DIR / base, folder)
            return folder
        n += 1


def _holds_other_evaluation(folder: Path, cfg) -> bool:
    """Whether ``folder`` holds the files of an evaluation with another config than ``cfg``."""
    return len(present(folder, (CONFIG, METRICS))) == 2 and not _same_evaluation(folder / CONFIG, cfg)


def _same_evaluation(path: Path, cfg) -> bool:
    """Whether the config stored at ``path`` evaluates as ``cfg`` does (keys of NOT_EVALUATED aside)."""
    try:
        stored = load_cfg(path, freeze=False)
    except (ReIDError, OSError):
        return False
    a, b = (dict((k, v) for k, v in flat_items(c) if not k.startswith(NOT_EVALUATED)) for c in (stored, cfg))
    return a == b


def run_of(folder: Path) -> Optional[Path]:
    """The training run whose ``eval/`` holds ``folder``; None for an evaluation outside a run."""
    run = folder.parent.parent
    return run if folder.parent.name == EVAL_DIR and holds_training_run(run) else None


def evaluations_home(folder: Path) -> Optional[Path]:
    """The folder whose ``eval/`` holds the evaluation ``folder`` (a training run's, or the OUTPUT_DIR of
    standalone checkpoints' evaluations); None for an evaluation written into its OUTPUT_DIR itself."""
    return folder.parent.parent if folder.parent.name == EVAL_DIR else None


def checkpoint_opts(weights: str, opts: Sequence[str]) -> List[str]:
    """The overrides of an evaluation of ``weights`` run with the checkpoint's own config: ``opts``, led by
    ``OUTPUT_DIR`` the checkpoint's folder when that holds a training run and ``opts`` set no OUTPUT_DIR (its
    evaluations then go into its eval/ folder)."""
    opts = list(opts)
    folder = Path(weights).parent
    if "OUTPUT_DIR" not in opts[0::2] and holds_training_run(folder):
        return ["OUTPUT_DIR", str(folder), *opts]
    return opts


def with_output_dir(cfg, folder: str | Path):
    """A frozen copy of ``cfg`` writing into ``folder``."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = str(folder)
    cfg.freeze()
    return cfg
