"""Faults that must not cost a user their work: a checkpoint writer killed mid-write, a full disk, a training run
killed with SIGKILL (resumes to the same numbers as an uninterrupted run), a non-finite loss; and the training
loader whose randomness is a function of (seed, rank, epoch) only, which exact resume relies on."""
import json
import math
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.checkpoint import load_checkpoint, save_checkpoint
from reid.utils.errors import CheckpointError, ReIDError

from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _popen(args, log: Path) -> subprocess.Popen:
    """A child writing its output to ``log`` (a pipe nobody reads could fill up and stall it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(args, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = log.read_text(errors="replace")
            pytest.fail(f"the child exited ({proc.returncode}) before {path.name} appeared:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.05)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


# --------------------------------------------------------------------------------------------------------------
# Checkpoint writes


WRITER = textwrap.dedent("""
    import io, sys, time, torch
    from reid.checkpoint import save_checkpoint
    path, marker = sys.argv[1], sys.argv[2]
    real_save = torch.save

    def slow_save(obj, f):  # write half of the real bytes, then stall until killed
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        open(marker, "w").close()
        time.sleep(600)

    torch.save = slow_save
    save_checkpoint(path, {"epoch": 2, "model": {"w": torch.ones(4_000_000)}})  # 16 MB
""")


def test_writer_killed_mid_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path, marker = tmp_path / "model_last.pt", tmp_path / "half_written"
    save_checkpoint(path, {"epoch": 1, "model": {"w": torch.zeros(3)}})
    log = tmp_path / "writer.log"
    proc = _popen([sys.executable, "-c", WRITER, str(path), str(marker)], log)
    _wait_for(marker, proc, log)
    (tmp,) = tmp_path.glob(".model_last.pt.*.tmp")
    assert tmp.stat().st_size >= 8_000_000  # killed in the middle of writing the new one
    _kill(proc)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.zeros(3))
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp)  # what the killed writer left is never mistaken for a checkpoint
    save_checkpoint(path, {"epoch": 3})  # the next write removes the dead writer's leftover
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half_written", "model_last.pt", "writer.log"]
    assert load_checkpoint(path)["epoch"] == 3


def test_real_write_failure_keeps_the_previous_checkpoint_and_says_so(tmp_path):
    """A write the OS refuses (here: over RLIMIT_FSIZE, EFBIG, the way ENOSPC fails too). torch.save alone would
    report it as 'RuntimeError: unexpected pos ...'; the message must name the real cause."""
    path = tmp_path / "model_last.pt"
    save_checkpoint(path, {"epoch": 1, "model": {"w": torch.zeros(3)}})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))
    try:
        with pytest.raises(CheckpointError) as err:
            save_checkpoint(path, {"epoch": 2, "model": {"w": torch.ones(1_000_000)}})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    message = str(err.value)
    assert "File too large" in message and "the previous checkpoint is intact" in message and "--resume" in message
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model_last.pt"]


# --------------------------------------------------------------------------------------------------------------
# A training run killed with SIGKILL resumes to the same result

KILLED_RUN = textwrap.dedent("""
    import runpy, sys, time
    stop_after, marker = int(sys.argv[1]), sys.argv[2]
    sys.argv = ["tools/train.py", *sys.argv[3:]]
    from reid.engine import trainer

    original, calls = trainer.Trainer.train_step, [0]

    def train_step(self, batch):  # the real step; after the chosen one, stall (mid-epoch) until killed
        out = original(self, batch)
        calls[0] += 1
        if calls[0] == stop_after:
            # Checkpoints are written in the background: a kill loses the write in flight (the previous file stays
            # intact, see the writer tests); this run is killed once epoch 2's checkpoint is on disk.
            self.checkpointer.wait()
            open(marker, "w").close()
            time.sleep(600)
        return out

    trainer.Trainer.train_step = train_step
    runpy.run_path("tools/train.py", run_name="__main__")
