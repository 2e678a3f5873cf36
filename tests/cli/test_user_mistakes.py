"""What a new user tripped over (issue 27): commands that destroyed a file, answered silently wrong or lost work, and
errors that were tracebacks or gave advice that did not work. Each test names the mistake; before the fix, each
failed (the command exited 0, wrote, or raised a traceback)."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from reid.checkpoint import load_checkpoint, save_checkpoint
from reid.cli import convert as convert_tool, export as export_tool, extract as extract_tool, \
    search as search_tool
from reid.cli.parser import run_tool
from reid.export import ExportError, exporter
from reid.gallery import FeatureFile, Gallery, GalleryIndex, build_index, index_path
from reid.inference import ReIDModel
from reid.utils.errors import CheckpointError, ConfigError, DatasetError
from tests.gallery.test_api import make_checkpoint
from tests.gallery.test_index_search import structured
from tests.gallery.test_tools_extract_search import setup  # noqa: F401 - the shared fixture

pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit.\\w+` is deprecated:FutureWarning")]


def _fails(main, argv, capsys) -> str:
    """Run a command as its console entry does: it must exit 1 with a one-paragraph message (no traceback)."""
    capsys.readouterr()  # what earlier commands printed
    with pytest.raises(SystemExit) as code:
        run_tool(main, argv)
    err = capsys.readouterr().err
    assert code.value.code == 1 and "\nerror: " in "\n" + err and "Traceback" not in err, err
    return err[err.rindex("error: "):]  # after any progress bar


def _other_checkpoint(ckpt: Path, out: Path) -> Path:
    """Another model of the same architecture and dimension: ``ckpt`` with moved weights."""
    state = load_checkpoint(ckpt)
    gen = torch.Generator().manual_seed(1)
    state["model"] = {k: v + 0.3 * torch.randn(v.shape, generator=gen) if v.is_floating_point() and
                      "running_var" not in k else v for k, v in state["model"].items()}
    save_checkpoint(out, state)
    return out


# -- 1. reid-export over its own checkpoint -------------------------------------------------------------------------
def test_export_never_replaces_its_checkpoint_or_another_file(setup, tmp_path, capsys):  # noqa: F811
    ckpt = tmp_path / "model_final.pt"
    shutil.copy(setup[1], ckpt)
    original = ckpt.read_bytes()
    for fmt in ("torchscript", "onnx"):  # both exited 0 and wrote a graph over the checkpoint
        err = _fails(export_tool.main, ["--weights", str(ckpt), "--format", fmt, "--output", str(ckpt)], capsys)
        assert "is the checkpoint being exported" in err
    assert ckpt.read_bytes() == original and load_checkpoint(ckpt)["cfg"]
    other = tmp_path / "model_best.pt"  # another checkpoint (a TorchScript name): not replaced without --overwrite
    other.write_bytes(original)
    err = _fails(export_tool.main, ["--weights", str(ckpt), "--format", "torchscript", "--output", str(other)], capsys)
    assert "already exists and is not a TorchScript export of reid" in err and "--overwrite" in err
    assert other.read_bytes() == original
    out = tmp_path / "deploy.pt"
    argv = ["--weights", str(ckpt), "--format", "torchscript", "--output", str(out)]
    assert export_tool.main(argv) == 0
    assert export_tool.main(argv) == 0  # an earlier export of the same format is replaced without --overwrite
    assert exporter.FORMATS["torchscript"].is_export(out) and not exporter.FORMATS["torchscript"].is_export(ckpt)
    assert export_tool.main(argv[:-1] + [str(other), "--overwrite"]) == 0
    assert exporter.FORMATS["torchscript"].is_export(other)


def test_export_says_what_is_wrong_with_the_path_or_the_combination(setup, tmp_path, capsys,  # noqa: F811
                                                                    monkeypatch):
    ckpt = str(setup[1])
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    err = _fails(export_tool.main, ["--weights", ckpt, "--format", "onnx", "--output", str(notes / "m.onnx")], capsys)
    assert f"{str(notes)!r} is a file, not a folder" in err and "other format" not in err
    monkeypatch.setattr(exporter.os, "access", lambda path, mode: False)  # as an unprivileged user sees /usr
    err = _fails(export_tool.main, ["--weights", ckpt, "--format", "onnx", "--output", str(tmp_path / "m.onnx")],
                 capsys)
    assert "is not writable by you" in err and "META_ARCHITECTURE" not in err
    monkeypatch.undo()
    err = _fails(export_tool.main, ["--weights", ckpt, "--format", "torchscript", "--half"], capsys)
    assert "--half exports float16 ONNX only" in err and "TorchScript keeps" in err and "OpenVINO" not in err
    err = _fails(export_tool.main, ["--weights", ckpt, "--format", "onnx", "--output", str(tmp_path / "model.xml")],
                 capsys)
    assert "the suffix of an OpenVINO file" in err and "'model.onnx'" in err
    assert not (tmp_path / "model.xml").exists()
    with pytest.raises(ExportError, match="Cannot write .*: Permission denied.*in a folder you can write"):
        def denied(*args):
            raise PermissionError(13, "Permission denied", str(tmp_path / "x.pt"))
        monkeypatch.setitem(exporter.FORMATS, "torchscript",
                            dataclasses.replace(exporter.FORMATS["torchscript"], save=denied))
        exporter.export_module(torch.nn.Identity(), "torchscript", tmp_path / "x.pt", (8, 4))
    monkeypatch.undo()
    if Path("/proc/self").is_dir():  # a folder that passes the access check but refuses new files, even to root
        err = _fails(export_tool.main, ["--weights", ckpt, "--format", "torchscript", "--output", "/proc/m.pt"],
                     capsys)
        assert "Cannot write '/proc/m.pt'" in err and "in a folder you can write" in err and "other format" not in err


# -- 2. reid-search with queries of another model --------------------------------------------------------------------
def test_search_refuses_queries_of_another_checkpoint(setup, tmp_path, capsys):  # noqa: F811
    root, ckpt = setup
    other = _other_checkpoint(ckpt, tmp_path / "other.pt")
    gallery, queries = tmp_path / "g.npz", tmp_path / "q.npz"
    images = root / "gallery"
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(images), "--output", str(gallery)]) == 0
    assert extract_tool.main(["--weights", str(other), "--input", str(images), "--output", str(queries)]) == 0
    err = _fails(search_tool.main, ["--gallery", str(gallery), "--query-npz", str(queries)], capsys)
    assert "embedded with another checkpoint" in err and "SHA-256" in err
    query = str(images / "id0" / "0.png")
    err = _fails(search_tool.main, ["--gallery", str(gallery), "--query", query, "--weights", str(other)], capsys)
    assert "is not the checkpoint that embedded" in err
    moved = tmp_path / "moved.pt"  # the same checkpoint elsewhere is what --weights is for
    shutil.copy(ckpt, moved)
    assert search_tool.main(["--gallery", str(gallery), "--query", query, "--weights", str(moved)]) == 0
    flipped = tmp_path / "flip.npz"  # the same checkpoint, other embedding settings
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(images), "--output", str(flipped),
                              "TEST.FLIP", "True"]) == 0
    err = _fails(search_tool.main, ["--gallery", str(gallery), "--query-npz", str(flipped)], capsys)
    assert "other settings" in err and "TEST.FLIP" in err
    with pytest.raises(CheckpointError, match="another checkpoint"):  # the library refuses a FeatureFile alike
        Gallery.open(gallery).search(FeatureFile.load(queries), k=1)


# -- 3. model_best.pt and its threshold -------------------------------------------------------------------------------
def test_a_best_checkpoint_written_before_keeps_its_threshold_in_its_metrics(setup, tmp_path):  # noqa: F811
    root, ckpt = setup
    best = tmp_path / "model_best.pt"  # as BestCheckpointer wrote it: the threshold only inside "metrics"
    save_checkpoint(best, {**load_checkpoint(ckpt), "metrics": {"verification": {"threshold": 0.3, "far": "1e-3"}},
                           "best": {"metric": "mAP", "value": 0.5, "epoch": 2}})
    model = ReIDModel.from_checkpoint(best, device="cpu")
    assert (model.threshold, model.threshold_far) == (0.3, 1e-3)
    image = str(root / "gallery" / "id0" / "0.png")
    same, dist = model.same([image], [image])
    assert bool(same[0]) and float(dist[0]) < 1e-5
    path = tmp_path / "g.npz"
    FeatureFile(structured(4, dim=8), [f"{i}.png" for i in range(4)], True, weights=str(best)).save(path)
    assert Gallery.open(path).resolve_threshold("auto") == 0.3


# -- 4 and 6. extract / append: check everything, then write; never replace a gallery unasked -----------------------
def test_append_and_extract_check_the_index_before_writing(setup, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("faiss")
    root, ckpt = setup
    gallery = tmp_path / "g.npz"
    listed = tmp_path / "first.txt"
    listed.write_text("\n".join(str(p) for p in sorted((root / "gallery").rglob("*.png"))[:4]) + "\n")
    more = tmp_path / "more.txt"
    more.write_text("\n".join(str(p) for p in sorted((root / "gallery").rglob("*.png"))[4:]) + "\n")
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(listed), "--output", str(gallery),
                              "--index", "flat"]) == 0
    index = index_path(gallery)
    before = gallery.read_bytes()
    index.write_bytes(index.read_bytes()[:300])  # truncated (an interrupted copy)
    err = _fails(extract_tool.main, ["--weights", str(ckpt), "--input", str(more), "--output", str(gallery),
                                     "--append"], capsys)
    assert str(index) in err and "truncated or damaged" in err
    assert gallery.read_bytes() == before
    index.unlink()
    err = _fails(extract_tool.main, ["--weights", str(ckpt), "--input", str(more), "--output", str(gallery),
                                     "--append", "--index", "ivfpq"], capsys)
    assert "IVF-PQ index needs at least 78" in err and gallery.read_bytes() == before and not index.exists()
    few = tmp_path / "few.npz"
    err = _fails(extract_tool.main, ["--weights", str(ckpt), "--input", str(listed), "--output", str(few),
                                     "--index", "ivfpq"], capsys)
    assert "IVF-PQ index needs at least 78" in err and not few.exists()


def test_extract_refuses_to_replace_a_gallery_without_overwrite(setup, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("faiss")
    root, ckpt = setup
    gallery = tmp_path / "g.npz"
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(root / "gallery"), "--output", str(gallery),
                              "--index", "flat"]) == 0
    before = gallery.read_bytes()
    one = tmp_path / "one.txt"
    one.write_text(str(root / "gallery" / "id0" / "0.png") + "\n")
    err = _fails(extract_tool.main, ["--weights", str(ckpt), "--input", str(one), "--output", str(gallery)], capsys)
    assert "already holds a gallery of 6 embeddings" in err and "--append" in err and "--overwrite" in err
    assert gallery.read_bytes() == before
    _fails(extract_tool.main, ["--weights", str(ckpt), "--input", str(one), "--output", str(gallery), "--append",
                               "--overwrite"], capsys)
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(one), "--output", str(gallery),
                              "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 embeddings" in out and "removed" in out and not index_path(gallery).exists()
    assert len(Gallery.open(gallery)) == 1


# -- 7. a damaged index file -----------------------------------------------------------------------------------------
def test_a_damaged_index_is_refused_not_searched(tmp_path):
    pytest.importorskip("faiss")
    feats = structured(300)
    names = [f"g{i}.jpg" for i in range(300)]
    path = build_index(feats, names, "hnsw").save(tmp_path / "g.index.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    blob = arrays["index"].copy()
    blob[-3000:-2936] ^= 0xFF  # a flipped range of bytes among the stored vectors (FAISS loads it without a word),
    # re-saved as a valid .npz
    arrays["index"] = blob
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(DatasetError, match="is damaged: its bytes no longer have the SHA-256"):
        GalleryIndex.load(path, feats, names)
    raw = bytearray(build_index(feats, names, "flat").save(tmp_path / "f.index.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flipped on disk: the zip's own check
    (tmp_path / "f.index.npz").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="truncated or damaged.*BadZipFile"):
        GalleryIndex.load(tmp_path / "f.index.npz", feats, names)


# -- tracebacks: truncated files, --nprobe, dimensions ---------------------------------------------------------------
def test_truncated_feature_and_index_files_are_one_line_errors(setup, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("faiss")
    feats = structured(40, dim=16)
    good, cut = tmp_path / "good.npz", tmp_path / "cut.npz"
    FeatureFile(feats, [f"g{i}" for i in range(40)], True).save(good)
    cut.write_bytes(good.read_bytes()[:1500])
    for argv in (["--gallery", str(cut), "--query-npz", str(good)], ["--gallery", str(good), "--query-npz", str(cut)]):
        err = _fails(search_tool.main, argv, capsys)
        assert str(cut) in err and "truncated or damaged" in err and "extract.py" in err
    beside = tmp_path / "b.npz"
    shutil.copy(good, beside)
    raw = build_index(feats, [f"g{i}" for i in range(40)], "flat").save(index_path(beside)).read_bytes()
    index_path(beside).write_bytes(raw[:500])
    err = _fails(search_tool.main, ["--gallery", str(beside), "--query-npz", str(good)], capsys)
    assert str(index_path(beside)) in err and "--index exact" in err
    err = _fails(extract_tool.main, ["--weights", str(setup[1]), "--input", str(setup[0] / "gallery"), "--output",
                                     str(cut), "--append"], capsys)
    assert str(cut) in err and "truncated or damaged" in err


def test_nprobe_is_checked_and_refused_where_it_would_be_ignored(tmp_path, capsys):
    pytest.importorskip("faiss")
    feats = structured(400)
    names = [f"g{i}" for i in range(400)]
    for kind in ("ivfpq", "hnsw"):
        path = tmp_path / f"{kind}.npz"
        FeatureFile(feats, names, True).save(path)
        build_index(feats, names, kind).save(index_path(path))
    ivf = ["--gallery", str(tmp_path / "ivfpq.npz"), "--query-npz", str(tmp_path / "ivfpq.npz"), "--topk", "2"]
    assert "--nprobe must be a whole number of cells >= 1, got -3" in _fails(search_tool.main, [*ivf, "--nprobe", "-3"],
                                                                            capsys)
    assert search_tool.main([*ivf, "--nprobe", "3"]) == 0
    hnsw = ["--gallery", str(tmp_path / "hnsw.npz"), "--query-npz", str(tmp_path / "hnsw.npz")]
    assert "searched with a hnsw index; drop --nprobe" in _fails(search_tool.main, [*hnsw, "--nprobe", "8"], capsys)
    err = _fails(search_tool.main, [*hnsw, "--index", "exact", "--nprobe", "8"], capsys)
    assert "searched exactly (no index)" in err
    with pytest.raises(ConfigError, match="hnsw index"):  # the library refuses it alike
        Gallery.open(tmp_path / "hnsw.npz").search(feats[:2], k=2, nprobe=8)


def test_queries_of_another_dimension_than_the_index(tmp_path):
    pytest.importorskip("faiss")
    feats = structured(100, dim=256)
    index = build_index(feats, [f"g{i}" for i in range(100)], "flat")
    with pytest.raises(DatasetError, match="The queries are 512-d but the flat index holds 256-d vectors"):
        index.search(torch.from_numpy(structured(3, dim=512)), feats, 5)


# -- an unreadable image: the advice that works ----------------------------------------------------------------------
def test_skip_unreadable_works_in_extract_and_is_not_advised_where_it_cannot(setup, tmp_path, capsys):  # noqa: F811
    root, ckpt = setup
    folder = tmp_path / "crops"
    shutil.copytree(root / "gallery" / "id0", folder)
    good = (folder / "0.png").read_bytes()
    (folder / "broken.png").write_bytes(good[:120])  # a truncated file
    out = tmp_path / "g.npz"
    err = _fails(extract_tool.main, ["--weights", str(ckpt), "--input", str(folder), "--output", str(out)], capsys)
    assert "broken.png" in err and "reid-extract skips unreadable files with DATASETS.SKIP_UNREADABLE True" in err
    assert extract_tool.main(["--weights", str(ckpt), "--input", str(folder), "--output", str(out),
                              "DATASETS.SKIP_UNREADABLE", "True"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable image(s) (DATASETS.SKIP_UNREADABLE): broken.png cannot be decoded" in printed
    assert Gallery.open(out).names == ["0.png", "1.png"]
    model = ReIDModel.from_checkpoint(ckpt, device="cpu")  # embed never skips: a row must not go missing
    with pytest.raises(DatasetError, match="broken.png.*Replace or remove the file") as info:
        model.embed([str(folder / "broken.png")])
    assert "set DATASETS.SKIP_UNREADABLE" not in str(info.value)


# -- reid-convert: non-finite peer embeddings, a wrong --arch --------------------------------------------------------
@pytest.fixture(scope="module")
def osnet_file(tmp_path_factory):
    from tests.support.peer_models import torchreid_model

    path = tmp_path_factory.mktemp("peer") / "osnet_x0_25.pth"
    torch.save({"state_dict": torchreid_model("osnet_x0_25").state_dict()}, path)
    return path


def test_convert_names_the_architecture_that_fits(osnet_file, tmp_path, capsys):
    for arch in ("osnet_x1_0", "resnet50"):
        err = _fails(convert_tool.main, ["--source", "torchreid", "--arch", arch, "--weights", str(osnet_file),
                                         "--output", str(tmp_path / "x.pt")], capsys)
        assert err.startswith(f"error: The file is not a torchreid {arch}: its tensors fit torchreid's osnet_x0_25 "
                              f"exactly; convert it with --arch osnet_x0_25."), err[:200]


def test_convert_says_when_the_peer_itself_gives_non_finite_embeddings(osnet_file, tmp_path, capsys):
    state = torch.load(osnet_file, weights_only=True)
    state["state_dict"]["conv1.bn.running_var"].fill_(-1.0)  # a damaged file: sqrt of a negative variance
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    err = _fails(convert_tool.main, ["--source", "torchreid", "--arch", "osnet_x0_25", "--weights", str(broken),
                                     "--output", str(tmp_path / "x.pt"), "INPUT.SIZE_TEST", "[64, 32]"], capsys)
    assert "cannot be verified" in err and "non-finite embeddings" in err and "does not reproduce" not in err


# -- 8. a run that cannot learn, a schedule that never decays, test images in training -------------------------------
def test_one_identity_is_refused_before_training(tmp_path):
    from reid.data import build_train_loader
    from tests.data.test_data_datasets import cfg_for
    from tests.data.test_data_own import make_folder

    make_folder(tmp_path / "one", {"train": {"p1": [f"x_c{c}_{i}.jpg" for i in range(6) for c in (1, 2)]}})
    cfg = cfg_for(tmp_path, NAMES=["folder:one"])
    cfg.SOLVER.IMS_PER_BATCH = 4  # one identity x 4 images: the sampler would run, every loss 0.0000
    with pytest.raises(DatasetError, match="holds 1 identity .* every loss is 0 .* at least 2 identities"):
        build_train_loader(cfg, check_tests=False)


def test_solver_steps_beyond_max_epochs_warn():
    from reid.config import load_cfg, training_warnings

    never = training_warnings(load_cfg(None, ["SOLVER.MAX_EPOCHS", "10", "SOLVER.STEPS", "[40, 70]"]))
    assert len(never) == 1 and "the learning rate never decays" in never[0] and "SOLVER.STEPS [40, 70]" in never[0]
    assert "e.g. [4, 8]" in never[0]
    once = training_warnings(load_cfg(None, ["SOLVER.MAX_EPOCHS", "60", "SOLVER.STEPS", "[40, 90]"]))
    assert "decays only at epochs [40]" in once[0]
    assert training_warnings(load_cfg(None, ["SOLVER.MAX_EPOCHS", "10", "SOLVER.STEPS", "[7, 9]"])) == []
    assert training_warnings(load_cfg(None, ["SOLVER.MAX_EPOCHS", "10", "SOLVER.SCHED", "cosine"])) == []


def test_test_images_copied_into_training_are_flagged(tmp_path):
    from reid.data import build_test_set, build_train_loader
    from reid.data.build import training_copies_of_test_images
    from tests.data.test_data_datasets import cfg_for, write_jpeg

    base = tmp_path / "mine"
    files = [f"train/t{k}/x_c{c}_{k}.jpg" for k in range(3) for c in (1, 2)] + \
        ["query/alice/q_c1.jpg", "query/carol/q_c2.jpg", "gallery/alice/g_c2.jpg", "gallery/carol/g_c1.jpg"]
    for value, name in enumerate(files):  # every image its own colour: no two files alike
        write_jpeg(base / name, 20 * value)
    cfg = cfg_for(tmp_path, NAMES=["folder:mine"], TESTS=["folder:mine"])
    cfg.SOLVER.IMS_PER_BATCH = 8
    _, train = build_train_loader(cfg, check_tests=False)
    tests = {"folder:mine": build_test_set(cfg, "folder:mine")}
    assert training_copies_of_test_images(train.train, tests) == []
    (base / "train" / "alice").mkdir()
    shutil.copy(base / "query" / "alice" / "q_c1.jpg", base / "train" / "alice" / "copy_c1.jpg")
    _, train = build_train_loader(cfg, check_tests=False)
    found = training_copies_of_test_images(train.train, tests)
    assert len(found) == 1 and found[0].startswith("1 of 2 query images of folder:mine are also training images")
    assert "q_c1.jpg" in found[0] and "copy_c1.jpg" in found[0] and "identity 'alice'" in found[0]


def test_the_trainer_logs_the_warnings(tmp_path, synthetic_root):
    from tests.conftest import TINY_TRAINING
    from reid.config import load_cfg
    from reid.engine.trainer import Trainer

    out = tmp_path / "run"
    Trainer(load_cfg(None, ["DATASETS.ROOT", synthetic_root, *TINY_TRAINING, "OUTPUT_DIR", str(out),
                            "SOLVER.MAX_EPOCHS", "2", "SOLVER.STEPS", "[5]"]))
    log = (out / "log.txt").read_text()
    assert "SOLVER.STEPS [5] has epochs [5] at or beyond SOLVER.MAX_EPOCHS 2" in log
