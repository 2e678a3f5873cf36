"""Search at scale: FAISS gallery indexes (exact flat, IVF-PQ, HNSW) against the exact search, --append, the
verification threshold in reid-search, and the bad inputs (an index of another gallery, FAISS missing)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from reid.gallery import FeatureFile, GalleryIndex, build_index, index_path, search
from reid.checkpoint import load_checkpoint, save_checkpoint
from reid.cli import extract as extract_tool, search as search_tool
from reid.cli.parser import run_tool
from reid.utils.errors import CheckpointError, ConfigError, DatasetError
from tests.gallery.test_api import make_checkpoint
from tests.gallery.test_tools_extract_search import setup  # noqa: F401 - the shared fixture

faiss = pytest.importorskip("faiss", reason="needs faiss-cpu (pip install -e '.[search]')")


def structured(n, dim=32, ids=60, seed=0):
    """Identity centres + noise, L2-normalised: neighbours are meaningful, as in a re-ID gallery."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    x = centres[rng.integers(0, ids, n)] + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind, min_recall", [("flat", 1.0), ("ivfpq", 0.9), ("hnsw", 0.95)])
def test_index_recall_against_exact_search(kind, min_recall):
    gallery, queries = structured(3000), structured(50, seed=1)
    names = [f"g{i}.jpg" for i in range(len(gallery))]
    index = build_index(gallery, names, kind)
    dist, idx = index.search(torch.from_numpy(queries), gallery, 10)
    exact_dist, exact_idx = search(torch.from_numpy(queries), torch.from_numpy(gallery), 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx.tolist(), exact_idx.tolist())])
    assert recall >= min_recall
    # Distances are the exact cosine distances of the returned items, in ascending order.
    chosen = torch.from_numpy(gallery)[idx]
    assert torch.allclose(dist, 1 - torch.einsum("qd,qkd->qk", torch.from_numpy(queries), chosen), atol=1e-5)
    assert bool((dist[:, 1:] >= dist[:, :-1]).all())
    if kind == "flat":
        assert idx.tolist() == exact_idx.tolist()


def test_index_file_round_trip_and_mismatch(tmp_path):
    gallery = structured(500)
    names = [f"g{i}.jpg" for i in range(500)]
    index = build_index(gallery, names, "ivfpq")
    path = index.save(tmp_path / "g.index.npz")
    again = GalleryIndex.load(path, gallery, names)
    q = torch.from_numpy(structured(5, seed=2))
    assert again.search(q, gallery, 5)[1].tolist() == index.search(q, gallery, 5)[1].tolist()
    with pytest.raises(DatasetError, match="holds 500 vectors of dimension 32, .* 499 of dimension 32"):
        GalleryIndex.load(path, gallery[:-1], names[:-1])
    other = gallery.copy()
    other[3, 0] += 1e-3
    with pytest.raises(DatasetError, match="names or features differ.*Rebuild it with reid-extract --index ivfpq"):
        GalleryIndex.load(path, other, names)
    with pytest.raises(DatasetError, match="names or features differ"):
        GalleryIndex.load(path, gallery, names[::-1])


def test_faiss_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ConfigError, match="pip install faiss-cpu.*--index exact"):
        build_index(structured(100), [str(i) for i in range(100)], "ivfpq")


