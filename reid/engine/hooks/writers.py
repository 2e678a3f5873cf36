"""Hooks that tell people what happened: the console/log.txt lines, ``train_log.jsonl``, TensorBoard scalars and,
at the end, ``metrics.json`` with ``report.html`` (rank 0 only under DDP, except the console lines)."""
from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ...evaluation.results import score_names
from ...utils.errors import ConfigError
from ...utils.logger import format_duration
from ...utils.outputs import HISTORY
from .base import PRIORITY_LAST, HookBase

logger = logging.getLogger("reid")

TENSORBOARD = "tensorboard"
_EPOCH_FIELDS = ("epoch", "lr", "loss_total", "time_s", "images_per_s")  # an epoch record's keys besides the terms


class RecordWriter(HookBase):
    """Writes each of ``trainer.records`` once (epoch and evaluation records), at the end of every epoch and of
    training, whatever the order of the hooks that add them."""

    def __init__(self) -> None:
        self._written = 0

    def write(self, record: Dict[str, Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        records: List[dict] = self.trainer.records
        for record in records[self._written:]:
            self.write(record)
        self._written = len(records)

    def after_epoch(self) -> None:
        self.flush()

    def after_train(self) -> None:
        self.flush()


class ConsoleWriter(RecordWriter):
    """Every ``period`` iterations (SOLVER.LOG_PERIOD) the step's loss terms and LR on the progress bar and in the
    log; after every epoch its mean losses, time and throughput."""

    def __init__(self, period: int) -> None:
        super().__init__()
        self.period = period

    def after_step(self) -> None:
        t = self.trainer
        if (t.iter + 1) % self.period:
            return
        current = dict(zip(t.losses.names, t.losses.last.tolist()))  # the one sync of the step
        lr = t.optimizer.param_groups[0]["lr"]
        t.progress.set_postfix(loss=f"{sum(current.values()):.3f}", lr=f"{lr:.2e}")
        logger.info("epoch %d iter %d/%d  %s  lr %.3e", t.epoch + 1, t.iter + 1, t.iters_per_epoch,
                    "  ".join(f"{k} {v:.4f}" for k, v in current.items()), lr)

    def write(self, record: Dict[str, Any]) -> None:
        if "loss_total" not in record:
            return  # evaluations are logged by the evaluation itself (a table)
        t = self.trainer
        terms = {k: v for k, v in record.items() if k not in _EPOCH_FIELDS}
        logger.info("epoch %d/%d done in %.1fs (%.0f img/s per process): %s%s", record["epoch"], t.max_epochs,
                    record["time_s"], record["images_per_s"], "  ".join(f"{k} {v:.4f}" for k, v in terms.items()),
                    self.eta(record["epoch"]))

    def eta(self, done: int) -> str:
        """``  ETA 3m 10s (14:22)`` after epoch ``done``: this session's mean time per epoch (evaluations
        included) times the epochs left; "" after the last."""
        t = self.trainer
        epochs, left = done - t.start_epoch, t.max_epochs - done
        if epochs <= 0 or left <= 0:
            return ""
        seconds = t.clock.session() / epochs * left
        at = (_dt.datetime.now() + _dt.timedelta(seconds=seconds)).strftime("%H:%M")
        return f"  ETA {format_duration(seconds)} ({at})"


class HistoryWriter(RecordWriter):
    """Appends every record to ``OUTPUT_DIR/train_log.jsonl`` (one JSON object a line; read by the report).

    A resumed run first drops the records of the epochs after its checkpoint's, which it trains again, so the
    history holds each epoch once."""

    def __init__(self, output_dir: Path) -> None:
        super().__init__()
        self.path = Path(output_dir) / HISTORY

    def before_train(self) -> None:
        if not self.path.is_file():
            return
        start = self.trainer.start_epoch
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if _epoch_of(line) is not None and _epoch_of(line) <= start]
        if len(kept) == len(lines):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        tmp.replace(self.path)
        logger.info("%s: dropped %d record(s) after epoch %d, the checkpoint's (those epochs are trained again)",
                    self.path, len(lines) - len(kept), start)

    def write(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _epoch_of(line: str) -> Optional[int]:
    """The epoch of a train_log.jsonl line; None for a line that is not a record (e.g. cut by a crash)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    epoch = record.get("epoch") if isinstance(record, dict) else None
    return epoch if isinstance(epoch, int) else None


class TensorBoardWriter(RecordWriter):
    """Scalars in ``OUTPUT_DIR/tensorboard/`` (VIS.TENSORBOARD): per epoch ``train/<loss term>``, ``train/lr``,
    ``train/images_per_s``, ``train/time_s``; per evaluation ``eval/<test set>/<metric>`` (and
    ``eval/<test set>/rerank/<metric>``). The step is the epoch. Needs the optional ``tensorboard`` package."""

    def __init__(self, output_dir: Path) -> None:
        super().__init__()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("VIS.TENSORBOARD is True but the tensorboard package is not installed. Install it "
                              "with `pip install tensorboard` (or `pip install -e '.[tensorboard]'` in a checkout of "
                              "reid), or set VIS.TENSORBOARD False.") from None
        self._writer_class = SummaryWriter
        self.log_dir = Path(output_dir) / TENSORBOARD
        self._writer: Optional[Any] = None

    def write(self, record: Dict[str, Any]) -> None:
        if self._writer is None:  # opened on first use: constructing the hook writes nothing
            start = self.trainer.start_epoch  # a resumed run replaces the scalars of the epochs it trains again
            self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=start + 1 if start else None)
        epoch = record["epoch"]
        if "eval" not in record:
            for key, value in record.items():
                if key != "epoch":
                    self._writer.add_scalar(f"train/{key}", value, epoch)
            return
        for name, metrics in record["eval"].items():
            for prefix, values in ((f"eval/{name}", metrics), (f"eval/{name}/rerank", metrics.get("rerank", {}))):
                for key in score_names(values):  # rank10 only when TEST.MAX_RANK >= 10; recall@K of retrieval sets
                    self._writer.add_scalar(f"{prefix}/{key}", values[key], epoch)

    def flush(self) -> None:
        super().flush()
        if self._writer is not None:
            self._writer.flush()

    def after_train(self) -> None:
        super().after_train()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ReportHook(HookBase):
    """After training: ``write(last_eval, results)`` writes the final files, ``metrics.json`` (``trainer.results``),
    ``report.html`` (VIS.REPORT) and the final table (the trainer passes the engine evaluator's
    ``write_results``)."""

    priority = PRIORITY_LAST

    def __init__(self, write: Callable[[Dict[str, Any], dict], Any]) -> None:
        self._write = write

    def after_train(self) -> None:
        self._write(self.trainer.last_eval, self.trainer.results)
