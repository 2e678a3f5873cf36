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
    assert (pipeline.cache.on_device is not None) == (device_gb != "0.0")
    assert (pipeline.cache.host is None) == (device_gb != "0.0")  # the host copy is released after the upload
    for a, b in zip(build_train_loader(cfg)[0], pipeline):
        assert b["images"].is_cuda and a["paths"] == b["paths"]
        assert torch.allclose(a["images"], b["images"].cpu(), atol=1e-5)


def _fake_gpu(monkeypatch, free_bytes: int) -> torch.device:
    """A CUDA device as the image cache sees it: ``free_bytes`` free, uploads kept as CPU tensors."""
    from reid.data.gpu_pipeline import ImageCache

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_bytes, 80 * 10**9))
    monkeypatch.setattr(ImageCache, "_to_device", lambda self, device: torch.from_numpy(np.array(self.host)))
    return torch.device("cuda", 0)


@pytest.mark.parametrize("ram_gb", ["32.0", "0.0"], ids=["ram", "memory-mapped"])
def test_cache_goes_to_the_gpu_within_half_its_free_memory_and_releases_the_host_copy(tiny_train_cfg, tmp_path,
                                                                                     monkeypatch, ram_gb):
    from reid.data.gpu_pipeline import ImageCache, device_cache_budget

    cfg = tiny_train_cfg("DATALOADER.CACHE_RAM_GB", ram_gb)
    assert cfg.DATALOADER.CACHE_DEVICE_GB == -1  # the default: chosen from the GPU's free memory
    loader, _ = build_train_loader(cfg)
    records = loader.dataset.records
    on_cpu = ImageCache(records, cfg, CPU)
    assert on_cpu.on_device is None and on_cpu.host is not None  # a CPU device never holds a device copy
    nbytes = on_cpu.nbytes
    cuda = _fake_gpu(monkeypatch, free_bytes=2 * nbytes)  # half of it is exactly the cache
    assert device_cache_budget(-1, cuda) == nbytes and device_cache_budget(8.0, cuda) == 8e9
    assert device_cache_budget(-1, CPU) == 0
    cache = ImageCache(records, cfg, cuda)
    assert cache.host is None and torch.equal(cache.on_device, torch.from_numpy(np.array(on_cpu.host)))
    if ram_gb == "0.0":  # the memory-mapped file stays on disk for later runs
        assert len(list((tmp_path / "out" / "cache").glob("train-*.npy"))) == 1
    _fake_gpu(monkeypatch, free_bytes=2 * nbytes - 2)  # one byte short: stays on the host
    kept = ImageCache(records, cfg, cuda)
    assert kept.on_device is None and np.array_equal(np.asarray(kept.host), np.asarray(on_cpu.host))


def test_cache_device_gb_accepts_sizes_and_auto_only(tiny_train_cfg):
    from reid.utils.errors import ConfigError

    assert tiny_train_cfg("DATALOADER.CACHE_DEVICE_GB", "0.0").DATALOADER.CACHE_DEVICE_GB == 0
    with pytest.raises(ConfigError, match=r"CACHE_DEVICE_GB must be >= 0 .* or -1"):
        tiny_train_cfg("DATALOADER.CACHE_DEVICE_GB", "-2.0")