""")


# Every optional hook on: EMA weights (evaluated, in model_final.pt), model_best.pt (evaluations after epochs 2
# and 4 of 4, so the resumed run must know epoch 2's score), TensorBoard scalars.
ALL_HOOKS = ("SOLVER.EMA.ENABLED", "True", "TEST.EVAL_PERIOD", "2", "VIS.TENSORBOARD", "True")
HOOK_VARIANTS = pytest.mark.parametrize("hooks", [(), ALL_HOOKS], ids=["default-hooks", "ema-best-tensorboard"])


def _same_hook_outputs(a: Path, b: Path) -> None:
    """model_best.pt and the hook states in model_last.pt of two runs are equal, bit for bit."""
    best_a, best_b = (load_checkpoint(d / "model_best.pt") for d in (a, b))
    assert best_a["best"] == best_b["best"] and best_a["best"]["epoch"] in (2, 4)
    assert all(torch.equal(v, best_b["model"][k]) for k, v in best_a["model"].items())
    hooks_a, hooks_b = (load_checkpoint(d / "model_last.pt")["hooks"] for d in (a, b))
    assert hooks_a["best_checkpoint"] == hooks_b["best_checkpoint"]
    assert hooks_a["ema"]["updates"] == hooks_b["ema"]["updates"] > 0
    assert all(torch.equal(v, hooks_b["ema"]["model"][k]) for k, v in hooks_a["ema"]["model"].items())


@pytest.mark.slow
@HOOK_VARIANTS
def test_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path, synthetic_root, hooks, workers=0):
    from reid.config import load_cfg
    from reid.data import build_dataset

    if hooks:
        pytest.importorskip("tensorboard")
    opts = ["DATASETS.ROOT", synthetic_root, *TINY_TRAINING, "DATALOADER.NUM_WORKERS", str(workers),
            "SOLVER.MAX_EPOCHS", "4", "SOLVER.WARMUP_EPOCHS", "2", "TEST.EVAL_PERIOD", "4", "DETERMINISTIC", "True",
            "SEED", "3", *hooks]
    cfg = load_cfg(None, opts)
    build_dataset(cfg, "Synthetic")  # generated once, before the runs share it
    iters = 4  # 8 identities x 6 images, P x K = 4 x 4: 16 groups of 4 -> 4 batches an epoch
    straight, killed, marker = tmp_path / "straight", tmp_path / "killed", tmp_path / "stalled"
    train = [sys.executable, str(REPO / "tools/train.py")]
    logs = {name: tmp_path / f"{name}.log" for name in ("reference", "victim", "resumed")}
    reference = _popen([*train, *opts, "OUTPUT_DIR", str(straight)], logs["reference"])
    victim = _popen([sys.executable, "-c", KILLED_RUN, str(2 * iters + 2), str(marker), *opts, "OUTPUT_DIR",
                     str(killed)], logs["victim"])
    _wait_for(marker, victim, logs["victim"])  # stalled after 2 iterations of epoch 3
    _kill(victim)
    assert load_checkpoint(killed / "model_last.pt")["epoch"] == 2
    assert not (killed / "metrics.json").exists()
    resumed = _popen([*train, *opts, "OUTPUT_DIR", str(killed), "--resume"], logs["resumed"])
    for name, proc in (("resumed", resumed), ("reference", reference)):
        assert proc.wait(timeout=300) == 0, logs[name].read_text()[-3000:]

    a, b = (json.loads((d / "metrics.json").read_text()) for d in (straight, killed))
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert abs(a[key] - b[key]) <= 1e-6, (key, a[key], b[key])
    wa, wb = (load_checkpoint(d / "model_final.pt")["model"] for d in (straight, killed))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # in fact bit for bit
    history = [json.loads(line) for line in (killed / "train_log.jsonl").read_text().splitlines()]
    reference_history = [json.loads(line) for line in (straight / "train_log.jsonl").read_text().splitlines()]
    losses = lambda h: {r["epoch"]: r["loss_total"] for r in h if "loss_total" in r}  # noqa: E731
    assert losses(history) == losses(reference_history)  # epochs 3 and 4 redone identically
    if hooks:
        _same_hook_outputs(straight, killed)
    print(f"workers {workers}: straight {a['mAP']:.9f} / {a['rank1']:.9f}, resumed {b['mAP']:.9f} / {b['rank1']:.9f}")


class _Crash(Exception):
    pass


@pytest.mark.usefixtures("single_thread")
@HOOK_VARIANTS
def test_run_with_loader_workers_crashed_mid_epoch_resumes_exactly(tiny_train_cfg, tmp_path, hooks):
    """The same with DATALOADER.NUM_WORKERS 1 (worker processes seeded per epoch), in-process to stay cheap: the
    run dies with an exception in the middle of epoch 3, a new Trainer resumes from model_last.pt."""
    from reid.engine.trainer import Trainer

    if hooks:
        pytest.importorskip("tensorboard")

    def cfg(out):
        return tiny_train_cfg("DATALOADER.NUM_WORKERS", "1", "SOLVER.MAX_EPOCHS", "3", "SOLVER.WARMUP_EPOCHS", "2",
                              "TEST.EVAL_PERIOD", "3", "SEED", "5", "OUTPUT_DIR", str(tmp_path / out), *hooks)

    straight = Trainer(cfg("straight")).train()
    crashing = Trainer(cfg("crashed"))
    original, calls = crashing.train_step, []

    def train_step(batch):
        calls.append(1)
        if len(calls) == 2 * crashing.iters_per_epoch + 2:
            raise _Crash
        return original(batch)

    crashing.train_step = train_step
    with pytest.raises(_Crash):
        crashing.train()
    assert load_checkpoint(tmp_path / "crashed" / "model_last.pt")["epoch"] == 2
    resuming = Trainer(cfg("crashed"), resume=True)
    if hooks:  # the hook states are those the crashed run had after epoch 2
        state = lambda trainer, name: next(h for h in trainer.hooks if h.name == name).state_dict()  # noqa: E731
        assert state(resuming, "best_checkpoint") == state(crashing, "best_checkpoint")
        assert state(resuming, "best_checkpoint")["epoch"] == 2
        assert state(resuming, "ema")["updates"] == 2 * crashing.iters_per_epoch
    resumed = resuming.train()
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert abs(straight[key] - resumed[key]) <= 1e-6, (key, straight[key], resumed[key])
    wa, wb = (load_checkpoint(tmp_path / d / "model_final.pt")["model"] for d in ("straight", "crashed"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    if hooks:
        _same_hook_outputs(tmp_path / "straight", tmp_path / "crashed")


@pytest.mark.usefixtures("single_thread")
def test_run_stopped_by_max_iters_inside_an_epoch_resumes_exactly(tiny_train_cfg, tmp_path):
    """A stop at ``max_iters`` in the middle of epoch 2 is an interruption: epoch 2 is neither recorded nor
    checkpointed, no final files are written, and --resume redoes it to the uninterrupted result."""
    from reid.engine.trainer import Trainer

    def cfg(out):
        return tiny_train_cfg("SOLVER.MAX_EPOCHS", "2", "TEST.EVAL_PERIOD", "2", "SEED", "7",
                              "OUTPUT_DIR", str(tmp_path / out))

    straight = Trainer(cfg("straight")).train()
    stopped = Trainer(cfg("stopped"))
    stopped.max_iters = stopped.iters_per_epoch + 2
    assert stopped.train() == {}
    out = tmp_path / "stopped"
    assert load_checkpoint(out / "model_last.pt")["epoch"] == 1
    assert not (out / "metrics.json").exists() and not (out / "model_final.pt").exists()
    assert [json.loads(line)["epoch"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1]
    resumed = Trainer(cfg("stopped"), resume=True).train()
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert abs(straight[key] - resumed[key]) <= 1e-6, (key, straight[key], resumed[key])
    wa, wb = (load_checkpoint(tmp_path / d / "model_final.pt")["model"] for d in ("straight", "stopped"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# --------------------------------------------------------------------------------------------------------------
# Non-finite loss


@pytest.mark.usefixtures("single_thread")
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_train_cfg, tmp_path):
    from reid.engine.trainer import Trainer

    trainer = Trainer(tiny_train_cfg("SOLVER.MAX_EPOCHS", "3"))
    criterion, calls = trainer.criterion, []

    def poisoned(outputs, pids):  # fine for epoch 1, infinite from the 2nd iteration of epoch 2 on
        calls.append(1)
        terms = criterion(outputs, pids)
        return {k: v * math.inf for k, v in terms.items()} if len(calls) > trainer.iters_per_epoch + 1 else terms

    trainer.criterion = poisoned
    with pytest.raises(ReIDError, match=r"The loss became (inf|nan) at epoch 2, iteration 2 .*Training stopped; "
                                        r"the last good checkpoint is .*model_last\.pt"):
        trainer.train()
    state = load_checkpoint(tmp_path / "out" / "model_last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "out" / "model_final.pt").exists()


# --------------------------------------------------------------------------------------------------------------
# The training loader: randomness = f(seed, rank, epoch)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(b["paths"], b["images"]) for b in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(pa == pb and torch.equal(ia, ib) for (pa, ia), (pb, ib) in zip(a, b))


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("workers", [0, 1])
def test_train_loader_epoch_depends_on_seed_and_epoch_only(tiny_train_cfg, workers):
    from reid.data import build_train_loader

    cfg = tiny_train_cfg("DATALOADER.NUM_WORKERS", str(workers))
    ran, _ = build_train_loader(cfg)
    history = [_epoch(ran, e) for e in range(3)]
    fresh, _ = build_train_loader(cfg)  # as after a resume: epoch 2 straight away
    assert _same(_epoch(fresh, 2), history[2])
    assert _same(_epoch(fresh, 2), history[2])  # iterating an epoch again repeats it
    assert not _same(history[1], history[2])  # epochs differ
    other, _ = build_train_loader(tiny_train_cfg("DATALOADER.NUM_WORKERS", str(workers), "SEED", "1"))
    assert not _same(_epoch(other, 2), history[2])  # seeds differ


@pytest.mark.usefixtures("single_thread")
def test_train_loader_batches_do_not_depend_on_the_number_of_workers(tiny_train_cfg):
    """Each batch's augmentation is drawn from its own seed, whichever process loads it."""
    from reid.data import build_train_loader

    in_process, _ = build_train_loader(tiny_train_cfg("DATALOADER.NUM_WORKERS", "0"))
    two_workers, _ = build_train_loader(tiny_train_cfg("DATALOADER.NUM_WORKERS", "2"))
    assert _same(_epoch(two_workers, 1), _epoch(in_process, 1))


