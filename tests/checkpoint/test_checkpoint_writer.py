"""Checkpoints written in the background (the GPU keeps training) and the per-GPU random state they store.

The writer takes a snapshot when a save is submitted, writes it atomically in a thread, waits for the write in
flight before the next one, and hands a failed write's error (the disk-full message of ``save_checkpoint``) to
the training thread at the next save or wait. The RNG state holds the CUDA generator of the process's own GPU,
so a checkpoint written by rank 0 of an 8-GPU machine resumes on a machine with one GPU.
"""
import logging
import resource
import signal
import threading

import pytest
import torch
from torch import nn

from reid.checkpoint import AsyncCheckpointWriter, Checkpointer, load_checkpoint, save_checkpoint, to_host
from reid.checkpoint import writer as writer_module
from reid.config import get_cfg
from reid.utils import env
from reid.utils.errors import CheckpointError


def test_a_save_returns_before_the_file_is_written_and_keeps_the_state_as_submitted(tmp_path, monkeypatch):
    release, started = threading.Event(), threading.Event()
    real_save = writer_module.save_checkpoint

    def held_save(path, state):  # the disk is slow: the write waits until the test lets it go
        started.set()
        assert release.wait(30)
        real_save(path, state)

    monkeypatch.setattr(writer_module, "save_checkpoint", held_save)
    weights = torch.arange(6.0)
    writer, path = AsyncCheckpointWriter(), tmp_path / "model_last.pt"
    writer.submit(path, {"model": {"w": weights}, "epoch": 1, "names": ["a"]})
    assert started.wait(30) and writer.busy and not path.exists()  # training goes on meanwhile
    weights.add_(100.0)  # the next optimizer step updates the weights in place
    release.set()
    writer.wait()
    assert not writer.busy
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.arange(6.0)) and state["epoch"] == 1 and state["names"] == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["model_last.pt"]


def test_a_second_save_is_queued_behind_the_write_in_flight_and_a_third_waits(tmp_path, monkeypatch):
    """model_best.pt then model_last.pt of one epoch: the second returns at once; writes stay in order."""
    order, release = [], threading.Event()
    real_save = writer_module.save_checkpoint

    def recorded_save(path, state):
        if state["epoch"] == 1:
            assert release.wait(30)
        real_save(path, state)
        order.append(state["epoch"])

    monkeypatch.setattr(writer_module, "save_checkpoint", recorded_save)
    writer = AsyncCheckpointWriter()
    writer.submit(tmp_path / "best.pt", {"epoch": 1})
    writer.submit(tmp_path / "last.pt", {"epoch": 2})  # queued: returns while the first write is held
    assert order == [] and writer.busy
    done = threading.Event()

    def third():
        writer.submit(tmp_path / "last.pt", {"epoch": 3})
        done.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not done.wait(0.2)  # two snapshots are pending: blocked behind the oldest (no timing is asserted)
    release.set()
    thread.join(30)
    writer.wait()
    assert order == [1, 2, 3] and load_checkpoint(tmp_path / "last.pt")["epoch"] == 3


def _finished(writer: AsyncCheckpointWriter) -> None:
    for _ in range(3000):
        if not writer.busy:
            return
        threading.Event().wait(0.01)
    pytest.fail("the background write did not finish")


def test_a_failed_background_write_is_raised_at_the_next_save_and_at_wait(tmp_path):
    """A write the OS refuses (over RLIMIT_FSIZE: EFBIG, the way a full disk fails) keeps save_checkpoint's message."""
    path = tmp_path / "model_last.pt"
    save_checkpoint(path, {"epoch": 1})
    writer = AsyncCheckpointWriter()
    big = {"epoch": 2, "model": {"w": torch.ones(1_000_000)}}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))
    try:
        writer.submit(path, big)
        _finished(writer)  # a queued write's error surfaces at the first submit after it failed
        with pytest.raises(CheckpointError) as at_next_save:
            writer.submit(path, big)  # the first write's error; this one is not started
        writer.submit(path, big)
        with pytest.raises(CheckpointError) as at_wait:
            writer.wait()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    for err in (at_next_save, at_wait):
        message = str(err.value)
        assert "File too large" in message and "the previous checkpoint is intact" in message and "--resume" in message
    writer.wait()  # the error was handed over once
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model_last.pt"]


