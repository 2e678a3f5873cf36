"""The fast input pipeline against the workers path: same batches, same tensors without augmentation, the same
augmentation distributions (flip rate, crop offsets, padding, erased rectangles, pixel statistics), seeded and
resumable RNG, and exact resume of a training run that uses it."""
import numpy as np
import pytest
import torch
from PIL import Image

from reid.config import load_cfg
from reid.data import build_train_loader, build_transforms, read_image
from reid.data.gpu_pipeline import BatchAugment, build_gpu_train_loader
from reid.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

CPU = torch.device("cpu")
NO_AUG = ["INPUT.FLIP_PROB", "0.0", "INPUT.PADDING", "0", "INPUT.REA.ENABLED", "False"]


def _assert_same_mean(a, b, what: str, z: float = 5.0) -> None:
    """Two-sample z-test: the means of two samples agree within ``z`` standard errors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) <= z * se + 1e-12, f"{what}: {a.mean():.4f} vs {b.mean():.4f} (se {se:.4f})"


def _both_paths(cfg, image: Image.Image, n: int):
    """``n`` augmentations of one image by the torchvision transforms and by BatchAugment, as uint8 levels."""
    torch.manual_seed(0)
    transform = build_transforms(cfg, is_train=True)
    workers = torch.stack([transform(image) for _ in range(n)])
    batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].expand(n, -1, -1, -1).contiguous()
    fast = BatchAugment(cfg, CPU)(batch, torch.Generator().manual_seed(0))
    return workers, fast


def _levels(cfg, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: uint8 levels (exact for pixels that were not erased)."""
    mean = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cfg.INPUT.PIXEL_STD).view(1, 3, 1, 1)
    return torch.round((x * std + mean) * 255)


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


def test_flip_and_crop_follow_the_torchvision_distribution(tmp_path):
    """Each pixel of the test image encodes its own row and column, so flip and crop offsets can be read back."""
    h, w, pad, n = 32, 16, 4, 3000
    rows, cols = np.mgrid[0:h, 0:w]
    image = Image.fromarray(np.stack([10 + 7 * rows, 10 + 15 * cols, np.full_like(rows, 200)], -1).astype(np.uint8))
    cfg = load_cfg(None, ["INPUT.SIZE_TRAIN", f"[{h}, {w}]", "INPUT.PADDING", str(pad), "INPUT.FLIP_PROB", "0.5",
                          "INPUT.REA.ENABLED", "False"])

    def params(x):
        v = _levels(cfg, x)
        r, c = h // 2, w // 2 - 1  # two neighbouring pixels that no crop offset moves into the padding
        row, col_a, col_b = (v[:, 0, r, c] - 10) / 7, (v[:, 1, r, c] - 10) / 15, (v[:, 1, r, c + 1] - 10) / 15
        flipped = col_b < col_a
        left = torch.where(flipped, w - 1 - col_a - c, col_a - c)
        padded = (v == 0).all(1).float().mean((1, 2))  # share of padding pixels in the crop
        return flipped.float().numpy(), (row - r).numpy(), left.numpy(), padded.numpy()

    workers, fast = (params(x) for x in _both_paths(cfg, image, n))
    for name, a, b in zip(("flip", "top", "left", "padding"), workers, fast):
        _assert_same_mean(a, b, f"{name} mean")
    for name, a, b in zip(("top", "left"), workers[1:3], fast[1:3]):
        assert set(a) == set(b) == set(range(-pad, pad + 1)), name  # every offset of RandomCrop occurs
        for k in range(-pad, pad + 1):
            _assert_same_mean(a == k, b == k, f"P({name} = {k})")


def test_random_erasing_follows_the_torchvision_distribution():
    h, w, n = 64, 32, 3000
    image = Image.new("RGB", (w, h), (120, 120, 120))
    cfg = load_cfg(None, ["INPUT.SIZE_TRAIN", f"[{h}, {w}]", "INPUT.PADDING", "0", "INPUT.FLIP_PROB", "0.0",
                          "INPUT.REA.ENABLED", "True", "INPUT.REA.PROB", "0.5"])
    stats = []
    for x in _both_paths(cfg, image, n):
        erased = (_levels(cfg, x) != 120).any(1)  # (n, h, w): the erased rectangle (random values)
        hit = erased.any(2).any(1)
        row_any, col_any = erased.any(2)[hit].float(), erased.any(1)[hit].float()
        stats.append({"rate": hit.float(), "area": erased[hit].float().mean((1, 2)), "height": row_any.sum(1),
                      "width": col_any.sum(1), "top": row_any.argmax(1).float(), "left": col_any.argmax(1).float()})
    for key in stats[0]:
        _assert_same_mean(stats[0][key].numpy(), stats[1][key].numpy(), key)
    assert 0.45 < stats[1]["rate"].float().mean() < 0.55


def test_all_augmentations_give_the_same_pixel_statistics(tiny_train_cfg):
    cfg = tiny_train_cfg("INPUT.PADDING", "4")
    record = build_train_loader(cfg)[1].train[0]
    image = build_transforms(cfg, is_train=False).transforms[0](read_image(record.path))  # the cache's resize
    workers, fast = _both_paths(cfg, image, 1500)
    for what in ("mean", "std"):
        x, y = (getattr(t, what)((2, 3)) for t in (workers, fast))
        for ch in range(3):
            _assert_same_mean(x[:, ch].numpy(), y[:, ch].numpy(), f"per-image {what}, channel {ch}")


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
        Trainer(cfg, resume=resume).train()
        return load_checkpoint(out / "model_final.pt")

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)
    assert all(torch.equal(v, resumed["model"][k]) for k, v in straight["model"].items())


@pytest.mark.gpu
@pytest.mark.parametrize("device_gb", ["8.0", "0.0"], ids=["cache-on-gpu", "pinned-host-cache"])
def test_cuda_batches_equal_the_workers_path(tiny_train_cfg, device_gb):
    cfg = tiny_train_cfg(*NO_AUG, "DATALOADER.CACHE_DEVICE_GB", device_gb)
    pipeline, _ = build_gpu_train_loader(cfg, torch.device("cuda"))
    assert (pipeline.cache.on_device is not None) == (device_gb != "0.0")
    for a, b in zip(build_train_loader(cfg)[0], pipeline):
        assert b["images"].is_cuda and a["paths"] == b["paths"]
        assert torch.allclose(a["images"], b["images"].cpu(), atol=1e-5)
