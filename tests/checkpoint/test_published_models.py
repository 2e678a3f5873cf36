"""Converted checkpoints in reid's tools (test, export, reid-convert) and the model zoo's from_pretrained, with a
patched downloader serving generated peer checkpoints: tests never touch the network."""
from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path

import pytest
import torch

from reid.checkpoint import zoo
from reid.inference import ReIDModel
from reid.checkpoint import convert
from reid.checkpoint.convert import SOURCES, ConversionError, convert_checkpoint, torchreid
from reid.checkpoint.convert.fastreid import _reid_opts, read_config
from reid.config import cfg_to_dict, load_cfg
from reid.modeling import build_model
from reid.cli import convert as convert_tool
from reid.cli import export as export_tool
from reid.cli import test as test_tool
from reid.cli.parser import run_tool
from reid.utils.errors import CheckpointError
from tests.support.peer_models import fastreid_model, torchreid_model

pytestmark = pytest.mark.usefixtures("single_thread")
README = Path(__file__).resolve().parents[2] / "README.md"
MODEL_ZOO = README.with_name("MODEL_ZOO.md")
SYNTHETIC = ["DATASETS.NAMES", "['Synthetic']", "DATASETS.TESTS", "['Synthetic']",
             "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "8", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "8",
             "DATASETS.SYNTHETIC.IMAGES_PER_ID", "6", "DATASETS.SYNTHETIC.NUM_DISTRACTORS", "4",
             "DATASETS.SYNTHETIC.NUM_JUNK", "2", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu",
             "VIS.REPORT", "False"]


@pytest.fixture(scope="module")
def osnet(tmp_path_factory):
    """torchreid's osnet_x0_25 as its file and as a converted reid checkpoint."""
    folder = tmp_path_factory.mktemp("osnet")
    torch.save({"state_dict": torchreid_model("osnet_x0_25").state_dict()}, folder / "osnet.pth")
    convert_checkpoint("torchreid", folder / "osnet.pth", folder / "osnet.pt", arch="osnet_x0_25", verify=False)
    return folder


@pytest.fixture(scope="module")
def ibn(tmp_path_factory):
    """A converted fast-reid BoT ResNet18-IBN-a (IBN-a blocks, fast-reid stem, BNNeck), small enough to export."""
    folder = tmp_path_factory.mktemp("ibn")
    conf = zoo.fastreid.recipe("bagtricks", BACKBONE={"WITH_IBN": True, "DEPTH": "18x", "FEAT_DIM": 512})
    conf["INPUT"] = {"SIZE_TRAIN": [64, 32], "SIZE_TEST": [64, 32]}
    torch.save({"model": fastreid_model(conf).state_dict()}, folder / "bot.pth")
    convert_checkpoint("fastreid", folder / "bot.pth", folder / "bot.pt", peer_config=conf, verify=False)
    return folder / "bot.pt"


def test_test_tool_evaluates_a_converted_checkpoint_without_a_config(osnet, synthetic_root, tmp_path):
    """reid-test MODEL.WEIGHTS OUT.pt: the model comes from the checkpoint's stored config (no --config)."""
    out = tmp_path / "run"
    argv = ["MODEL.WEIGHTS", str(osnet / "osnet.pt"), "DATASETS.ROOT", synthetic_root, "OUTPUT_DIR", str(out),
            "INPUT.SIZE_TEST", "[64, 32]", *SYNTHETIC]
    assert test_tool.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "Synthetic" and 0.0 <= metrics["rank1"] <= 1.0 and 0.0 < metrics["mAP"] <= 1.0


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_of_converted_osnet_and_ibn_models_is_verified(fmt, osnet, ibn, tmp_path, capsys):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    for weights in (osnet / "osnet.pt", ibn):
        out = tmp_path / f"{weights.stem}.{fmt}"
        argv = ["--weights", str(weights), "--format", fmt, "--output", str(out), "INPUT.SIZE_TEST", "[64, 32]"]
        assert export_tool.main(argv) == 0 and out.is_file()
        assert re.search(r"max abs diff \S+ vs PyTorch, \S+ of the embedding scale \S+; allowed max\(atol 0.0001, "
                         r"rtol 1e-05 x scale\) = \S+: OK", capsys.readouterr().out)


