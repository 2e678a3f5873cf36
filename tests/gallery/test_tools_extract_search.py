"""tools/extract.py then tools/search.py on a small generated folder: each image finds itself first."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from reid.cli.parser import run_tool
from reid.utils.errors import CheckpointError
from tests.gallery.test_api import make_checkpoint

from reid.cli import extract as extract_tool, search as search_tool  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint and a folder of 3 identities x 2 images (in sub-folders), each image a different size."""
    root = tmp_path_factory.mktemp("search")
    ckpt = root / "model_final.pt"
    make_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    for pid in range(3):
        for k in range(2):
            path = root / "gallery" / f"id{pid}" / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (48 + 4 * k, 24 + 2 * pid, 3), dtype=np.uint8)).save(path)
    return root, ckpt


def test_extract_then_search(setup, capsys):
    root, ckpt = setup
    feats = root / "feats.npz"
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(root / "gallery"), "--output", str(feats),
                              "--batch-size", "4"]) == 0
    assert "wrote 6 embeddings" in capsys.readouterr().out
    data = np.load(feats, allow_pickle=False)
    names = [str(n) for n in data["names"]]
    assert names == [f"id{p}/{k}.png" for p in range(3) for k in range(2)]
    assert data["features"].shape[0] == 6 and data["features"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(data["features"], axis=1), 1.0, atol=1e-5)

    query = root / "gallery" / "id1" / "0.png"
    out = root / "results.json"
    assert search_tool.main(["--gallery", str(feats), "--query", str(query), "--topk", "3",
                             "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "id1/0.png" in printed.splitlines()[2]  # first row of the table under "query ..." and the header
    result = json.loads(out.read_text())
    matches = result["queries"][0]["matches"]
    assert result["metric"] == "cosine" and len(matches) == 3
    assert matches[0]["name"] == "id1/0.png" and abs(matches[0]["distance"]) < 1e-5
    assert [m["rank"] for m in matches] == [1, 2, 3]
    assert all(a["distance"] <= b["distance"] for a, b in zip(matches, matches[1:]))

    # the same images as a query feature file: every image is its own nearest neighbour
    assert search_tool.main(["--gallery", str(feats), "--query-npz", str(feats), "--topk", "10",
                             "--output", str(out)]) == 0
    ranked = json.loads(out.read_text())["queries"]
    assert [q["matches"][0]["name"] for q in ranked] == names and len(ranked[0]["matches"]) == 6


def test_list_input_and_errors_exit_1(setup, tmp_path, capsys):
    root, ckpt = setup
    listing = root / "list.txt"
    listing.write_text("gallery/id2/1.png\ngallery/id0/0.png\n", encoding="utf-8")
    feats = tmp_path / "listed.features"  # no .npz suffix: written exactly where asked
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(listing), "--output", str(feats)]) == 0
    assert [str(n) for n in np.load(feats, allow_pickle=False)["names"]] == ["gallery/id2/1.png", "gallery/id0/0.png"]
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    for tool, argv, expected in [
        (extract_tool, ["--weights", str(ckpt), "--input", str(tmp_path / "empty"), "--output", "x.npz"], "No images"),
        (search_tool, ["--gallery", str(tmp_path / "none.npz"), "--query", "q.jpg"], "none.npz"),
        (search_tool, ["--gallery", str(feats), "--query", str(tmp_path / "missing.jpg")],
         f"error: --query: no image file {str(tmp_path / 'missing.jpg')!r} (relative paths are read from "),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_tool(tool.main, argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and expected in err and "dataset" not in err


def test_append_refuses_other_embedding_settings(setup, tmp_path, monkeypatch):
    """--append with the same checkpoint but a setting that changes embeddings (TEST.FLIP, INPUT.*) is refused,
    naming the keys; where the model runs (MODEL.DEVICE) is not such a setting. The checkpoint is hashed once per
    command (the check of the gallery and the new file's record share it)."""
    import reid.inference.model

    hashed = []
    def counted(path, real=reid.inference.model.file_sha256):
        hashed.append(path)
        return real(path)

    for module in (reid.inference.model, extract_tool):  # wherever a hash could be taken
        monkeypatch.setattr(module, "file_sha256", counted, raising=False)
    root, ckpt = setup
    feats = tmp_path / "g.npz"
    first = root / "first_only.txt"
    first.write_text("gallery/id0/0.png\n", encoding="utf-8")
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(first), "--output", str(feats)]) == 0
    more = root / "more.txt"
    more.write_text("gallery/id1/0.png\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"other settings \(INPUT\.SIZE_TEST, TEST\.FLIP differ\)"):
        extract_tool.main(["--weights", str(ckpt), "--input", str(more), "--output", str(feats), "--append",
                           "TEST.FLIP", "True", "INPUT.SIZE_TEST", "[32, 16]"])
    hashed.clear()
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(more), "--output", str(feats), "--append",
                              "MODEL.DEVICE", "cpu"]) == 0
    assert len(hashed) == 1
    assert [str(n) for n in np.load(feats, allow_pickle=False)["names"]] == ["gallery/id0/0.png", "gallery/id1/0.png"]