@pytest.mark.usefixtures("single_thread")
def test_in_process_augmentation_neither_uses_nor_moves_the_global_random_state(tiny_train_cfg):
    from reid.data import build_train_loader

    loader, _ = build_train_loader(tiny_train_cfg("DATALOADER.NUM_WORKERS", "0"))
    reference = _epoch(loader, 1)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    loader.set_epoch(1)
    again = []
    for b in loader:  # the training step draws from the global generators between batches
        again.append((b["paths"], b["images"]))
        assert torch.equal(torch.get_rng_state(), states[0])
        assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
        torch.rand(7), np.random.rand(3), random.random()
        states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    assert _same(again, reference)


class _WorkerPids:
    """Wraps TrainImages: every batch also says which process loaded it."""

    def __init__(self, images) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, keys):
        return {**self.images.__getitems__(keys), "worker": os.getpid()}


@pytest.mark.usefixtures("single_thread")
def test_persistent_workers_give_the_batches_of_a_fresh_loader_every_epoch(tiny_train_cfg):
    """The workers live across epochs (no restart per epoch) and need no per-epoch state: the sampler's epoch
    stays in the main process and each batch's key carries its augmentation seed."""
    from reid.data import build_train_loader
    from reid.data.build import TrainLoader

    cfg = tiny_train_cfg("DATALOADER.NUM_WORKERS", "2")
    built, _ = build_train_loader(cfg)
    assert built.persistent_workers
    loader = TrainLoader(_WorkerPids(built.dataset), built.batch_size, built.index_sampler, built.sampler.base_seed,
                         num_workers=2, pin_memory=False)
    workers = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = list(loader)
        workers.append({b["worker"] for b in batches})
        fresh, _ = build_train_loader(cfg)  # new workers, as after a restart at this epoch
        assert _same([(b["paths"], b["images"]) for b in batches], _epoch(fresh, epoch))
    assert workers[0] == workers[1] == workers[2] and len(workers[0]) == 2 and os.getpid() not in workers[0]