def test_convert_tool_prints_the_check_and_exits_1_on_a_mismatch(osnet, tmp_path, monkeypatch, capsys):
    argv = ["--source", "torchreid", "--arch", "osnet_x0_25", "--weights", str(osnet / "osnet.pth"),
            "--output", str(tmp_path / "a.pt"), "INPUT.SIZE_TEST", "[64, 32]"]
    assert convert_tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "converted torchreid osnet_x0_25" in out and ("verify against torchreid" in out or "skipped" in out)
    # A peer whose embeddings differ (as a wrong conversion would): the tool refuses with exit status 1.
    real = torchreid.peer_model

    def shifted(plan):
        peer = real(plan)
        if peer is None:
            pytest.skip("needs torchreid to compare")
        embed = peer.embed
        peer.embed = lambda images: embed(images) + 0.01
        return peer

    monkeypatch.setitem(convert.PEERS, "torchreid", shifted)
    with pytest.raises(ConversionError, match="does not reproduce"):
        convert_tool.main(argv)
    with pytest.raises(SystemExit) as code:
        run_tool(convert_tool.main, argv)
    assert code.value.code == 1 and "MISMATCH" in capsys.readouterr().out


def test_every_zoo_entry_converts_with_a_known_architecture():
    assert len(zoo.ZOO) >= 50
    for name, entry in zoo.ZOO.items():
        assert name == entry.name and name.startswith(f"{entry.source}/") and entry.source in SOURCES
        assert entry.url.startswith("https://") and entry.published
        assert all(0 < rank1 <= 100 and 0 < mAP <= 100 for _, rank1, mAP in entry.published)
        if entry.source == "torchreid":
            assert entry.arch in torchreid.ARCHS
        elif entry.source == "fastreid":
            model = read_config(entry.peer_config())["MODEL"]
            assert model["META_ARCHITECTURE"] in ("Baseline", "MGN") and entry.backbone in entry.name
        else:  # the transformer importers: a training YAML's content
            assert entry.peer_config()["MODEL"]["NAME"] and entry.page.startswith("https://github.com/")
    assert "torchreid/osnet_x0_25_msmt17" in zoo.ZOO and "fastreid/market_bot_R50-ibn" in zoo.ZOO


def test_model_zoo_md_lists_every_zoo_entry_as_published_and_the_readme_points_there():
    text = MODEL_ZOO.read_text(encoding="utf-8")
    table = re.search(r"<!-- zoo table: reid.checkpoint.zoo.markdown_table\(\) -->\n(.*?)\n<!-- end of zoo table -->",
                      text, re.S)
    assert table is not None and table.group(1) == zoo.markdown_table(), \
        "MODEL_ZOO.md's table differs from reid.checkpoint.zoo.markdown_table(): paste its output between the markers"
    assert "published by their authors, not measured here" in text
    readme = README.read_text(encoding="utf-8")
    assert "](MODEL_ZOO.md)" in readme and "| `torchreid/" not in readme  # the README points to it, lists none


def _serve(path: Path, calls: list):
    def download(url: str, dest: Path) -> None:
        calls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())

    return download