def test_extract_index_append_and_search(setup, tmp_path, capsys):  # noqa: F811
    root, ckpt = setup
    feats = tmp_path / "gallery.npz"
    first = root / "first.txt"
    first.write_text("gallery/id0/0.png\ngallery/id0/1.png\ngallery/id1/0.png\n", encoding="utf-8")
    rest = root / "rest.txt"
    rest.write_text("gallery/id1/1.png\ngallery/id2/0.png\ngallery/id2/1.png\n", encoding="utf-8")
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(first), "--output", str(feats),
                              "--index", "flat"]) == 0
    assert "flat index of 3 vectors" in capsys.readouterr().out
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(rest), "--output", str(feats), "--append"]) == 0
    assert "added 3 vectors to the flat index" in capsys.readouterr().out
    # The appended gallery equals one extracted at once (old rows untouched), and its index matches it.
    whole = tmp_path / "whole.npz"
    both = root / "both.txt"
    both.write_text(first.read_text() + rest.read_text(), encoding="utf-8")
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(both), "--output", str(whole)]) == 0
    a, b = FeatureFile.load(feats), FeatureFile.load(whole)
    assert a.names == b.names and np.allclose(a.features, b.features, atol=1e-6)
    out = tmp_path / "res.json"
    assert search_tool.main(["--gallery", str(feats), "--query-npz", str(whole), "--topk", "2", "--output",
                             str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["index"] == "flat" and [q["matches"][0]["name"] for q in res["queries"]] == a.names
    # --threshold VALUE keeps only matches within it; --aqe runs through the index.
    assert search_tool.main(["--gallery", str(feats), "--query-npz", str(whole), "--topk", "6", "--threshold",
                             "1e-5", "--aqe", "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert all(m["distance"] <= 1e-5 for q in res["queries"] for m in q["matches"])
    capsys.readouterr()
    # The same images again, another checkpoint, a different dimension: refused, exit 1 with a message.
    with pytest.raises(SystemExit) as e:
        run_tool(extract_tool.main, ["--weights", str(ckpt), "--input", str(rest), "--output", str(feats),
                                     "--append"])
    assert e.value.code == 1 and "already in" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    make_checkpoint(other, ["MODEL.BACKBONE.WIDTH", "16"])
    with pytest.raises(CheckpointError, match="another checkpoint"):
        extract_tool.main(["--weights", str(other), "--input", str(root / "gallery"), "--output", str(feats),
                           "--append"])
    state = load_checkpoint(ckpt)
    copy = tmp_path / "same_weights.pt"
    save_checkpoint(copy, state)  # the same weights under another name are the same checkpoint
    extra = root / "extra.txt"
    extra.write_text("gallery/id2/1.png\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="already in"):
        extract_tool.main(["--weights", str(copy), "--input", str(extra), "--output", str(feats), "--append"])


def test_search_refuses_an_index_of_another_gallery(setup, tmp_path):  # noqa: F811
    root, ckpt = setup
    feats = tmp_path / "g.npz"
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(root / "gallery"), "--output", str(feats),
                              "--index", "flat"]) == 0
    gallery = FeatureFile.load(feats)
    gallery.features = gallery.features[::-1].copy()
    gallery.save(feats)  # edited after the index was written
    with pytest.raises(DatasetError, match="not built from"):
        search_tool.main(["--gallery", str(feats), "--query-npz", str(feats)])
    assert search_tool.main(["--gallery", str(feats), "--query-npz", str(feats), "--index", "exact"]) == 0
    assert index_path(feats).name == "g.index.npz"


def test_search_threshold_auto(setup, tmp_path, capsys):  # noqa: F811
    root, ckpt = setup
    feats = tmp_path / "g.npz"
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(root / "gallery"), "--output", str(feats)]) == 0
    with pytest.raises(CheckpointError, match="stores no verification threshold.*--threshold VALUE"):
        search_tool.main(["--gallery", str(feats), "--query-npz", str(feats), "--threshold", "auto"])
    with pytest.raises(ConfigError, match="--threshold must be auto or a distance"):
        search_tool.main(["--gallery", str(feats), "--query-npz", str(feats), "--threshold", "high"])
    state = load_checkpoint(ckpt)
    with_thr = tmp_path / "thr.pt"
    save_checkpoint(with_thr, {**state, "threshold": 0.0, "threshold_far": 1e-3})
    feats2 = tmp_path / "g2.npz"
    assert extract_tool.main(["--weights", str(with_thr), "--input", str(root / "gallery"), "--output",
                              str(feats2)]) == 0
    assert FeatureFile.load(feats2).threshold == 0.0
    out = tmp_path / "r.json"
    capsys.readouterr()
    assert search_tool.main(["--gallery", str(feats2), "--query-npz", str(feats2), "--threshold", "auto",
                             "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["threshold"] == 0.0
    # Only exact self-matches (distance <= 0 up to rounding) survive.
    assert all(len(q["matches"]) <= 1 for q in res["queries"])
