"""ReIDModel for deployment: crops straight from frames (embed_boxes), the stored verification threshold and
``same``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reid.inference import ReIDModel
from reid.checkpoint import load_checkpoint, save_checkpoint
from reid.utils.errors import CheckpointError, DatasetError
from tests.gallery.test_api import make_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy") / "model.pt"
    make_checkpoint(path)
    return ReIDModel.from_checkpoint(path, device="cpu")


def _frame(seed=0, h=90, w=160):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


BOXES = [[10, 5, 40, 70], [0.4, 0.6, 159.5, 89.2], [120.7, 30.2, 200, 120], [-15, -3, 25, 33]]


def test_embed_boxes_equals_embed_on_the_crops(model):
    frame = _frame()
    got = model.embed_boxes(frame, BOXES, batch_size=3)
    # By hand: clip to the 160 x 90 frame, whole pixels (x1, y1 down, x2, y2 up), then embed the cropped images.
    crops = [frame[5:70, 10:40], frame[0:90, 0:160], frame[30:90, 120:160], frame[0:33, 0:25]]
    want = model.embed(crops)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6)
    # A tensor frame, a PIL image and a file give the same embeddings.
    assert torch.allclose(model.embed_boxes(torch.from_numpy(frame), torch.tensor(BOXES)), want, atol=1e-6)
    assert torch.allclose(model.embed_boxes(Image.fromarray(frame), np.array(BOXES)), want, atol=1e-6)


def test_embed_boxes_on_the_device_path_follows_the_pil_path(model):
    """The device path (crop and resize as tensors; on a GPU, there) against PIL's, on this CPU."""
    frame = _frame(1, 200, 300)
    boxes = [[10, 20, 70, 180], [100.5, 3.2, 180.9, 199], [200, 50, 230, 110]]
    pil = model.embed_boxes(frame, boxes)
    tensor = model.embed_boxes(frame, boxes, on_device=True)
    assert (pil * tensor).sum(1).min() > 0.999  # cosine similarity of the normalised embeddings


@pytest.mark.gpu
def test_embed_boxes_on_the_gpu(tmp_path):
    path = tmp_path / "model.pt"
    make_checkpoint(path)
    cpu, gpu = ReIDModel.from_checkpoint(path, device="cpu"), ReIDModel.from_checkpoint(path, device="cuda")
    frame = _frame(2, 200, 300)
    boxes = [[10, 20, 70, 180], [100.5, 3.2, 180.9, 199]]
    assert (cpu.embed_boxes(frame, boxes) * gpu.embed_boxes(frame, boxes)).sum(1).min() > 0.999


def test_no_boxes_gives_an_empty_batch(model):
    out = model.embed_boxes(_frame(), np.zeros((0, 4)))
    assert out.shape == (0, model.embedding_dim)


@pytest.mark.parametrize("boxes, match", [
    ([[10, 5, 40, 70], [50, 50, 50, 80]], r"boxes \[1\] have no area"),  # zero width
    ([[200, 10, 260, 50], [10, 5, 40, 70], [-40, -40, -1, -1]], r"boxes \[0, 2\] have no area"),  # off the frame
    ([[10, 5, 40, float("nan")]], r"boxes \[0\] have non-finite"),
    ([[1, 2, 3]], "N x 4"),
])
def test_bad_boxes_are_named(model, boxes, match):
    with pytest.raises(DatasetError, match=match):
        model.embed_boxes(_frame(), boxes)


def test_bad_frames_say_what_to_pass(model):
    with pytest.raises(DatasetError, match="H x W x 3 uint8"):
        model.embed_boxes(np.zeros((3, 90, 160), dtype=np.uint8), BOXES)
    with pytest.raises(DatasetError, match="H x W x 3 uint8"):
        model.embed_boxes(np.zeros((90, 160, 3), dtype=np.float32), BOXES)


def test_threshold_from_the_checkpoint_and_same(tmp_path):
    path = tmp_path / "model.pt"
    make_checkpoint(path)
    plain = ReIDModel.from_checkpoint(path, device="cpu")
    assert plain.threshold is None
    frame = _frame(3)
    a = [frame[0:60, 0:30], frame[10:80, 50:90]]
    with pytest.raises(CheckpointError, match="no verification threshold"):
        plain.same(a, a)
    state = load_checkpoint(path)
    emb = plain.embed(a)
    dist_ab = float(1 - (emb[0] * emb[1]).sum())
    save_checkpoint(path, {**state, "threshold": dist_ab - 1e-4, "threshold_far": 1e-3})
    model = ReIDModel.from_checkpoint(path, device="cpu")
    assert model.threshold == pytest.approx(dist_ab - 1e-4) and model.threshold_far == 1e-3
    same, dist = model.same(a, [a[0], a[0]])
    assert same.tolist() == [True, False] and dist[0] == pytest.approx(0, abs=1e-6)
    assert dist[1] == pytest.approx(dist_ab, abs=1e-6)
    # Embeddings work too; one item is compared with each of the other's; an explicit threshold wins.
    same, dist = model.same(model.embed(a, normalize=False), a[0], threshold=dist_ab + 1e-4)
    assert same.tolist() == [True, True]
    with pytest.raises(DatasetError, match="equal length"):
        model.same(a, [a[0]] * 3)
