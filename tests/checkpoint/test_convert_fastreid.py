"""fast-reid checkpoints -> reid: BoT, AGW, SBS (R50, R50-ibn, R101-ibn, non-local, GeM) and MGN (R50-ibn) against
fast-reid 1.4.0's own model on the same pixels (float32, CPU, 1e-5 of the embedding scale), its config files
(_BASE_ chains, the config.yaml it writes), the v0.1 model-zoo layout, and the errors of mismatched files.

Run with -s to see each architecture's parameter counts (ours vs fast-reid's) and the largest difference.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from reid.api import ReIDModel
from reid.checkpoint.convert import convert_checkpoint
from reid.checkpoint.convert.fastreid import read_config, recipe
from reid.utils.errors import CheckpointError
from tests.support.peer_models import assert_matches_peer, fastreid_config, fastreid_model

pytestmark = pytest.mark.usefixtures("single_thread")

IBN, R101 = {"WITH_IBN": True}, {"WITH_IBN": True, "DEPTH": "101x"}
CASES = {
    "bot_R50": recipe("bagtricks"),
    "bot_R50-ibn": recipe("bagtricks", BACKBONE=IBN),
    "bot_R101-ibn": recipe("bagtricks", BACKBONE=R101),
    "agw_R50": recipe("AGW"),
    "sbs_R50": recipe("SBS"),
    "sbs_R50-ibn": recipe("SBS", BACKBONE=IBN),
    "sbs_R101-ibn": recipe("SBS", BACKBONE=R101),
    "mgn_R50-ibn": recipe("MGN", BACKBONE=IBN),
    "bot_R18-ibn": recipe("bagtricks", BACKBONE={"WITH_IBN": True, "DEPTH": "18x", "FEAT_DIM": 512}),
    "sbs_R50-ibn_reduced": recipe("SBS", BACKBONE=IBN, HEADS={"EMBEDDING_DIM": 256}),
}


def small(conf, size=(64, 32)):
    """``conf`` at a small test size (fast-reid's models take any size; MGN needs a height giving 6 part rows)."""
    conf = copy.deepcopy(conf)
    if conf["MODEL"]["META_ARCHITECTURE"] == "MGN":
        size = (96, 32)
    conf["INPUT"] = {"SIZE_TRAIN": list(size), "SIZE_TEST": list(size)}
    return conf


def write_peer(conf, tmp_path):
    """(fast-reid's model, its checkpoint as fast-reid's Checkpointer writes it, its config.yaml)."""
    peer = fastreid_model(conf)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": peer.state_dict(), "optimizer": {}, "scheduler": {}, "iteration": 9}, weights)
    return peer, weights, fastreid_config(conf, tmp_path / "config.yaml")


@pytest.mark.parametrize("case", list(CASES))
def test_every_architecture_matches_fastreid(case, tmp_path):
    peer, weights, config = write_peer(small(CASES[case]), tmp_path)
    report = convert_checkpoint("fastreid", weights, tmp_path / "out.pt", peer_config=config)
    assert_matches_peer(report, peer)


def test_reid_model_embeds_uint8_images_as_fastreid_does(tmp_path):
    """The whole user path, independent of the converter's own check: ReIDModel (reid's test transform on uint8
    images) against fast-reid's model fed the same pixels as 0-255 floats."""
    peer, weights, config = write_peer(small(CASES["sbs_R50-ibn"]), tmp_path)
    convert_checkpoint("fastreid", weights, tmp_path / "out.pt", peer_config=config, verify=False)
    images = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (4, 3, 64, 32), dtype=np.uint8))
    ours = ReIDModel.from_checkpoint(tmp_path / "out.pt", device="cpu").embed(images, normalize=False)
    with torch.no_grad():
        theirs = peer(images.float())
    assert ours.shape == theirs.shape == (4, 2048)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