def test_wait_without_raising_logs_the_error(tmp_path, monkeypatch, caplog):
    def failing_save(path, state):
        raise CheckpointError("Could not write checkpoint 'x' (No space left on device); ...")

    monkeypatch.setattr(writer_module, "save_checkpoint", failing_save)
    writer = AsyncCheckpointWriter()
    writer.submit(tmp_path / "x.pt", {"epoch": 1})
    logger = logging.getLogger("reid")  # does not propagate to caplog
    logger.addHandler(caplog.handler)
    try:
        writer.wait(raise_error=False)
    finally:
        logger.removeHandler(caplog.handler)
    assert "No space left on device" in caplog.text


def test_to_host_copies_tensors_and_containers(monkeypatch):
    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", syncs.append)
    state = {"w": torch.zeros(3), "groups": [{"lr": 0.1, "params": [0, 1]}], "t": (torch.ones(1), "x")}
    copy = to_host(state)
    assert syncs == []  # CPU tensors only: nothing to wait for
    state["w"].add_(1.0)
    state["groups"][0]["lr"] = 0.5
    assert torch.equal(copy["w"], torch.zeros(3)) and copy["groups"][0]["lr"] == 0.1
    assert isinstance(copy["t"], tuple) and copy["t"][1] == "x"


def test_checkpointer_writes_in_the_background_and_waits(tmp_path):
    model = nn.Linear(3, 2)
    model.num_classes = 2
    opt = torch.optim.Adam(model.parameters())
    checkpointer = Checkpointer(model, get_cfg(), tmp_path, async_write=True, optimizer=opt)
    path = checkpointer.save("model_last.pt", 4)
    checkpointer.wait()
    state = load_checkpoint(path)
    assert state["epoch"] == 4 and torch.equal(state["model"]["weight"], model.weight.detach())


# --------------------------------------------------------------------------------------------------------------
# The CUDA random state of the process's own GPU


class _FakeCuda:
    """torch.cuda's RNG functions on a machine with ``count`` GPUs (each generator state a distinct tensor)."""

    def __init__(self, count: int, current: int) -> None:
        self.count, self.current, self.restored = count, current, []

    def get_rng_state(self, device):
        assert 0 <= device < self.count, f"GPU {device} does not exist on this {self.count}-GPU machine"
        return torch.full((16,), device, dtype=torch.uint8)

    def set_rng_state(self, state, device):
        assert 0 <= device < self.count, f"GPU {device} does not exist on this {self.count}-GPU machine"
        self.restored.append((int(state[0]), device))

    def install(self, monkeypatch) -> "_FakeCuda":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get_rng_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all",
                            lambda: pytest.fail("one state per visible GPU must not be stored"))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                            lambda states: pytest.fail("states must not be restored to every GPU"))
        return self


def test_a_checkpoint_from_rank_3_of_8_gpus_resumes_on_one_gpu(monkeypatch):
    _FakeCuda(count=8, current=3).install(monkeypatch)
    state = env.get_rng_state(torch.device("cuda", 3))
    assert isinstance(state["cuda"], torch.Tensor) and int(state["cuda"][0]) == 3  # rank 3's own GPU only
    single = _FakeCuda(count=1, current=0).install(monkeypatch)
    env.set_rng_state(state, torch.device("cuda", 0))
    assert single.restored == [(3, 0)]  # the stored state, restored to the GPU this process trains on


def test_the_current_gpu_is_used_without_a_device_and_old_lists_still_load(monkeypatch):
    fake = _FakeCuda(count=2, current=1).install(monkeypatch)
    assert int(env.get_rng_state()["cuda"][0]) == 1
    assert int(env.get_rng_state(torch.device("cpu"))["cuda"][0]) == 1  # a CPU model: the current GPU's
    old = {**env.get_rng_state(), "cuda": [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]}
    env.set_rng_state(old)  # written by an earlier version on an 8-GPU machine: this GPU's entry
    env.set_rng_state(old, torch.device("cuda", 0))
    assert fake.restored == [(1, 1), (0, 0)]
