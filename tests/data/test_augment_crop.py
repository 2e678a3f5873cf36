"""The metric learning papers' crops (INPUT.CROP): in training a random-resized crop of the image resized to
INPUT.CROP.RESIZE, held to torchvision's RandomResizedCrop (the same windows for the same draws, the same
distribution, its pixels); both appliers and both input pipelines agree; at test time the centre crop, the same in
the evaluation's transform and in ReIDModel's preprocessing."""
import math

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from reid.config import load_cfg
from reid.data import build_resize, build_test_transform, build_train_loader
from reid.data.augment import Augmenter, TrainAugmentation
from reid.data.build import TrainImages
from reid.data.datasets import ImageRecord
from reid.data.gpu_pipeline import build_gpu_train_loader
from reid.inference.preprocess import Preprocess

from tests.data.test_augment import _assert_same_mean

pytestmark = pytest.mark.usefixtures("single_thread")
CROP = ["INPUT.SIZE_TRAIN", "[16, 8]", "INPUT.SIZE_TEST", "[16, 8]", "INPUT.CROP.RESIZE", "[20, 10]",
        "INPUT.CROP.SCALE", "[0.16, 1.0]", "INPUT.CROP.RATIO", "[0.3, 0.7]", "INPUT.PADDING", "0"]


def _reference_window(u: np.ndarray, height: int, width: int, scale, ratio):
    """torchvision's ``RandomResizedCrop.get_params`` in plain Python, its random numbers taken from ``u``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for a, r in u[:-1]:
        target_area = area * (scale[0] + a * (scale[1] - scale[0]))
        aspect = math.exp(log_ratio[0] + r * (log_ratio[1] - log_ratio[0]))
        w, h = int(round(math.sqrt(target_area * aspect))), int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(u[-1][0] * (height - h + 1)), int(u[-1][1] * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.16, 1.0), (0.3, 0.7)),
                                          ((0.9, 1.0), (3 / 4, 4 / 3))])  # the last one falls back on wide images
def test_windows_are_torchvisions_for_the_same_draws(scale, ratio):
    aug = TrainAugmentation((16, 16), "bilinear", 0.5, 0, 0.0, (0, 0, 0), (1, 1, 1), crop_resize=(20,),
                            crop_scale=scale, crop_ratio=ratio)
    n = 400
    params = aug.draw(n, torch.Generator().manual_seed(3))
    rng = np.random.default_rng(0)
    sizes = torch.from_numpy(np.stack([rng.integers(1, 60, n), rng.integers(1, 200, n)], 1))
    boxes = aug.resized_crop_boxes(params.resized_crop, sizes).tolist()
    expected = [_reference_window(u, h, w, scale, ratio)
                for u, (h, w) in zip(params.resized_crop.numpy(), sizes.tolist())]
    assert boxes == [list(b) for b in expected]
    for (top, left, h, w), (height, width) in zip(boxes, sizes.tolist()):
        assert 0 < h and 0 < w and top + h <= height and left + w <= width


def test_windows_follow_torchvisions_distribution():
    size, n = (40, 30), 4000
    aug = TrainAugmentation((16, 16), "bilinear", 0.5, 0, 0.0, (0, 0, 0), (1, 1, 1), crop_resize=size,
                            crop_scale=(0.16, 1.0))
    ours = aug.resized_crop_boxes(aug.draw(n, torch.Generator().manual_seed(0)).resized_crop,
                                  torch.tensor(size).expand(n, 2)).double()
    torch.manual_seed(0)
    image = torch.zeros(3, *size)
    reference = torch.tensor([T.RandomResizedCrop.get_params(image, [0.16, 1.0], [3 / 4, 4 / 3])
                              for _ in range(n)]).double()
    for i, what in enumerate(("top", "left", "height", "width")):
        _assert_same_mean(ours[:, i], reference[:, i], what)
    _assert_same_mean(ours[:, 2] * ours[:, 3], reference[:, 2] * reference[:, 3], "area")


def _image(h: int, w: int, seed: int = 0) -> Image.Image:
    """A smooth image (PIL's and torch's antialiased resizes agree within a grey level on it)."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    pixels = np.stack([np.sin(x / w * a + y / h * b) for a, b in rng.uniform(1, 4, (3, 2))], -1) * 100 + 128
    return Image.fromarray(pixels.astype(np.uint8))


