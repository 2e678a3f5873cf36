"""ReIDModel: checkpoint loading with the stored config, and embeddings equal to the evaluation pipeline's.

``make_checkpoint`` (a tiny ResNet saved in the Trainer's format) is shared with
test_export.py and test_tools_extract_search.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from reid.inference import ReIDModel, list_images
from reid.config import load_cfg
from reid.data.transforms import build_test_transform
from reid.checkpoint import Checkpointer, save_checkpoint
from reid.solver import build_lr_scheduler, build_optimizer
from reid.modeling import build_model
from reid.utils.errors import CheckpointError, ConfigError, DatasetError

TINY = ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 1, 1]", "MODEL.BACKBONE.WIDTH", "8",
        "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]", "TEST.IMS_PER_BATCH", "4"]


def _perturb(model: nn.Module) -> None:
    """Random weights and BN statistics: a freshly initialised ResNet is too close to identity maps to compare."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.is_floating_point():
                noise = torch.rand(t.shape, generator=gen)
                t.copy_(noise + 0.5 if "running_var" in name else t + 0.2 * (noise - 0.5))


def make_checkpoint(path: Path, opts: Sequence[str] = (), bare: bool = False) -> Tuple[object, nn.Module]:
    """Save a tiny perturbed model as tools/train.py would (its Checkpointer); returns (cfg, model)."""
    cfg = load_cfg(None, TINY + list(opts))
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=5)
    _perturb(model)
    optimizer = build_optimizer(cfg, model)
    checkpointer = Checkpointer(model, cfg, path.parent, optimizer=optimizer,
                                scheduler=build_lr_scheduler(cfg, optimizer, 1))
    state = checkpointer.state_dict(epoch=1)
    save_checkpoint(path, state["model"] if bare else state)
    return cfg, model


def _images(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 20 + 3 * i, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model_final.pt"
    cfg, model = make_checkpoint(path)
    return path, cfg, model


def test_embeddings_equal_the_trained_model_on_the_test_transform(tiny):
    path, cfg, model = tiny
    api = ReIDModel.from_checkpoint(path, device="cpu")
    images = _images(5)
    got = api.embed(images, normalize=False)
    transform = build_test_transform(cfg)
    with torch.no_grad():
        expected = model.eval()(torch.stack([transform(im) for im in images]))
    assert got.shape == (5, expected.shape[1]) and got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    normed = api.embed(images)
    torch.testing.assert_close(normed, F.normalize(expected, dim=1), atol=1e-5, rtol=1e-5)
    assert api.weights == str(path.resolve())


def test_every_input_kind_and_batching_give_the_same_embeddings(tiny, tmp_path):
    path = tiny[0]
    api = ReIDModel.from_checkpoint(path, device="cpu")
    arrays = [np.asarray(im) for im in _images(5, seed=1)]
    arrays = [a[:40, :20] for a in arrays]  # one size, so that a tensor batch can hold them
    files = []
    for i, a in enumerate(arrays):
        files.append(tmp_path / f"{i}.png")  # lossless: the file decodes to the same pixels
        Image.fromarray(a).save(files[-1])
    reference = api.embed([Image.fromarray(a) for a in arrays])
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    for other in (api.embed(arrays), api.embed([str(f) for f in files], batch_size=2, num_workers=2),
                  api.embed(files, batch_size=3), api.embed(batch)):
        torch.testing.assert_close(other, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(api.embed(arrays[2]), reference[2:3], atol=1e-6, rtol=0)


def test_test_flip_averages_with_the_mirror_image(tiny):
    path, cfg, model = tiny
    api = ReIDModel.from_checkpoint(path, device="cpu", opts=["TEST.FLIP", "True"])
    images = _images(3)
    x = torch.stack([build_test_transform(cfg)(im) for im in images])
    with torch.no_grad():
        expected = (model(x) + model(x.flip(3))) / 2
    torch.testing.assert_close(api.embed(images, normalize=False), expected, atol=1e-5, rtol=1e-5)


def test_bare_state_dict_needs_a_config_and_a_wrong_one_is_named(tmp_path):
    path = tmp_path / "bare.pt"
    _, model = make_checkpoint(path, bare=True)
    with pytest.raises(CheckpointError, match="stores no config.*--config"):
        ReIDModel.from_checkpoint(path)
    yaml = tmp_path / "tiny.yml"
    yaml.write_text("MODEL:\n  BACKBONE:\n    DEPTH: 18\n    LAYERS: [1, 1, 1, 1]\n    WIDTH: 8\n"
                    "INPUT:\n  SIZE_TEST: [64, 32]\n", encoding="utf-8")
    api = ReIDModel.from_checkpoint(path, config=str(yaml), device="cpu")
    with torch.no_grad():
        expected = model(torch.zeros(1, 3, 64, 32))
    torch.testing.assert_close(api.net(torch.zeros(1, 3, 64, 32)), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match="does not fit this model.*trained with"):
        ReIDModel.from_checkpoint(path, config=str(yaml), opts=["MODEL.BACKBONE.WIDTH", "16"])


def test_checkpoint_of_another_meta_architecture_is_refused(tmp_path, tiny):
    state = torch.load(tiny[0], weights_only=True)
    state["meta_architecture"] = "MGN"
    save_checkpoint(tmp_path / "mgn.pt", state)
    with pytest.raises(CheckpointError, match="holds a MGN model"):
        ReIDModel.from_checkpoint(tmp_path / "mgn.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        ReIDModel.from_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="Unknown config key"):
        ReIDModel.from_checkpoint(tiny[0], opts=["TEST.FLIPP", "True"])


def test_bad_inputs_say_what_to_pass(tiny, tmp_path):
    api = ReIDModel.from_checkpoint(tiny[0], device="cpu")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        api.embed([_images(1)[0], broken])
    with pytest.raises(DatasetError, match=r"permute\(0, 3, 1, 2\)"):
        api.embed(torch.zeros(2, 64, 32, 3, dtype=torch.uint8))
    with pytest.raises(DatasetError, match="uint8"):
        api.embed(np.zeros((64, 32, 3), dtype=np.float32))
    with pytest.raises(DatasetError, match="no images"):
        api.embed([])


def test_list_images_of_folders_and_lists(tmp_path):
    for rel in ("b/2.png", "a/1.jpg", "a/deep/3.PNG", "notes.txt"):
        (tmp_path / "imgs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / rel).write_bytes(b"x")
    paths, names = list_images(tmp_path / "imgs")
    assert names == ["a/1.jpg", "a/deep/3.PNG", "b/2.png"]
    assert paths == [str(tmp_path / "imgs" / n) for n in names]
    (tmp_path / "list.txt").write_text("# gallery\nimgs/b/2.png\n\nimgs/a/1.jpg\n", encoding="utf-8")
    assert list_images(tmp_path / "list.txt") == ([str(tmp_path / "imgs/b/2.png"), str(tmp_path / "imgs/a/1.jpg")],
                                                  ["imgs/b/2.png", "imgs/a/1.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images"):
        list_images(tmp_path / "empty")
    (tmp_path / "bad.txt").write_text("imgs/a/1.jpg\nimgs/zz.jpg\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="zz.jpg"):
        list_images(tmp_path / "bad.txt")
