"""The fast input pipeline against the workers path: same batches, same tensors without augmentation and with it
(but for the erased pixels' random values), seeded and resumable randomness, and exact resume of a training run
that uses it. The augmentation itself is tested in test_augment.py."""
import numpy as np
import pytest
import torch

from reid.data import build_train_loader
from reid.data.augment import TrainAugmentation
from reid.data.gpu_pipeline import build_gpu_train_loader
from reid.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

CPU = torch.device("cpu")
NO_AUG = ["INPUT.FLIP_PROB", "0.0", "INPUT.PADDING", "0", "INPUT.REA.ENABLED", "False"]


@pytest.mark.parametrize("opts, exact", [([], True), (["DATALOADER.CACHE_SIZE", "[128, 64]"], False),
                                         (["DATALOADER.CACHE_RAM_GB", "0.0"], True)],
                         ids=["cache-at-train-size", "resize-on-device", "memory-mapped"])
def test_unaugmented_batches_equal_the_workers_path(tiny_train_cfg, tmp_path, opts, exact):
    cfg = tiny_train_cfg(*NO_AUG, *opts)
    loader, _ = build_train_loader(cfg)
    pipeline, _ = build_gpu_train_loader(cfg, CPU)
    assert len(pipeline) == len(loader)
    pairs = list(zip(loader, pipeline))
    assert len(pairs) == len(loader)
    for a, b in pairs:
        assert set(b) == {"images", "pids", "camids", "paths"} and a["paths"] == b["paths"]
        assert torch.equal(a["pids"], b["pids"]) and torch.equal(a["camids"], b["camids"])
        assert b["images"].shape == a["images"].shape and b["images"].dtype == torch.float32
    diff = torch.cat([(a["images"] - b["images"]).abs().flatten() for a, b in pairs])
    if exact:  # both decode and resize with PIL: equal up to float rounding of the normalisation
        assert diff.max() < 1e-5
    else:  # PIL's bicubic filter vs torch's antialiased bicubic (a few uint8 levels at most)
        assert diff.mean() < 0.01 and diff.max() < 0.1
    if "DATALOADER.CACHE_RAM_GB" in opts:
        assert len(list((tmp_path / "out" / "cache").glob("train-*.npy"))) == 1


def test_augmented_batches_equal_the_workers_path_but_for_the_erased_values(tiny_train_cfg):
    """Both paths draw each batch's parameters from the loader's batch seed: the same flips, crops and erased
    rectangles of the same images (the erased pixels' N(0, 1) values are drawn per image vs per batch)."""
    cfg = tiny_train_cfg("INPUT.PADDING", "4", "INPUT.REA.PROB", "0.7")
    loader, _ = build_train_loader(cfg)
    pipeline, _ = build_gpu_train_loader(cfg, CPU)
    loader.set_epoch(1)
    pipeline.set_epoch(1)
    augmentation, h, w = TrainAugmentation.from_cfg(cfg), *cfg.INPUT.SIZE_TRAIN
    for b, (a, fast) in enumerate(zip(loader, pipeline)):
        assert a["paths"] == fast["paths"]
        params = augmentation.draw(len(a["paths"]), torch.Generator().manual_seed(loader.batch_seed(b)))
        erased = torch.zeros(len(a["paths"]), 1, h, w, dtype=torch.bool)
        for i, (top, left, eh, ew) in enumerate(params.erase.tolist()):
            erased[i, :, top:top + eh, left:left + ew] = True
        assert params.erase[:, 2].count_nonzero() > 0
        differs = (a["images"] - fast["images"]).abs() > 1e-5
        assert torch.equal(differs.any(1, keepdim=True), erased)


def test_augmentation_stream_depends_on_seed_and_epoch_only(tiny_train_cfg):
    cfg = tiny_train_cfg()
    first, _ = build_gpu_train_loader(cfg, CPU)
    epoch0 = [b["images"] for b in first]
    first.set_epoch(1)
    epoch1 = [b["images"] for b in first]
    fresh, _ = build_gpu_train_loader(cfg, CPU)  # as after a resume at epoch 1
    fresh.set_epoch(1)
    assert all(torch.equal(a, b["images"]) for a, b in zip(epoch1, fresh))
    fresh.set_epoch(0)
    assert all(torch.equal(a, b["images"]) for a, b in zip(epoch0, fresh))
    assert not torch.equal(epoch0[0], epoch1[0])
    other, _ = build_gpu_train_loader(tiny_train_cfg("SEED", "1"), CPU)
    assert not torch.equal(epoch0[0], next(iter(other))["images"])


