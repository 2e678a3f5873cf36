"""The one training augmentation (reid.data.augment) against torchvision, its reference: the appliers give
torchvision's functional ops' pixels for the same parameters, and the drawn parameters follow the distributions
of torchvision's RandomHorizontalFlip, Pad + RandomCrop and RandomErasing (flip rate, crop offsets, padding,
erased rectangles, pixel statistics); the per-image and batched appliers agree; draws depend on the generator
only."""
import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from reid.config import load_cfg
from reid.data import build_resize, build_train_loader, read_image
from reid.data.augment import Augmenter, TrainAugmentation

pytestmark = pytest.mark.usefixtures("single_thread")


def _torchvision(cfg) -> T.Compose:
    """The training transform as torchvision's classes write it (the reference the augmentation is held to)."""
    inp = cfg.INPUT
    size = list(inp.SIZE_TRAIN)
    steps = [T.RandomHorizontalFlip(inp.FLIP_PROB)]
    if inp.PADDING > 0:
        steps += [T.Pad(inp.PADDING), T.RandomCrop(size)]
    steps += [T.ToTensor(), T.Normalize(mean=list(inp.PIXEL_MEAN), std=list(inp.PIXEL_STD))]
    if inp.REA.ENABLED:
        steps.append(T.RandomErasing(p=inp.REA.PROB, value="random"))
    return T.Compose(steps)


def _uint8(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def _ours(cfg, image: Image.Image, n: int, batched: bool, seed: int = 0) -> torch.Tensor:
    """``n`` augmentations of one image (already at the training size) by one of the two appliers."""
    aug = TrainAugmentation.from_cfg(cfg)
    params = aug.draw(n, torch.Generator().manual_seed(seed))
    x = _uint8(image)
    if batched:
        return Augmenter(aug).batch(x[None].expand(n, -1, -1, -1).contiguous(), params)
    return Augmenter(aug).images([x] * n, params)


def _all_three(cfg, image: Image.Image, n: int):
    """``n`` augmentations of one image by torchvision, the per-image applier and the batched applier."""
    torch.manual_seed(0)
    reference = _torchvision(cfg)
    return (torch.stack([reference(image) for _ in range(n)]), _ours(cfg, image, n, batched=False),
            _ours(cfg, image, n, batched=True))


def _assert_same_mean(a, b, what: str, z: float = 5.0) -> None:
    """Two-sample z-test: the means of two samples agree within ``z`` standard errors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) <= z * se + 1e-12, f"{what}: {a.mean():.4f} vs {b.mean():.4f} (se {se:.4f})"


def _levels(cfg, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: uint8 levels (exact for pixels that were not erased)."""
    mean = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cfg.INPUT.PIXEL_STD).view(1, 3, 1, 1)
    return torch.round((x * std + mean) * 255)


def _cfg(h: int, w: int, *opts: str):
    return load_cfg(None, ["INPUT.SIZE_TRAIN", f"[{h}, {w}]", *opts])


def test_appliers_give_torchvisions_pixels_for_the_same_parameters():
    """Per image, torchvision's functional ops with our drawn flip / crop / rectangle give our pixels exactly,
    except the erased rectangle, which holds other N(0, 1) values; both appliers."""
    h, w, n = 24, 12, 64
    cfg = _cfg(h, w, "INPUT.PADDING", "3", "INPUT.FLIP_PROB", "0.5", "INPUT.REA.PROB", "0.5")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    params = TrainAugmentation.from_cfg(cfg).draw(n, torch.Generator().manual_seed(1))
    mean, std = list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)
    expected, boxes = [], torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        x = TF.hflip(image) if params.flip[i] else image
        x = TF.crop(TF.pad(x, 3), *params.crop[i].tolist(), h, w)
        expected.append(TF.normalize(TF.to_tensor(x), mean, std))
        top, left, eh, ew = params.erase[i].tolist()
        boxes[i, top:top + eh, left:left + ew] = True
    expected = torch.stack(expected)
    assert params.flip.any() and not params.flip.all() and boxes.any(2).any(1).float().mean() > 0.2
    for got in (_ours(cfg, image, n, batched=False, seed=1), _ours(cfg, image, n, batched=True, seed=1)):
        differs = (got - expected).abs().amax(1) > 1e-5
        assert torch.equal(differs, boxes)  # the erased rectangles, and nothing else
        assert (got - expected).abs().amax(1)[~boxes].max() < 1e-5


