"""Cameras reach a model with camera embeddings (SIE) through ``ReIDModel.embed`` / ``embed_boxes`` / ``same``,
``Gallery`` and reid-extract / reid-search (``--camera``, ``--cameras-from-names``): each image's embedding is the
network's on its own camera, wrong cameras are refused before any image is read, and a model without SIE ignores
them. The exports' camera input is tests/export/test_export.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reid.cli import extract as extract_tool, search as search_tool
from reid.cli.parser import run_tool
from reid.data.transforms import build_test_transform
from reid.gallery import Gallery
from reid.inference import ReIDModel
from reid.utils.errors import DatasetError
from tests.gallery.test_api import _images, make_checkpoint

# A tiny TransReID with a camera table of 3 cameras (TEST.FLIP: the mirror image gets the same camera).
SIE = ["MODEL.META_ARCHITECTURE", "TransReID", "MODEL.BACKBONE.NAME", "vit", "MODEL.VIT.EMBED_DIM", "16",
       "MODEL.VIT.DEPTH", "2", "MODEL.VIT.NUM_HEADS", "2", "MODEL.VIT.STRIDE", "[12, 12]", "MODEL.VIT.SIE_CAMERAS", "3",
       "TEST.FLIP", "True"]


@pytest.fixture(scope="module")
def sie(tmp_path_factory):
    path = tmp_path_factory.mktemp("sie") / "sie.pt"
    cfg, net = make_checkpoint(path, SIE)
    return path, cfg, net.eval(), ReIDModel.from_checkpoint(path, device="cpu")


def _reference(cfg, net, images, cameras):
    """The network on the evaluation's test transform, flip-averaged, with the given cameras."""
    x = torch.stack([build_test_transform(cfg)(im) for im in images])
    cams = torch.as_tensor(cameras).expand(len(images))
    with torch.no_grad():
        return (net(x, camids=cams) + net(x.flip(3), camids=cams)) / 2


def test_embed_gives_each_image_its_camera(sie):
    path, cfg, net, model = sie
    assert model.num_cameras == 3
    images, cams = _images(5), [2, 0, 1, 1, 2]
    expected = _reference(cfg, net, images, cams)
    got = model.embed(images, normalize=False, cameras=cams, batch_size=2)  # batches of 2: cameras follow them
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for form in (np.array(cams), torch.tensor(cams), tuple(cams)):
        torch.testing.assert_close(model.embed(images, cameras=form), F.normalize(expected, dim=1), atol=1e-5,
                                   rtol=1e-5)
    one = model.embed(images, normalize=False, cameras=1)  # one int for every image
    torch.testing.assert_close(one, _reference(cfg, net, images, 1), atol=1e-5, rtol=1e-5)
    assert (one - got).abs().max() > 1e-2  # the camera changes the embedding
    assert model.embedding_dim == got.shape[1]


@pytest.mark.parametrize("cameras, match", [
    (None, r"learned for 3 cameras, so it needs the camera of each image: embed\(images, cameras=\[\.\.\.\]\)"),
    ([0, 1], "Got 2 cameras for 3 images"),
    ([0, 3, 1], r"\(0\.\.2\); got image 1: 3\. A camera the model was not trained with has no embedding"),
    ([-1, 0, 1], "got image 0: -1"),
    (1.0, "must be integers"),
    ([0.0, 1.0, 2.0], "must be integers"),
    ("c1", "must be integers"),
])
def test_wrong_cameras_are_refused_before_any_image_is_read(sie, cameras, match):
    with pytest.raises(DatasetError, match=match):
        sie[3].embed(["missing_1.jpg", "missing_2.jpg", "missing_3.jpg"], cameras=cameras)


def test_a_model_without_camera_embeddings_ignores_cameras(tmp_path):
    path = tmp_path / "resnet.pt"
    make_checkpoint(path)
    model = ReIDModel.from_checkpoint(path, device="cpu")
    images = _images(3)
    assert model.num_cameras == 0
    torch.testing.assert_close(model.embed(images, cameras=[5, 0, 99]), model.embed(images), atol=0, rtol=0)
    with pytest.raises(DatasetError, match="Got 2 cameras for 3 images"):  # still one per image
        model.embed(images, cameras=[0, 1])