def test_appliers_agree_and_give_torchvisions_resized_crop():
    cfg = load_cfg(None, [*CROP, "INPUT.REA.ENABLED", "False"])
    aug = TrainAugmentation.from_cfg(cfg)
    n, image = 64, _image(20, 10)
    params = aug.draw(n, torch.Generator().manual_seed(5))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    one = Augmenter(aug).images([x] * n, params)
    batch = Augmenter(aug).batch(x[None].expand(n, -1, -1, -1).contiguous(), params)
    assert torch.equal(one, batch)
    boxes = aug.resized_crop_boxes(params.resized_crop, torch.tensor([20, 10]).expand(n, 2))
    assert len({tuple(b) for b in boxes.tolist()}) > n // 2  # windows differ from image to image
    mean, std = torch.tensor(cfg.INPUT.PIXEL_MEAN).view(3, 1, 1), torch.tensor(cfg.INPUT.PIXEL_STD).view(3, 1, 1)
    for i, box in enumerate(boxes.tolist()):
        window = TF.resized_crop(image, *box, [16, 8], interpolation=T.InterpolationMode.BICUBIC)
        window = TF.hflip(window) if params.flip[i] else window
        levels = torch.round((one[i] * std + mean) * 255)
        assert (levels - torch.from_numpy(np.array(window)).permute(2, 0, 1)).abs().max() <= 2


def test_shorter_side_resize_crops_images_of_any_aspect(tmp_path):
    cfg = load_cfg(None, [*CROP, "INPUT.CROP.RESIZE", "[20]"])
    records = []
    for i, (h, w) in enumerate([(30, 60), (50, 20), (20, 20)]):
        path = tmp_path / f"{i}.png"
        _image(h, w, i).save(path)
        records.append(ImageRecord(str(path), i, 0))
    images = TrainImages(records, build_resize(cfg, [20]), TrainAugmentation.from_cfg(cfg))
    batch = images.__getitems__([(7, 0), (7, 1), (7, 2)])
    assert batch["images"].shape == (3, 3, 16, 8) and torch.isfinite(batch["images"]).all()


def test_both_pipelines_crop_the_same_windows(tiny_train_cfg):
    cfg = tiny_train_cfg(*CROP, "INPUT.REA.ENABLED", "False")
    loader, _ = build_train_loader(cfg)
    pipeline, _ = build_gpu_train_loader(cfg, torch.device("cpu"))
    assert pipeline.cache.shape[-2:] == (20, 10)
    pairs = list(zip(loader, pipeline))
    assert len(pairs) == len(loader)
    for a, b in pairs:
        assert a["paths"] == b["paths"] and torch.allclose(a["images"], b["images"], atol=1e-5)


def test_test_time_centre_crop_is_the_evaluations_and_reid_models():
    cfg = load_cfg(None, ["INPUT.SIZE_TEST", "[24, 24]", "INPUT.CROP.RESIZE", "[28]", "INPUT.INTERPOLATION",
                          "bilinear"])
    image = _image(40, 70)
    reference = T.Compose([T.Resize(28), T.CenterCrop(24), T.ToTensor(),
                           T.Normalize(cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD)])(image)
    ours = build_test_transform(cfg)(image)
    assert torch.equal(ours, reference)
    prep = Preprocess(cfg)
    assert torch.allclose(prep.normalize(prep.image(image)[None])[0], ours, atol=1e-6)
    frame = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    on_frame = prep.crop(frame, (0, 0, 70, 40))
    assert on_frame.shape == (3, 24, 24)
    assert (on_frame.float() - prep.image(image).float()).abs().mean() < 1.0