def test_resumed_training_with_the_gpu_pipeline_is_exact(tiny_train_cfg, tmp_path):
    from reid.engine.trainer import Trainer

    def run(out, epochs, resume=False):
        cfg = tiny_train_cfg("DATALOADER.PIPELINE", "gpu", "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCHS", str(epochs))
        Trainer(cfg, resume=resume, allow_config_change=resume).train()  # resumed with more epochs
        return load_checkpoint(out / "model_final.pt")

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)
    assert all(torch.equal(v, resumed["model"][k]) for k, v in straight["model"].items())


@pytest.mark.gpu
@pytest.mark.parametrize("device_gb", ["-1.0", "8.0", "0.0"], ids=["cache-on-gpu-auto", "cache-on-gpu",
                                                                     "pinned-host-cache"])
def test_cuda_batches_equal_the_workers_path(tiny_train_cfg, device_gb):
    cfg = tiny_train_cfg(*NO_AUG, "DATALOADER.CACHE_DEVICE_GB", device_gb)
    pipeline, _ = build_gpu_train_loader(cfg, torch.device("cuda"))
    assert (pipeline.cache.on_device is not None) == (device_gb == "8.0")  # -1: after the first step
    for i, (a, b) in enumerate(zip(build_train_loader(cfg)[0], pipeline)):
        assert b["images"].is_cuda and a["paths"] == b["paths"]
        assert torch.allclose(a["images"], b["images"].cpu(), atol=1e-5)
        if i == 1:  # the tiny cache fits any GPU: on the device, the host copy released
            assert (pipeline.cache.on_device is not None) == (device_gb != "0.0")
            assert (pipeline.cache.host is None) == (device_gb != "0.0")


def _fake_gpu(monkeypatch, free_bytes: int, total_bytes: int = 80 * 10**9) -> torch.device:
    """A CUDA device as the image cache sees it: ``free_bytes`` free, uploads kept as CPU tensors."""
    from reid.data.gpu_pipeline import ImageCache

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_bytes, total_bytes))
    monkeypatch.setattr(ImageCache, "_to_device", lambda self, device: torch.from_numpy(np.array(self.host)))
    return torch.device("cuda", 0)


@pytest.mark.parametrize("ram_gb", ["32.0", "0.0"], ids=["ram", "memory-mapped"])
def test_a_fixed_device_budget_uploads_the_cache_at_once_and_releases_the_host_copy(tiny_train_cfg, tmp_path,
                                                                                     monkeypatch, ram_gb):
    from reid.data.gpu_pipeline import ImageCache, device_cache_budget

    records = build_train_loader(tiny_train_cfg())[0].dataset.records
    on_cpu = ImageCache(records, tiny_train_cfg("DATALOADER.CACHE_RAM_GB", ram_gb), CPU)
    assert on_cpu.on_device is None and on_cpu.host is not None  # a CPU device never holds a device copy
    nbytes = on_cpu.nbytes
    cuda = _fake_gpu(monkeypatch, free_bytes=10 * nbytes)
    assert device_cache_budget(nbytes / 1e9, cuda) == nbytes and device_cache_budget(0.0, cuda) == 0
    assert device_cache_budget(-1, cuda) == 0 and device_cache_budget(8.0, CPU) == 0  # -1: after the first step
    cfg = tiny_train_cfg("DATALOADER.CACHE_RAM_GB", ram_gb, "DATALOADER.CACHE_DEVICE_GB", str(nbytes / 1e9))
    cache = ImageCache(records, cfg, cuda)
    assert cache.host is None and torch.equal(cache.on_device, torch.from_numpy(np.array(on_cpu.host)))
    if ram_gb == "0.0":  # the memory-mapped file stays on disk for later runs
        assert len(list((tmp_path / "out" / "cache").glob("train-*.npy"))) == 1
    assert cache.release_device() and cache.on_device is None  # after an out-of-memory error in training
    assert np.array_equal(np.asarray(cache.host), np.asarray(on_cpu.host))
    short = tiny_train_cfg("DATALOADER.CACHE_RAM_GB", ram_gb, "DATALOADER.CACHE_DEVICE_GB", str((nbytes - 1) / 1e9))
    kept = ImageCache(records, short, cuda)  # one byte short: stays on the host
    assert kept.on_device is None and np.array_equal(np.asarray(kept.host), np.asarray(on_cpu.host))