def test_per_image_and_batched_appliers_agree_but_for_the_erased_values():
    cfg = _cfg(32, 16, "INPUT.PADDING", "4")
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 16, 3), dtype=np.uint8))
    one, batch = _ours(cfg, image, 200, batched=False), _ours(cfg, image, 200, batched=True)
    params = TrainAugmentation.from_cfg(cfg).draw(200, torch.Generator().manual_seed(0))
    erased = torch.zeros(200, 32, 16, dtype=torch.bool)
    for i, (top, left, eh, ew) in enumerate(params.erase.tolist()):
        erased[i, top:top + eh, left:left + ew] = True
    assert torch.equal(one.masked_fill(erased[:, None], 0), batch.masked_fill(erased[:, None], 0))
    assert not torch.equal(one, batch)  # erased values are drawn per image vs for the whole batch
    for x in (one, batch):
        _assert_same_mean(x.permute(1, 0, 2, 3)[:, erased].flatten(), torch.randn(10000), "erased values")


def test_draws_depend_on_the_generator_only():
    aug = TrainAugmentation.from_cfg(_cfg(32, 16))
    a, b = (aug.draw(50, torch.Generator().manual_seed(7)) for _ in range(2))
    torch.manual_seed(1)  # the global generator plays no part
    c = aug.draw(50, torch.Generator().manual_seed(7))
    for x, y in ((a, b), (a, c)):
        assert x.noise_seed == y.noise_seed
        assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in ("flip", "crop", "erase"))
    assert not torch.equal(a.erase, aug.draw(50, torch.Generator().manual_seed(8)).erase)


def test_flip_and_crop_follow_the_torchvision_distribution():
    """Each pixel of the test image encodes its own row and column, so flip and crop offsets can be read back."""
    h, w, pad, n = 32, 16, 4, 3000
    rows, cols = np.mgrid[0:h, 0:w]
    image = Image.fromarray(np.stack([10 + 7 * rows, 10 + 15 * cols, np.full_like(rows, 200)], -1).astype(np.uint8))
    cfg = _cfg(h, w, "INPUT.PADDING", str(pad), "INPUT.FLIP_PROB", "0.5", "INPUT.REA.ENABLED", "False")

    def params(x):
        v = _levels(cfg, x)
        r, c = h // 2, w // 2 - 1  # two neighbouring pixels that no crop offset moves into the padding
        row, col_a, col_b = (v[:, 0, r, c] - 10) / 7, (v[:, 1, r, c] - 10) / 15, (v[:, 1, r, c + 1] - 10) / 15
        flipped = col_b < col_a
        left = torch.where(flipped, w - 1 - col_a - c, col_a - c)
        padded = (v == 0).all(1).float().mean((1, 2))  # share of padding pixels in the crop
        return flipped.float().numpy(), (row - r).numpy(), left.numpy(), padded.numpy()

    reference, *ours = (params(x) for x in _all_three(cfg, image, n))
    for got in ours:
        for name, a, b in zip(("flip", "top", "left", "padding"), reference, got):
            _assert_same_mean(a, b, f"{name} mean")
        for name, a, b in zip(("top", "left"), reference[1:3], got[1:3]):
            assert set(a) == set(b) == set(range(-pad, pad + 1)), name  # every offset of RandomCrop occurs
            for k in range(-pad, pad + 1):
                _assert_same_mean(a == k, b == k, f"P({name} = {k})")


def test_random_erasing_follows_the_torchvision_distribution():
    h, w, n = 64, 32, 3000
    image = Image.new("RGB", (w, h), (120, 120, 120))
    cfg = _cfg(h, w, "INPUT.PADDING", "0", "INPUT.FLIP_PROB", "0.0", "INPUT.REA.ENABLED", "True",
               "INPUT.REA.PROB", "0.5")
    stats = []
    for x in _all_three(cfg, image, n):
        erased = (_levels(cfg, x) != 120).any(1)  # (n, h, w): the erased rectangle (random values)
        hit = erased.any(2).any(1)
        row_any, col_any = erased.any(2)[hit].float(), erased.any(1)[hit].float()
        stats.append({"rate": hit.float(), "area": erased[hit].float().mean((1, 2)), "height": row_any.sum(1),
                      "width": col_any.sum(1), "top": row_any.argmax(1).float(), "left": col_any.argmax(1).float()})
    for got in stats[1:]:
        for key in stats[0]:
            _assert_same_mean(stats[0][key].numpy(), got[key].numpy(), key)
        assert 0.45 < got["rate"].mean() < 0.55


def test_all_augmentations_give_the_same_pixel_statistics(tiny_train_cfg):
    cfg = tiny_train_cfg("INPUT.PADDING", "4")
    record = build_train_loader(cfg)[1].train[0]
    image = build_resize(cfg, cfg.INPUT.SIZE_TRAIN)(read_image(record.path))
    reference, *ours = _all_three(cfg, image, 1500)
    for got in ours:
        for what in ("mean", "std"):
            x, y = (getattr(t, what)((2, 3)) for t in (reference, got))
            for ch in range(3):
                _assert_same_mean(x[:, ch].numpy(), y[:, ch].numpy(), f"per-image {what}, channel {ch}")
