"""reid.gallery.Gallery (open, search, append: the rules reid-search and reid-extract run), the one test-time
preprocessing that ReIDModel.embed and embed_boxes share, reid.api as a re-export, and the README's Python API
example, read from README.md and run against a tiny checkpoint."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reid
import reid.api
from reid.checkpoint import load_checkpoint, save_checkpoint
from reid.config import cfg_to_dict, load_cfg
from reid.data.transforms import build_test_transform
from reid.gallery import FeatureFile, Gallery, build_index, index_path, search
from reid.inference import Preprocess, ReIDModel, list_images
from reid.utils.errors import CheckpointError, ConfigError, DatasetError
from tests.gallery.test_api import make_checkpoint
from tests.gallery.test_index_search import structured
from tests.gallery.test_tools_extract_search import setup  # noqa: F401 - the shared fixture

REPO = Path(__file__).resolve().parents[2]


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth RGB image (slow waves of random directions): what cameras see, unlike pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    waves = [127.5 + 120 * np.sin(a * yy + b * xx + c) for a, b, c in rng.uniform(0.02, 0.15, (3, 3))]
    return np.stack(waves, -1).round().astype(np.uint8)


# -- one preprocessing definition ---------------------------------------------------------------------------------
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_preprocess_equals_the_evaluation_test_transform(interpolation):
    cfg = load_cfg(None, ["INPUT.SIZE_TEST", "[64, 32]", "INPUT.INTERPOLATION", interpolation])
    pre = Preprocess(cfg)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 17 + 5 * i, 3), dtype=np.uint8)) for i in range(4)]
    pixels = torch.stack([pre.image(im) for im in images])
    assert pixels.dtype == torch.uint8 and pixels.shape == (4, 3, 64, 32)
    assert torch.equal(pre.normalize(pixels), torch.stack([build_test_transform(cfg)(im) for im in images]))
    # The frame path resizes crops as tensors: within a grey level of PIL's on a smooth image.
    frame = _smooth(200, 300, 1)
    tensor = torch.from_numpy(frame).permute(2, 0, 1)
    for x1, y1, x2, y2 in [(10, 20, 70, 180), (100, 3, 181, 199), (200, 50, 230, 110), (5, 5, 20, 30)]:
        crop = pre.crop(tensor, (x1, y1, x2, y2)).int()
        assert (crop - pre.image(frame[y1:y2, x1:x2]).int()).abs().max() <= 1


def test_embed_and_embed_boxes_share_the_preprocessing(setup, monkeypatch):  # noqa: F811
    model = ReIDModel.from_checkpoint(setup[1], device="cpu")
    calls = []
    real = model.preprocess.normalize
    monkeypatch.setattr(model.preprocess, "normalize", lambda batch: calls.append(len(batch)) or real(batch))
    frame = _smooth(90, 160, 2)
    boxes = [[10, 5, 40, 70], [0, 0, 160, 90]]
    model.embed([frame[5:70, 10:40]])
    model.embed_boxes(frame, boxes)
    on_device = model.embed_boxes(frame, boxes, on_device=True)
    assert calls == [1, 2, 2]
    assert (on_device * model.embed_boxes(frame, boxes)).sum(1).min() > 0.999


# -- Gallery ------------------------------------------------------------------------------------------------------
def test_extract_open_search_and_append(setup, tmp_path):  # noqa: F811
    root, ckpt = setup
    model = ReIDModel.from_checkpoint(ckpt, device="cpu")
    paths, names = list_images(root / "gallery")
    path = tmp_path / "g.npz"
    made = Gallery.extract(path, model, paths[:4], names[:4])
    assert len(made) == 4 and made.index is None and made.index_change.action == ""
    gallery = Gallery.open(path)
    assert gallery.names == names[:4] and gallery.dim == model.embedding_dim and gallery.index is None
    # Images are embedded with the recorded checkpoint: the same ranking as their embeddings.
    by_image = gallery.search(paths[:2], k=3)
    by_embedding = gallery.search(model.embed(paths[:2]), k=3)
    assert by_image.indices.tolist() == by_embedding.indices.tolist()
    torch.testing.assert_close(by_image.distances, by_embedding.distances)
    assert [m.rank for m in by_image.matches(1)] == [1, 2, 3] and by_image.matches(1)[0].name == names[1]
    # A threshold keeps only the matches within it, nearest first.
    kept = gallery.search(paths[:2], k=3, threshold=1e-5)
    assert [[m.name for m in kept.matches(q)] for q in range(2)] == [names[:1], names[1:2]]
    # append: only the new images are embedded; the result equals extracting everything at once.
    gallery.append(model, paths[4:], names[4:])
    whole = Gallery.extract(tmp_path / "whole.npz", model, paths, names)
    again = Gallery.open(path)
    assert again.names == whole.names == names
    np.testing.assert_allclose(again.features, whole.features, atol=1e-6)
    with pytest.raises(DatasetError, match="already in"):
        gallery.append(model, paths[:1], names[:1])
    with pytest.raises(DatasetError, match="Names are needed"):
        gallery.append(model, [np.zeros((8, 4, 3), dtype=np.uint8)])
    with pytest.raises(DatasetError, match="2 names for 1 images"):
        gallery.append(model, paths[:1], ["x", "y"])
    with pytest.raises(ConfigError, match="k must be >= 1"):
        gallery.search(paths[:1], k=0)
    with pytest.raises(ConfigError, match="Unknown index type 'annoy'"):
        gallery.append(model, paths[:1], ["new.png"], index="annoy")
    assert len(Gallery.open(path)) == 6  # nothing was written by the refused calls
    other = tmp_path / "other.pt"
    make_checkpoint(other, ["MODEL.BACKBONE.WIDTH", "16"])
    with pytest.raises(CheckpointError, match="another checkpoint"):
        gallery.append(ReIDModel.from_checkpoint(other, device="cpu"), paths[:1], ["new.png"])


def test_threshold_auto_reads_the_file_then_the_checkpoint(setup, tmp_path):  # noqa: F811
    root, ckpt = setup
    feats = structured(20, dim=8)
    names = [f"{i}.png" for i in range(20)]
    path = tmp_path / "g.npz"
    with_thr = tmp_path / "thr.pt"
    save_checkpoint(with_thr, {**load_checkpoint(ckpt), "threshold": 0.25})
    FeatureFile(feats, names, True, weights=str(with_thr)).save(path)  # written before thresholds were recorded
    gallery = Gallery.open(path, index="exact")
    assert gallery.resolve_threshold("auto") == 0.25 and gallery.resolve_threshold(0.5) == 0.5
    assert gallery.resolve_threshold(None) is None
    result = gallery.search(feats[:3], k=20, threshold="auto")
    assert result.threshold == 0.25 and all(m.distance <= 0.25 for q in range(3) for m in result.matches(q))
    assert result.matches(0)[0].name == "0.png"
    FeatureFile(feats, names, True, weights=str(with_thr), threshold=0.1).save(path)  # the file's own wins
    assert Gallery.open(path).resolve_threshold("auto") == 0.1
    FeatureFile(feats, names, True, weights=str(ckpt)).save(path)  # a checkpoint without a threshold
    with pytest.raises(CheckpointError, match="stores no verification threshold.*--threshold VALUE"):
        Gallery.open(path).resolve_threshold("auto")
    euclidean = json.dumps(cfg_to_dict(load_cfg(None, ["TEST.METRIC", "euclidean"])))
    FeatureFile(feats, names, True, cfg_json=euclidean, threshold=0.3).save(path)
    with pytest.raises(CheckpointError, match="euclidean distance"):
        Gallery.open(path).resolve_threshold("auto")
    with pytest.raises(ConfigError, match="threshold must be None, a distance or 'auto'"):
        Gallery.open(path).resolve_threshold("high")


def test_index_auto_exact_file_and_append_extends_it(tmp_path):
    pytest.importorskip("faiss", reason="needs faiss-cpu (pip install -e '.[search]')")
    feats, queries = structured(300), torch.from_numpy(structured(7, seed=3))
    names = [f"g{i}.jpg" for i in range(300)]
    path = tmp_path / "g.npz"
    FeatureFile(feats[:200], names[:200], True).save(path)
    assert Gallery.open(path).index is None  # auto without an index beside it: exact search
    build_index(feats[:200], names[:200], "flat").save(index_path(path))
    gallery = Gallery.open(path)
    assert gallery.index.kind == "flat" and gallery.index_file == index_path(path)
    assert Gallery.open(path, index="exact").index is None
    assert Gallery.open(path, index=str(index_path(path))).index.kind == "flat"
    exact = search(queries, torch.from_numpy(feats[:200]), 5)
    found = gallery.search(queries, k=5)
    assert found.indices.tolist() == exact[1].tolist()
    torch.testing.assert_close(found.distances, exact[0], atol=1e-5, rtol=0)
    # An index of another gallery is refused.
    FeatureFile(feats[:199], names[:199], True).save(tmp_path / "short.npz")
    index_path(path).rename(index_path(tmp_path / "short.npz"))
    with pytest.raises(DatasetError, match="not built from"):
        Gallery.open(tmp_path / "short.npz")


def test_append_extends_the_index_of_an_open_gallery(setup, tmp_path):  # noqa: F811
    pytest.importorskip("faiss", reason="needs faiss-cpu (pip install -e '.[search]')")
    root, ckpt = setup
    model = ReIDModel.from_checkpoint(ckpt, device="cpu")
    paths, names = list_images(root / "gallery")
    path = tmp_path / "g.npz"
    made = Gallery.extract(path, model, paths[:3], names[:3], index="flat")
    assert (made.index_change.action, made.index_change.kind, made.index_change.count) == ("built", "flat", 3)
    gallery = Gallery.open(path)
    gallery.append(model, paths[3:], names[3:])
    assert (gallery.index_change.action, gallery.index.count) == ("added", 6)
    reopened = Gallery.open(path)  # the index on disk matches the grown file
    assert reopened.index.count == 6 and reopened.search(paths[4:5], k=1).matches(0)[0].name == names[4]
    with pytest.raises(DatasetError, match="already holds a gallery of 6 embeddings.*--append.*--overwrite"):
        Gallery.extract(path, model, paths[:2], names[:2])  # would replace the gallery: refused before embedding
    assert len(Gallery.open(path)) == 6
    replaced = Gallery.extract(path, model, paths[:2], names[:2], overwrite=True)  # its index goes with it
    assert replaced.index_change.action == "removed" and not index_path(path).exists()
    exact = Gallery.open(path, index="exact")
    exact.append(model, paths[2:3], names[2:3], index="hnsw")  # a kind given: built as that kind
    assert exact.index_change.action == "built" and exact.index is None  # opened exact, it stays exact
    assert Gallery.open(path).index.kind == "hnsw"
    exact.append(model, paths[3:4], names[3:4], index="exact")  # "exact": the index is left, stale
    assert exact.index_change.action == "stale"
    with pytest.raises(DatasetError, match="not built from"):
        Gallery.open(path)


def test_aqe_through_a_flat_index_equals_exact_aqe(tmp_path):
    pytest.importorskip("faiss", reason="needs faiss-cpu (pip install -e '.[search]')")
    feats, queries = structured(400, seed=5), torch.from_numpy(structured(20, seed=6))
    names = [f"g{i}.jpg" for i in range(400)]
    path = tmp_path / "g.npz"
    FeatureFile(feats, names, True).save(path)
    build_index(feats, names, "flat").save(index_path(path))
    flat, exact = Gallery.open(path), Gallery.open(path, index="exact")
    assert flat.index is not None and exact.index is None
    a, b = flat.search(queries, k=10, aqe=True), exact.search(queries, k=10, aqe=True)
    assert a.indices.tolist() == b.indices.tolist()
    torch.testing.assert_close(a.distances, b.distances, atol=1e-5, rtol=0)
    plain = exact.search(queries, k=10)
    assert not torch.allclose(plain.distances, b.distances)  # the expansion changed the queries


# -- reid.api and the README ----------------------------------------------------------------------------------------
def test_reid_api_is_a_short_re_export():
    assert reid.api.ReIDModel is ReIDModel is reid.ReIDModel
    assert reid.api.FeatureFile is FeatureFile and reid.api.search is search and reid.api.Gallery is Gallery
    assert reid.api.list_images is list_images and reid.api.EmbeddingModule.__module__ == "reid.inference.model"
    assert len((REPO / "reid" / "api.py").read_text(encoding="utf-8").splitlines()) <= 80


def _readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"one README python block with {marker!r}"
    return found[0]


def test_readme_gallery_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python API example of reid.inference and reid.gallery, as written, on a tiny checkpoint whose
    training run chose a threshold."""
    ckpt = tmp_path / "model_final.pt"
    make_checkpoint(ckpt)
    save_checkpoint(ckpt, {**load_checkpoint(ckpt), "threshold": 1.0, "threshold_far": 1e-3})
    for folder, first in (("crops", 0), ("new_crops", 4)):
        for i in range(first, first + 4):
            out = tmp_path / folder / f"cam{i % 2}" / f"{i}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_smooth(60 + 4 * i, 30 + 2 * i, i)).save(out, quality=95)
    Image.open(tmp_path / "new_crops" / "cam1" / "5.jpg").save(tmp_path / "person.jpg", quality=95)
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_block("from reid.gallery import Gallery"), "README.md", "exec"), {})
    rows = capsys.readouterr().out.split("\n")[:-1]
    assert Gallery.open("gallery.npz").names == [f"cam{i % 2}/{i}.jpg" for i in (0, 2, 1, 3, 4, 6, 5, 7)]
    assert 1 <= len(rows) <= 5 and rows[0].split()[:2] == ["1", "cam1/5.jpg"]