def test_auto_device_budget_waits_for_the_first_step_and_keeps_a_reserve(tiny_train_cfg, monkeypatch):
    """CACHE_DEVICE_GB -1: nothing is uploaded before the model and the first step have taken their memory; then
    the cache moves when it fits the free memory less a quarter of the GPU; an out-of-memory copy stays on the
    host."""
    from reid.data.gpu_pipeline import AUTO_DEVICE_RESERVE, ImageCache

    cfg = tiny_train_cfg()
    assert cfg.DATALOADER.CACHE_DEVICE_GB == -1  # the default
    records = build_train_loader(cfg)[0].dataset.records
    nbytes = ImageCache(records, cfg, CPU).nbytes
    total = 100 * nbytes
    fits = nbytes + int(AUTO_DEVICE_RESERVE * total)
    cuda = _fake_gpu(monkeypatch, free_bytes=fits - 1, total_bytes=total)
    cache = ImageCache(records, cfg, cuda)
    assert cache.pending and cache.on_device is None and cache.host is not None  # nothing uploaded yet
    assert not cache.place_after_first_step() and cache.on_device is None and not cache.pending  # 1 byte short
    _fake_gpu(monkeypatch, free_bytes=fits, total_bytes=total)
    cache = ImageCache(records, cfg, cuda)
    assert cache.place_after_first_step() and cache.on_device is not None and cache.host is None
    assert not cache.place_after_first_step()  # decided once

    def out_of_memory(self, device):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(ImageCache, "_to_device", out_of_memory)
    cache = ImageCache(records, cfg, cuda)
    assert not cache.place_after_first_step() and cache.on_device is None and cache.host is not None


def test_batches_stay_the_same_when_the_cache_moves_after_the_first_step_and_back(tiny_train_cfg, monkeypatch):
    """The pipeline switches where it gathers from mid-epoch: host for the first batch, the device copy from the
    second on, the host again after ``release_device_memory`` (the trainer's out-of-memory fallback)."""
    cfg = tiny_train_cfg(*NO_AUG)
    reference = [b["images"] for b in build_gpu_train_loader(cfg, CPU)[0]]
    pipeline, _ = build_gpu_train_loader(cfg, CPU)
    _fake_gpu(monkeypatch, free_bytes=10**12)
    pipeline.cache.pending = True  # as CACHE_DEVICE_GB -1 on a GPU
    where = []
    for i, batch in enumerate(pipeline):
        where.append(pipeline.cache.on_device is not None)
        assert torch.equal(batch["images"], reference[i])
        if i == 2:
            assert pipeline.release_device_memory() and not pipeline.release_device_memory()
    assert len(where) == len(reference) >= 4 and where[:4] == [False, True, True, False]


def test_an_out_of_memory_step_is_retried_once_after_the_pipeline_released_its_device_memory():
    from reid.engine.train_loop import TrainerBase

    class Loader(list):
        released = 0

        def release_device_memory(self):
            self.released += 1
            return self.released == 1  # something to release the first time only

    class Trainer(TrainerBase):
        def __init__(self):
            super().__init__()
            self.train_loader, self.calls = Loader(), []

        def train_step(self, batch):
            self.calls.append(batch)
            if len(self.calls) in (1, 3, 4):
                raise torch.OutOfMemoryError("CUDA out of memory")
            return {"loss": torch.tensor(1.0)}

    trainer = Trainer()
    trainer.run_step("a")
    assert trainer.calls == ["a", "a"] and trainer.train_loader.released == 1
    with pytest.raises(torch.OutOfMemoryError):  # nothing left to release: the error propagates
        trainer.run_step("b")


def test_under_ddp_rank_0_writes_the_cache_file_and_the_other_ranks_map_it(tiny_train_cfg, monkeypatch):
    """A shared cache is a memory-mapped file even when it would fit CACHE_RAM_GB: the host holds one copy."""
    from reid.data.gpu_pipeline import ImageCache

    cfg = tiny_train_cfg()
    records = build_train_loader(cfg)[0].dataset.records
    rank0 = ImageCache(records, cfg, CPU, shared=True)
    assert isinstance(rank0.host, np.memmap) and rank0.file.is_file()
    monkeypatch.setattr(ImageCache, "_decode_one", lambda self, i, out: pytest.fail("rank 1 decoded an image"))
    rank1 = ImageCache(records, cfg, CPU, shared=True)
    assert isinstance(rank1.host, np.memmap) and rank1.file == rank0.file
    assert np.array_equal(np.asarray(rank1.host), np.asarray(rank0.host))


def test_cache_device_gb_accepts_sizes_and_auto_only(tiny_train_cfg):
    from reid.utils.errors import ConfigError

    assert tiny_train_cfg("DATALOADER.CACHE_DEVICE_GB", "0.0").DATALOADER.CACHE_DEVICE_GB == 0
    with pytest.raises(ConfigError, match=r"CACHE_DEVICE_GB must be >= 0 .* or -1"):
        tiny_train_cfg("DATALOADER.CACHE_DEVICE_GB", "-2.0")