def test_embed_boxes_takes_a_camera_per_box_or_one_for_the_frame(sie):
    model = sie[3]
    frame = np.random.default_rng(0).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    boxes, cams = [[10, 5, 40, 70], [50, 10, 90, 80], [100, 0, 150, 85]], [2, 0, 1]
    crops = [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes]
    torch.testing.assert_close(model.embed_boxes(frame, boxes, cameras=cams), model.embed(crops, cameras=cams),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(model.embed_boxes(frame, boxes, cameras=1), model.embed(crops, cameras=1),
                               atol=1e-6, rtol=0)
    # resized on the model's device, in batches of 2: each box keeps its camera
    batched = model.embed_boxes(frame, boxes, cameras=cams, on_device=True, batch_size=2)
    alone = torch.cat([model.embed_boxes(frame, [b], cameras=c, on_device=True) for b, c in zip(boxes, cams)])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    with pytest.raises(DatasetError, match=r"embed_boxes\(frame, boxes, cameras=C\)"):
        model.embed_boxes(frame, boxes)
    with pytest.raises(DatasetError, match="Got 2 cameras for 3 images"):
        model.embed_boxes(frame, boxes, cameras=[0, 1])


def test_same_embeds_each_side_with_its_cameras(sie):
    model = sie[3]
    a, b = _images(2), _images(2, seed=1)
    _, dist = model.same(a, b, threshold=0.5, a_cameras=[0, 1], b_cameras=2)
    ea, eb = model.embed(a, cameras=[0, 1]), model.embed(b, cameras=2)
    torch.testing.assert_close(dist, 1 - (ea * eb).sum(1), atol=1e-5, rtol=0)
    with pytest.raises(DatasetError, match="needs the camera of each image"):
        model.same(a, b, threshold=0.5)


def test_gallery_extract_append_and_search_take_cameras(sie, tmp_path):
    model = sie[3]
    images, names = _images(4), ["a", "b", "c", "d"]
    gallery = Gallery.extract(tmp_path / "g.npz", model, images[:3], names[:3], cameras=[0, 1, 2])
    np.testing.assert_allclose(gallery.features, model.embed(images[:3], cameras=[0, 1, 2]).numpy(), atol=1e-6)
    gallery.append(model, images[3:], names[3:], cameras=1)
    np.testing.assert_allclose(gallery.features[3], model.embed(images[3], cameras=1)[0].numpy(), atol=1e-6)
    found = gallery.search(images[1:2], k=1, cameras=1).matches(0)[0]
    assert found.name == "b" and abs(found.distance) < 1e-5
    assert gallery.search(images[1:2], k=1, cameras=0).matches(0)[0].distance > 1e-4  # another camera, another point
    with pytest.raises(DatasetError, match="needs the camera of each image"):
        gallery.search(images[:1], k=1)
    with pytest.raises(DatasetError, match="needs the camera of each image"):
        Gallery.extract(tmp_path / "h.npz", model, images[:1], names[:1])
    assert not (tmp_path / "h.npz").exists()


# -- reid-extract / reid-search ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Market-1501 names (cameras 1, 3, 2) in market/, and the same pixels in one folder per camera in cams/."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    names = ["0001_c1s1_000151_01.png", "0001_c3s1_000226_02.png", "0002_c2s1_000301_01.png"]
    for i, name in enumerate(names):
        pixels = rng.integers(0, 256, (50 + 3 * i, 25, 3), dtype=np.uint8)
        for path in (root / "market" / name, root / "cams" / f"cam{name[6]}" / f"{i}.png"):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root


def _extract(ckpt, folder, out, *extra):
    return extract_tool.main(["--weights", str(ckpt), "--input", str(folder), "--output", str(out), *extra])


def test_extract_and_search_with_cameras_from_names(sie, crops, tmp_path, capsys):
    ckpt, model = sie[0], sie[3]
    feats = tmp_path / "market.npz"
    files = sorted((crops / "market").iterdir())
    assert _extract(ckpt, crops / "market", feats, "--cameras-from-names") == 0  # c<digits> tokens: 1, 3, 2
    stored = np.load(feats, allow_pickle=False)["features"]
    np.testing.assert_allclose(stored, model.embed(files, cameras=[0, 2, 1]).numpy(), atol=1e-6)

    # a regular expression over the path below --input, and --append with one camera for all
    by_folder = tmp_path / "cams.npz"
    assert _extract(ckpt, crops / "cams", by_folder, r"--cameras-from-names=^cam(\d+)/") == 0
    np.testing.assert_allclose(np.load(by_folder)["features"], stored[[0, 2, 1]], atol=1e-6)  # cam1/0, cam2/2, cam3/1
    more = tmp_path / "more.txt"
    more.write_text(f"{files[0]}\n", encoding="utf-8")
    assert _extract(ckpt, more, feats, "--append", "--camera", "2") == 0
    np.testing.assert_allclose(np.load(feats)["features"][3], model.embed(files[0], cameras=1)[0].numpy(), atol=1e-6)

    out = tmp_path / "found.json"
    capsys.readouterr()
    for camera in ("3", "1"):  # the query's own camera (3) finds itself at distance 0
        assert search_tool.main(["--gallery", str(feats), "--query", str(files[1]), "--camera", camera, "--topk", "4",
                                 "--output", str(out)]) == 0
        matches = json.loads(out.read_text())["queries"][0]["matches"]
        itself = next(m for m in matches if m["name"] == files[1].name)
        expected = 1 - float(model.embed(files[1], cameras=int(camera) - 1)[0] @ torch.from_numpy(stored[1]))
        assert itself["distance"] == pytest.approx(expected, abs=1e-5)
        assert (itself["rank"] == 1 and abs(expected) < 1e-5) if camera == "3" else expected > 1e-2
    assert search_tool.main(["--gallery", str(feats), "--query", str(files[2]), "--cameras-from-names", "--topk", "1",
                             "--output", str(out)]) == 0
    assert json.loads(out.read_text())["queries"][0]["matches"][0]["distance"] == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("extra, message", [
    ([], "camera embedding (SIE) learned for 3 cameras and needs the camera of each --input image: give --camera N "
         "(every image from camera N, 1...3) or --cameras-from-names [REGEX]"),
    (["--camera", "4"], "--camera: the model's camera embedding knows cameras 1..3 (numbered from 1, as in file "
                        "names); 3 of 3 --input images have another"),
    (["--camera", "0"], "knows cameras 1..3"),
    (["--cameras-from-names", r"_s(\d+)_"], "3 of 3 --input images have no camera in their name (a match of "
                                            r"'_s(\\d+)_' whose first group is a number)"),
    (["--cameras-from-names", r"c\d"], "has no group; put the camera number in parentheses"),
    (["--cameras-from-names", "(c"], "is not a regular expression"),
    (["--camera", "1", "--cameras-from-names"], "not allowed with argument"),
])
def test_extract_errors_say_how_to_give_cameras(sie, crops, tmp_path, capsys, extra, message):
    out = tmp_path / "x.npz"
    with pytest.raises(SystemExit) as exit_info:
        run_tool(extract_tool.main, ["--weights", str(sie[0]), "--input", str(crops / "market"), "--output",
                                     str(out), *extra])
    assert exit_info.value.code in (1, 2) and message in capsys.readouterr().err
    assert not out.exists()


def test_search_errors_and_a_model_without_cameras(sie, crops, tmp_path, capsys):
    feats = tmp_path / "g.npz"
    query = str(sorted((crops / "market").iterdir())[0])
    assert _extract(sie[0], crops / "market", feats, "--camera", "1") == 0
    for argv, message in (
        (["--query", query], "needs the camera of each --query image: give --camera N"),
        (["--query-npz", str(feats), "--camera", "1"], "--query-npz features were embedded with theirs already"),
        (["--query", query, "--cameras-from-names", r"x(\d)"], "1 of 1 --query images have no camera in their name"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_tool(search_tool.main, ["--gallery", str(feats), *argv])
        assert exit_info.value.code == 1 and message in capsys.readouterr().err

    plain = tmp_path / "resnet.pt"
    make_checkpoint(plain)
    with_camera, without = tmp_path / "a.npz", tmp_path / "b.npz"
    assert _extract(plain, crops / "market", with_camera, "--camera", "2") == 0
    assert "note: the model has no camera embeddings; --camera is ignored" in capsys.readouterr().out
    assert _extract(plain, crops / "market", without) == 0
    np.testing.assert_array_equal(np.load(with_camera)["features"], np.load(without)["features"])
