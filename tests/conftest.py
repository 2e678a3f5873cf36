"""Shared fixtures; GPU tests are marked ``gpu`` and skip on machines without CUDA."""
import contextlib
import logging
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

# A few dozen synthetic images and a ResNet of width 8 (the DDP test's sizes): a training run takes seconds on a CPU.
TINY_TRAINING = ["DATASETS.NAMES", "['Synthetic']", "DATASETS.TESTS", "['Synthetic']",
                 "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "8", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "8",
                 "DATASETS.SYNTHETIC.IMAGES_PER_ID", "6", "DATASETS.SYNTHETIC.NUM_DISTRACTORS", "4",
                 "DATASETS.SYNTHETIC.NUM_JUNK", "2", "MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS",
                 "[1, 1, 1, 1]", "MODEL.BACKBONE.WIDTH", "8", "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST",
                 "[64, 32]", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_EPOCHS", "1",
                 "SOLVER.WARMUP_EPOCHS", "0", "MODEL.DEVICE", "cpu", "VIS.REPORT", "False"]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not `"gpu" in item.keywords`: that matches a folder named gpu
            item.add_marker(skip)


@contextlib.contextmanager
def one_thread():
    """One intra-op thread inside the block: on two shared cores OpenMP threads waiting for each other at every
    operation make small models up to 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread():
    """One intra-op thread for the test (:func:`one_thread`)."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> str:
    """DATASETS.ROOT shared by the session's tiny runs (the synthetic set is generated there on first use)."""
    return str(tmp_path_factory.mktemp("datasets"))


@pytest.fixture
def tiny_train_cfg(synthetic_root, tmp_path):
    """``make(*overrides)``: a frozen TINY_TRAINING config writing to ``tmp_path/out``."""
    from reid.config import load_cfg

    def make(*opts: str):
        return load_cfg(None, ["DATASETS.ROOT", synthetic_root, "OUTPUT_DIR", str(tmp_path / "out"), *TINY_TRAINING,
                               *opts])

    return make


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def data_log():
    """Messages of the data layer's loggers (the ``reid`` logger does not propagate to pytest's caplog)."""
    handler, logger = _Messages(), logging.getLogger("reid.data")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def spawn_ranks(rank_main, args: tuple, world: int, timeout_s: float) -> None:
    """Run ``rank_main(rank, port, *args)`` in ``world`` fresh processes (a DDP group on a free local port, see
    :func:`torchrun_environment`); fail the test when they do not finish within ``timeout_s`` (a rank hung in a
    collective) or one of them raises."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(rank_main, args=(port, *args), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {world}-process run did not finish in {timeout_s} s")


def torchrun_environment(rank: int, world: int, port: int) -> None:
    """The variables torchrun sets for process ``rank`` of a one-machine group (one intra-op thread: the ranks
    share two cores)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