def test_from_pretrained_downloads_converts_once_and_caches(osnet, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(zoo, "download_file", _serve(osnet / "osnet.pth", calls))
    name = "torchreid/osnet_x0_25_msmt17"
    model = ReIDModel.from_pretrained(name, device="cpu", cache_dir=tmp_path)
    assert calls == ["https://drive.google.com/uc?export=download&id=1sSwXSUlj4_tHZequ_iZ8w_Jh0VaRQMqF"]
    assert (tmp_path / "torchreid" / "osnet_x0_25_msmt17.pth").is_file()
    converted = tmp_path / "torchreid" / "osnet_x0_25_msmt17.pt"
    assert model.weights == str(converted.resolve())
    emb = model.embed(torch.zeros(2, 3, 100, 50, dtype=torch.uint8))
    assert emb.shape == (2, 512) and torch.allclose(emb.norm(dim=1), torch.ones(2))
    ReIDModel.from_pretrained(name, device="cpu", cache_dir=tmp_path)
    assert len(calls) == 1  # the converted checkpoint is reused
    local = ReIDModel.from_pretrained(converted, device="cpu")  # a local file is used as it is
    assert torch.equal(local.embed(torch.zeros(2, 3, 100, 50, dtype=torch.uint8)), emb)


def test_from_pretrained_fastreid_entry_from_a_v01_release_file(tmp_path, monkeypatch):
    """fast-reid's zoo files are v0.1 releases (heads.bnneck, heads.classifier, pixel statistics stored)."""
    entry = zoo.ZOO["fastreid/market_bot_R50"]
    conf = entry.peer_config()
    conf["INPUT"]["SIZE_TEST"] = [64, 32]  # calibrate at a small size; the file does not depend on it
    state = fastreid_model(conf).state_dict()
    legacy = {k.replace("heads.bottleneck.0.", "heads.bnneck.").replace("heads.weight", "heads.classifier.weight"): v
              for k, v in state.items()}
    legacy["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    legacy["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    torch.save({"model": legacy}, tmp_path / "served.pth")
    calls = []
    monkeypatch.setattr(zoo, "download_file", _serve(tmp_path / "served.pth", calls))
    path = zoo.pretrained_checkpoint(entry.name, tmp_path / "cache")
    assert calls == ["https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/market_bot_R50.pth"]
    stored = torch.load(path, weights_only=True)
    assert stored["cfg"]["INPUT"]["SIZE_TEST"] == [256, 128] and stored["meta_architecture"] == "Baseline"


def test_from_pretrained_offline_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(url, dest):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(zoo, "download_file", offline)
    with pytest.raises(CheckpointError) as info:
        ReIDModel.from_pretrained("fastreid/market_sbs_R50-ibn", cache_dir=tmp_path)
    message = str(info.value)
    assert "https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/market_sbs_R50-ibn.pth" in message
    assert str(tmp_path / "fastreid" / "market_sbs_R50-ibn.pth") in message
    with pytest.raises(CheckpointError, match="neither a file nor a model-zoo name; did you mean"):
        ReIDModel.from_pretrained("osnet_x1_0_msmt17")


def _architecture(cfg) -> dict:
    """The MODEL settings that decide the forward pass (not training, initialisation or unused options)."""
    model = cfg_to_dict(cfg)["MODEL"]
    model["BACKBONE"].pop("PRETRAIN")
    heads = {k: v for k, v in model["HEADS"].items()
             if k not in ("NUM_CLASSES", "CLS_LAYER", "SCALE", "MARGIN", "CLS_INIT_STD")}
    if not heads["EMBEDDING_DIM"]:
        heads.pop("REDUCTION")
    out = {"META_ARCHITECTURE": model["META_ARCHITECTURE"], "BACKBONE": model["BACKBONE"], "HEADS": heads}
    mgn = {k: v for k, v in model["MGN"].items() if k != "PAIR_FEATURES"}  # which features train, not the forward
    return out | ({"MGN": mgn} if model["META_ARCHITECTURE"] == "MGN" else {})


@pytest.mark.parametrize("dataset", ["Market1501", "MSMT17"])
def test_recipe_configs_build_the_architectures_the_importers_produce(dataset):
    """configs/<set>/{bagtricks,AGW,sbs,mgn}_R50*.yml and osnet_x1_0.yml build exactly the model that converting
    fast-reid's BoT / AGW / SBS / MGN or torchreid's osnet_x1_0 gives, so a converted checkpoint fine-tunes with
    them."""
    ibn = {"WITH_IBN": True}
    for name, source in (("bagtricks_R50", zoo.fastreid.recipe("bagtricks")),
                         ("bagtricks_R50-ibn", zoo.fastreid.recipe("bagtricks", BACKBONE=ibn)),
                         ("AGW_R50", zoo.fastreid.recipe("AGW")), ("sbs_R50", zoo.fastreid.recipe("SBS")),
                         ("sbs_R50-ibn", zoo.fastreid.recipe("SBS", BACKBONE=ibn)),
                         ("mgn_R50-ibn", zoo.fastreid.recipe("MGN", BACKBONE=ibn)), ("osnet_x1_0", None)):
        ours = load_cfg(f"configs/{dataset}/{name}.yml")
        if source is None:
            imported = load_cfg(None, [*torchreid.ARCHS["osnet_x1_0"].opts, "MODEL.HEADS.POOL", "avg",
                                       "MODEL.HEADS.NECK", "none"])
        else:
            imported = load_cfg(None, _reid_opts(read_config(source), {}))
        assert _architecture(ours) == _architecture(imported), name


@pytest.mark.parametrize("dataset", ["Market1501", "MSMT17"])
def test_circle_paper_recipes_use_class_level_circle_alone(dataset):
    for arch in ("resnet50", "mgn"):
        cfg = load_cfg(f"configs/{dataset}/{arch}_circle_paper.yml", ["MODEL.BACKBONE.PRETRAIN", "False"])
        heads, losses = cfg.MODEL.HEADS, cfg.MODEL.LOSSES
        assert losses.NAME == ["CrossEntropyLoss"] and losses.CE.EPSILON == 0.0 and cfg.DATASETS.NAMES == [dataset]
        assert (heads.CLS_LAYER, heads.SCALE, heads.MARGIN) == ("circle", 128.0, 0.25)
    with torch.device("meta"):
        model = build_model(cfg, num_classes=751)
    assert cfg.MODEL.MGN.CLASSIFIER == "concat" and model.classifier.weight.shape == (751, 2048)
    assert all(head.classifier is None for head in model.heads)
