"""The hook-based training engine: the hook protocol and its order, hook state in checkpoints, EMA weights,
the best checkpoint, TensorBoard scalars and the fp16 LR-schedule warning."""
import json
import logging
import sys
import warnings

import pytest
import torch
from torch import nn

from reid.checkpoint import BEST, FINAL, LAST, Checkpointer, load_checkpoint
from reid.config import get_cfg
from reid.solver import build_lr_scheduler, build_optimizer
from reid.engine.hooks import (PRIORITY_CHECKPOINT, PRIORITY_LAST, BestCheckpointer, EvalHook, HookBase, HookStates,
                               TensorBoardWriter)
from reid.engine.train_loop import TrainerBase
from reid.registry import SCORE_REGISTRY
from reid.utils.errors import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------------------------------------------
# A loop without data or a real model: the protocol itself


class _Loader:
    def __init__(self, iters: int) -> None:
        self.iters, self.epoch = iters, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def close(self) -> None:
        pass

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.epoch)
        for _ in range(self.iters):
            yield {"images": torch.randn(4, 3, generator=gen)}


class _Linear(nn.Linear):
    num_classes = 1


class _TinyTrainer(TrainerBase):
    def __init__(self, hooks, epochs: int = 2, iters: int = 3, save_dir=None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = _Linear(3, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.train_loader = _Loader(iters)
        self.max_epochs, self.iters_per_epoch = epochs, iters
        self.register_hooks(hooks)
        if save_dir is not None:
            self.checkpointer = Checkpointer(self.model, get_cfg(), save_dir, optimizer=self.optimizer,
                                             hooks=HookStates(self.hooks))

    def train_step(self, batch):
        loss = self.model(batch["images"]).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss_a": loss, "loss_b": 2 * loss}


class _Recorder(HookBase):
    def __init__(self, calls, tag="hook") -> None:
        self.calls, self.tag = calls, tag

    @property
    def name(self) -> str:
        return self.tag

    def before_train(self):
        self.calls.append((self.tag, "before_train"))

    def before_epoch(self):
        self.calls.append((self.tag, "before_epoch", self.trainer.epoch))

    def after_step(self):
        self.calls.append((self.tag, "after_step", self.trainer.epoch, self.trainer.iter))

    def after_epoch(self):
        self.calls.append((self.tag, "after_epoch", self.trainer.epoch))

    def after_train(self):
        self.calls.append((self.tag, "after_train"))


def test_hooks_are_called_in_protocol_order():
    calls = []
    _TinyTrainer([_Recorder(calls)], epochs=2, iters=2).train()
    assert calls == [("hook", "before_train"),
                     ("hook", "before_epoch", 0), ("hook", "after_step", 0, 0), ("hook", "after_step", 0, 1),
                     ("hook", "after_epoch", 0),
                     ("hook", "before_epoch", 1), ("hook", "after_step", 1, 0), ("hook", "after_step", 1, 1),
                     ("hook", "after_epoch", 1),
                     ("hook", "after_train")]


def test_hooks_run_by_priority_then_registration_order():
    calls = []
    late = _Recorder(calls, "checkpoint")
    late.priority = PRIORITY_CHECKPOINT
    last = _Recorder(calls, "report")
    last.priority = PRIORITY_LAST
    trainer = _TinyTrainer([last, late, _Recorder(calls, "a"), _Recorder(calls, "b")], epochs=1, iters=1)
    trainer.train()
    assert [tag for tag, stage, *_ in calls if stage == "after_epoch"] == ["a", "b", "checkpoint", "report"]
    with pytest.raises(ValueError, match="unique"):
        trainer.register_hooks([_Recorder(calls, "a")])


def test_after_train_is_not_called_when_training_fails():
    calls = []

    class Failing(_Recorder):
        def after_epoch(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _TinyTrainer([Failing(calls)]).train()
    assert ("hook", "after_train") not in calls


def _protocol(epochs: int, iters: int) -> list:
    """The hook calls of a whole run of ``epochs`` x ``iters``."""
    calls = []
    _TinyTrainer([_Recorder(calls)], epochs=epochs, iters=iters).train()
    return calls


@pytest.mark.parametrize("max_iters", [1, 3, 4, 6, 100])
def test_max_iters_stops_after_that_iteration_leaving_an_unfinished_epoch_unfinished(max_iters):
    calls = []
    trainer = _TinyTrainer([_Recorder(calls)], epochs=2, iters=3)
    trainer.max_iters = max_iters
    trainer.train()
    steps = [c for c in calls if c[1] == "after_step"]
    assert len(steps) == min(max_iters, 6) and steps[-1][2:] == divmod(min(max_iters, 6) - 1, 3)
    whole = _protocol(2, 3)
    if max_iters >= 6:  # the whole run: after_train too
        assert calls == whole
        return
    assert calls == whole[:whole.index(steps[-1]) + 1 + (max_iters % 3 == 0)]  # + after_epoch of a whole epoch
    assert ("hook", "after_train") not in calls
    assert [r["epoch"] for r in trainer.records] == list(range(1, max_iters // 3 + 1))


def test_epoch_records_hold_the_mean_loss_terms():
    trainer = _TinyTrainer([], epochs=2, iters=3)
    trainer.train()
    assert [r["epoch"] for r in trainer.records] == [1, 2]
    record = trainer.records[-1]
    assert record["loss_b"] == pytest.approx(2 * record["loss_a"])
    assert record["loss_total"] == pytest.approx(3 * record["loss_a"])
    assert record["lr"] == 0.1 and record["images_per_s"] > 0


# --------------------------------------------------------------------------------------------------------------
# Hook state in checkpoints


class _StepCounter(HookBase):
    """The CONTRIBUTING.md example: a hook with state."""

    def __init__(self) -> None:
        self.steps = 0

    def after_step(self):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_custom_hook_state_round_trips_through_the_training_checkpoint(tiny_train_cfg, tmp_path):
    from reid.engine.trainer import Trainer

    class CountingTrainer(Trainer):
        def build_hooks(self):
            return super().build_hooks() + [_StepCounter()]

    cfg = tiny_train_cfg("TEST.EVAL_PERIOD", "100")
    trainer = CountingTrainer(cfg)
    trainer.train()
    assert trainer.hooks[-1].name == "ReportHook"  # the report runs last, the custom hook before the checkpoints
    state = load_checkpoint(tmp_path / "out" / LAST)
    assert state["hooks"]["_StepCounter"] == {"steps": trainer.iters_per_epoch}
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "cfg", "num_classes", "meta_architecture",
            "scaler"} <= set(state)
    longer = tiny_train_cfg("TEST.EVAL_PERIOD", "100", "SOLVER.MAX_EPOCHS", "2")  # the run is finished: extend it
    resumed = CountingTrainer(longer, resume=True, allow_config_change=True)
    (counter,) = [h for h in resumed.hooks if isinstance(h, _StepCounter)]
    assert counter.steps == trainer.iters_per_epoch


def test_hook_states_missing_from_or_unknown_to_a_checkpoint_are_named(tmp_path, caplog):
    _TinyTrainer([BestCheckpointer("mAP")], save_dir=tmp_path).checkpointer.save(LAST, epoch=1)
    counter = _StepCounter()
    fresh = _TinyTrainer([counter], save_dir=tmp_path)
    counter.steps = 5
    logger = logging.getLogger("reid")  # it does not propagate to caplog's root handler
    logger.addHandler(caplog.handler)
    try:
        fresh.checkpointer.resume(tmp_path / LAST)
    finally:
        logger.removeHandler(caplog.handler)
    assert counter.steps == 5  # nothing to restore: it keeps its fresh state
    assert "no state of the _StepCounter hook" in caplog.text
    assert "hooks this run does not have (best_checkpoint); ignored" in caplog.text


# --------------------------------------------------------------------------------------------------------------
# EMA


def _float64_state(model: nn.Module) -> dict:
    return {k: v.detach().double().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def test_ema_follows_the_float64_recurrence_of_the_weights(tiny_train_cfg):
    from reid.engine.trainer import Trainer

    decay = 0.5  # reached after 8 steps of the warm-up min(decay, (1 + n) / (10 + n))
    trainer = Trainer(tiny_train_cfg("SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", str(decay)))
    ema = trainer.ema
    ema.before_train()
    expected = _float64_state(trainer.model)
    trainer.model.train()
    batch = next(iter(trainer.train_loader))
    for n in range(12):
        trainer.train_step(batch)
        ema.after_step()
        d = min(decay, (1 + n) / (10 + n))
        weights = _float64_state(trainer.model)
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in expected}
    got = ema.model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key].double(), value, rtol=1e-5, atol=1e-6, msg=key)
    raw = trainer.model.state_dict()
    assert any(not torch.equal(got[k], raw[k]) for k in expected)  # the average is not the weights
    assert all(torch.equal(got[k], raw[k]) for k in raw if not raw[k].is_floating_point())  # counters copied
    assert ema.updates == 12


def test_evaluation_and_final_checkpoint_use_the_ema_weights(tiny_train_cfg, tmp_path, monkeypatch):
    from reid.engine import trainer as trainer_module
    from reid.engine.evaluator import Evaluator

    evaluated = []
    real = Evaluator.evaluate
    monkeypatch.setattr(Evaluator, "evaluate",
                        lambda self, model, *a, **k: evaluated.append(model) or real(self, model, *a, **k))
    trainer = trainer_module.Trainer(tiny_train_cfg("SOLVER.EMA.ENABLED", "True"))
    trainer.train()
    assert evaluated == [trainer.ema.model]
    out = tmp_path / "out"
    final, last = load_checkpoint(out / FINAL), load_checkpoint(out / LAST)
    ema_weights = last["hooks"]["ema"]["model"]
    assert all(torch.equal(final["model"][k], v) for k, v in ema_weights.items())
    assert any(not torch.equal(last["model"][k], v) for k, v in ema_weights.items())  # model_last: raw weights
    assert last["hooks"]["ema"]["updates"] == trainer.iters_per_epoch


def test_ema_decay_outside_0_1_is_a_config_error(tiny_train_cfg):
    from reid.engine.trainer import Trainer

    with pytest.raises(ConfigError, match=r"SOLVER\.EMA\.DECAY must be in \(0, 1\)"):
        Trainer(tiny_train_cfg("SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", "1.0"))


# --------------------------------------------------------------------------------------------------------------
# Best checkpoint


class _BestFileReader(HookBase):
    """After every epoch (after the checkpointers): what model_best.pt holds then."""

    priority = PRIORITY_LAST

    def __init__(self, path, seen) -> None:
        self.path, self.seen = path, seen

    def after_epoch(self):
        if self.path.exists():
            state = load_checkpoint(self.path)
            self.seen.append((state["best"], state["model"]["weight"].clone()))
        else:
            self.seen.append(None)


class _WeightsRecorder(HookBase):
    def __init__(self, weights) -> None:
        self.weights = weights

    def after_epoch(self):
        self.weights.append(self.trainer.model.weight.detach().clone())


def test_best_checkpoint_is_written_when_the_metric_improves_only(tmp_path):
    values = {1: 0.30, 2: 0.20, 3: 0.50, 4: 0.50}

    def evaluate(epoch):
        return {"mAP": values[epoch], "rank1": 1 - values[epoch], "datasets": {}}

    seen = []
    best = BestCheckpointer("mAP")
    trainer = _TinyTrainer([EvalHook(1, evaluate), best, _BestFileReader(tmp_path / BEST, seen)], epochs=4,
                           save_dir=tmp_path)
    weights = []
    trainer.register_hooks([_WeightsRecorder(weights)])
    trainer.train()
    chosen = [s[0] for s in seen]
    assert chosen == [{"metric": "mAP", "value": 0.30, "epoch": 1}, {"metric": "mAP", "value": 0.30, "epoch": 1},
                      {"metric": "mAP", "value": 0.50, "epoch": 3}, {"metric": "mAP", "value": 0.50, "epoch": 3}]
    assert torch.equal(seen[1][1], weights[0]) and torch.equal(seen[3][1], weights[2])  # that epoch's weights
    assert best.state_dict() == {"metric": "mAP", "value": 0.50, "epoch": 3}
    restored = BestCheckpointer("mAP")
    restored.load_state_dict(best.state_dict())
    assert (restored.best, restored.best_epoch) == (0.50, 3)


@pytest.mark.parametrize("metric, max_rank, match", [
    ("accuracy", "50", r"TEST\.BEST_METRIC must be one of .*'rank1'.*; got 'accuracy'"),
    ("rank10", "5", r"TEST\.BEST_METRIC 'rank10' needs TEST\.MAX_RANK >= 10"),
])
def test_unknown_best_metric_is_a_config_error_before_any_data_is_read(tiny_train_cfg, tmp_path, metric,
                                                                       max_rank, match):
    from reid.engine.trainer import Trainer

    missing_data = ("DATASETS.NAMES", "['Market1501']", "DATASETS.ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=match):
        Trainer(tiny_train_cfg(*missing_data, "TEST.BEST_METRIC", metric, "TEST.MAX_RANK", max_rank))


# --------------------------------------------------------------------------------------------------------------
# TensorBoard


def test_tensorboard_scalars_match_the_training_log(tiny_train_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reid.engine.trainer import Trainer

    metrics = Trainer(tiny_train_cfg("VIS.TENSORBOARD", "True", "SOLVER.MAX_EPOCHS", "2",
                                     "TEST.EVAL_PERIOD", "1")).train()
    out = tmp_path / "out"
    history = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = lambda tag: [(e.step, e.value) for e in events.Scalars(tag)]  # noqa: E731
    epochs = [r for r in history if "loss_total" in r]
    for key in ("loss_total", "lr", "images_per_s", *[k for k in epochs[0] if k.startswith("loss_")]):
        assert scalars(f"train/{key}") == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in epochs], key
    evals = [r for r in history if "eval" in r]
    assert [r["epoch"] for r in evals] == [1, 2]
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert scalars(f"eval/Synthetic/{key}") == [(r["epoch"], pytest.approx(r["eval"]["Synthetic"][key],
                                                                                rel=1e-6)) for r in evals]
    assert scalars("eval/Synthetic/mAP")[-1][1] == pytest.approx(metrics["mAP"], rel=1e-6)
    scores = {f"eval/Synthetic/{k}" for k in SCORE_REGISTRY if k in evals[0]["eval"]["Synthetic"]}
    assert {t for t in events.Tags()["scalars"] if t.count("/") == 2 and t.startswith("eval/")} == scores


def test_tensorboard_missing_is_a_config_error_saying_how_to_install(tiny_train_cfg, tmp_path, monkeypatch):
    from reid.engine.trainer import Trainer

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # "import tensorboard" raises ImportError
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    message = r"tensorboard package is not installed.*pip install tensorboard.*pip install -e '\.\[tensorboard\]'"
    with pytest.raises(ConfigError, match=message):
        TensorBoardWriter(tmp_path)
    missing_data = ("DATASETS.NAMES", "['Market1501']", "DATASETS.ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="VIS.TENSORBOARD"):  # before any data is read
        Trainer(tiny_train_cfg(*missing_data, "VIS.TENSORBOARD", "True"))


# --------------------------------------------------------------------------------------------------------------
# The LR schedule after a step the fp16 GradScaler skipped


def test_schedule_after_a_skipped_fp16_step_neither_warns_nor_stalls(tiny_train_cfg):
    from reid.engine.trainer import Trainer

    trainer = Trainer(tiny_train_cfg("SOLVER.AMP", "fp16", "SOLVER.WARMUP_EPOCHS", "1"))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)  # the first steps overflow: skipped
    first_lr = trainer.optimizer.param_groups[0]["lr"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train_epoch(0)
    assert trainer.scaler.get_scale() < 2.0**60  # steps were skipped ...
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]  # ... without torch's warning
    assert trainer.scheduler.last_epoch == trainer.iters_per_epoch  # the schedule advanced every iteration
    assert trainer.optimizer.param_groups[0]["lr"] > first_lr

    # The warning the hook avoids: a fresh schedule stepped right after a skipped optimizer step.
    trainer.optimizer = build_optimizer(trainer.cfg, trainer.model)
    schedule = build_lr_scheduler(trainer.cfg, trainer.optimizer, trainer.iters_per_epoch)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)
    trainer.train_step(next(iter(trainer.train_loader)))
    with pytest.warns(UserWarning, match=r"lr_scheduler\.step\(\)` before `optimizer\.step\(\)"):
        schedule.step()