def test_model_zoo_config_with_base_chain_and_v01_zoo_layout(tmp_path):
    """A model-zoo config (configs/Market1501/sbs_R50-ibn.yml style: _BASE_ naming Base-SBS.yml, which names
    Base-bagtricks.yml) and a v0.1 release file: BNNeck as heads.bnneck, classifier as heads.classifier,
    pixel_mean / pixel_std stored, and no classifier key under the current name."""
    conf = small(CASES["sbs_R50"])
    peer = fastreid_model(conf)
    (tmp_path / "configs" / "Market1501").mkdir(parents=True)
    base = recipe("bagtricks")
    base["INPUT"] = conf["INPUT"]
    (tmp_path / "configs" / "Base-bagtricks.yml").write_text(yaml.safe_dump(base))
    sbs = {k: v for k, v in conf.items() if k != "INPUT"}
    sbs["_BASE_"] = "Base-bagtricks.yml"
    (tmp_path / "configs" / "Base-SBS.yml").write_text(yaml.safe_dump(sbs))
    zoo_config = tmp_path / "configs" / "Market1501" / "sbs_R50.yml"
    zoo_config.write_text("_BASE_: ../Base-SBS.yml\nDATASETS:\n  NAMES: (\"Market1501\",)\n")
    assert read_config(zoo_config)["MODEL"] == read_config(conf)["MODEL"]
    legacy = {}
    for k, v in peer.state_dict().items():
        legacy[k.replace("heads.bottleneck.0.", "heads.bnneck.").replace("heads.weight", "heads.classifier.weight")] = v
    legacy["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    legacy["pixel_std"] = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    torch.save({"model": legacy}, tmp_path / "market_sbs_R50.pth")
    report = convert_checkpoint("fastreid", tmp_path / "market_sbs_R50.pth", tmp_path / "out.pt",
                                peer_config=zoo_config)
    assert_matches_peer(report, peer)
    cfg = report.converted.plan.cfg
    assert cfg.INPUT.PIXEL_MEAN == pytest.approx([0.485, 0.456, 0.406]) and cfg.INPUT.INTERPOLATION == "bicubic"
    assert cfg.MODEL.BACKBONE.MAXPOOL_CEIL and cfg.MODEL.BACKBONE.NL_INTER_CHANNELS == 1
    assert cfg.MODEL.HEADS.NECK_FEAT == "after" and cfg.MODEL.HEADS.POOL == "gem"


def test_mismatched_files_fail_naming_the_keys(tmp_path):
    conf = small(CASES["bot_R50"])
    peer, weights, config = write_peer(conf, tmp_path)
    state = peer.state_dict()

    def convert(mutated, peer_config=config):
        torch.save({"model": mutated}, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError) as info:
            convert_checkpoint("fastreid", tmp_path / "bad.pth", tmp_path / "out.pt", peer_config=peer_config,
                               verify=False)
        return str(info.value)

    missing = {k: v for k, v in state.items() if k != "heads.bottleneck.0.running_var"}
    assert "tensors of ours not in the file: head.neck.running_var" in convert(missing)
    extra = {**state, "heads.extra": torch.zeros(1)}
    assert "no rule maps: heads.extra" in convert(extra)
    wrong = {**state, "backbone.layer4.2.conv3.weight": torch.zeros(2048, 512, 3, 3)}
    assert ("backbone.layer4.2.conv3.weight: file (2048, 512, 3, 3) vs ours backbone.layer4.2.conv3.weight "
            "(2048, 512, 1, 1)") in convert(wrong)
    # The config of another architecture (IBN-a) for a plain ResNet50 file: the IBN tensors are missing.
    ibn = fastreid_config(small(CASES["bot_R50-ibn"]), tmp_path / "ibn.yaml")
    assert "backbone.layer1.0.bn1.IN.weight" in convert(state, ibn)
    assert "use --source torchreid" in convert({k[len("backbone."):]: v for k, v in state.items()
                                                if k.startswith("backbone.")})
    pixels = {**state, "pixel_mean": torch.zeros(1, 3, 1, 1)}
    assert "stores pixel_mean [0.0, 0.0, 0.0]" in convert(pixels)
    unsupported = small(CASES["bot_R50"])
    unsupported["MODEL"]["BACKBONE"]["NAME"] = "build_resnest_backbone"
    assert "does not convert" in convert(state, fastreid_config(unsupported, tmp_path / "s50.yaml"))
