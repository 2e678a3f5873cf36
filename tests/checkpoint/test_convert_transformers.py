"""TransReID, CLIP-ReID and SOLIDER-REID checkpoints -> reid, against embeddings the authors' own code computed.

Each fixture (tests/fixtures/<peer>.pt, made as tests/fixtures/README.md says) holds a small model of the
architecture the importer converts (TransReID: stride-12 ViT with SIE and JPM; CLIP-ReID: ViT-B/16 layout with
SIE and overlapping patches; SOLIDER: Swin with the semantic weight, padded windows and merging), the peer's
training YAML, pixels, cameras and the peer's embeddings. The weights come back from a formula
(``transformer_fixtures.formula_weights``); the converted checkpoint, loaded as every tool loads it, must give the
peer's embeddings to 1e-5 of their scale.
"""
from __future__ import annotations

import pytest
import torch
import yaml

from reid.checkpoint.convert import convert_checkpoint
from reid.cli import convert as convert_cli
from reid.utils.errors import CheckpointError
from tests.support.transformer_fixtures import FIXTURES, converted_difference, formula_weights

pytestmark = pytest.mark.usefixtures("single_thread")
PEERS = {"transreid": 5 * 24, "clipreid": 64 + 32, "solider": 64}  # embedding sizes of the fixtures


def _fixture(peer: str) -> dict:
    return torch.load(FIXTURES / f"{peer}.pt", weights_only=True)


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_converted_model_gives_the_authors_embeddings(peer, tmp_path):
    fixture = _fixture(peer)
    diff, scale, report = converted_difference(fixture, tmp_path)
    assert fixture["expected"].shape[1] == PEERS[peer]
    assert scale > 0 and diff / scale <= 1e-5, f"{peer}: {diff:.3e} of scale {scale:.3g}"
    assert report.verification is None and "cannot be installed" in report.skipped


def test_cameras_change_the_sie_embedding(tmp_path):
    """The fixtures' cameras matter: the same pixels with other cameras give other embeddings (SIE reached)."""
    from reid.checkpoint.inference import load_for_inference

    fixture = _fixture("transreid")
    converted_difference(fixture, tmp_path)
    model, _ = load_for_inference(tmp_path / "converted.pt", device="cpu")
    images = torch.randn(2, 3, 128, 64)
    with torch.inference_mode():
        assert not torch.allclose(model(images, camids=torch.tensor([0, 1])), model(images, camids=torch.tensor([2, 1])))


def _write(tmp_path, fixture, config=None, state=None):
    weights, peer_config = tmp_path / "w.pth", tmp_path / "c.yml"
    torch.save(state if state is not None else formula_weights(fixture["keys"]), weights)
    peer_config.write_text(yaml.safe_dump(config) if config is not None else fixture["peer_config"])
    return weights, peer_config


def test_cli_converts_and_reports(tmp_path, capsys):
    fixture = _fixture("solider")
    weights, config = _write(tmp_path, fixture)
    assert convert_cli.main(["--source", "solider", "--peer-config", str(config), "--weights", str(weights),
                             "--output", str(tmp_path / "o.pt")]) == 0
    out = capsys.readouterr().out
    assert "SOLIDER-REID Swin" in out and "semantic weight 0.2" in out and "verify: skipped" in out


def test_bad_inputs_are_named(tmp_path):
    fixture = _fixture("transreid")
    weights, config = _write(tmp_path, fixture)
    with pytest.raises(CheckpointError, match="--peer-config"):
        convert_checkpoint("transreid", weights, tmp_path / "o.pt")
    peer = yaml.safe_load(fixture["peer_config"])
    peer["MODEL"]["SIE_VIEW"] = True
    _, bad = _write(tmp_path, fixture, peer)
    with pytest.raises(CheckpointError, match="SIE_VIEW"):
        convert_checkpoint("transreid", weights, tmp_path / "o.pt", peer_config=bad)
    peer["MODEL"].update(SIE_VIEW=False, TRANSFORMER_TYPE="vit_small_patch16_224_TransReID")
    _, bad = _write(tmp_path, fixture, peer)
    with pytest.raises(CheckpointError, match="qkv bias"):
        convert_checkpoint("transreid", weights, tmp_path / "o.pt", peer_config=bad)
    # a SOLIDER file given as TransReID: no ViT in it
    _, config = _write(tmp_path, fixture)
    (tmp_path / "s").mkdir()
    solider_weights, _ = _write(tmp_path / "s", _fixture("solider"))
    with pytest.raises(CheckpointError, match="no TransReID ViT"):
        convert_checkpoint("transreid", solider_weights, tmp_path / "o.pt", peer_config=config)
    # a tensor no rule maps, or a missing one: strict, with the key named
    state = formula_weights(fixture["keys"])
    state["base.extra"] = torch.zeros(3)
    extra, _ = _write(tmp_path, fixture, state=state)
    with pytest.raises(CheckpointError, match="base.extra"):
        convert_checkpoint("transreid", extra, tmp_path / "o.pt", peer_config=config)
    del state["base.extra"], state["b2.1.weight"]
    missing, _ = _write(tmp_path, fixture, state=state)
    with pytest.raises(CheckpointError, match="branches.1.1.weight"):
        convert_checkpoint("transreid", missing, tmp_path / "o.pt", peer_config=config)


def test_a_config_dict_converts_like_its_yaml(tmp_path):
    """The model zoo passes the training YAML's content as a dict."""
    fixture = _fixture("clipreid")
    weights, config = _write(tmp_path, fixture)
    a = convert_checkpoint("clipreid", weights, tmp_path / "a.pt", peer_config=config)
    b = convert_checkpoint("clipreid", weights, tmp_path / "b.pt", peer_config=yaml.safe_load(fixture["peer_config"]))
    assert a.converted.plan.cfg == b.converted.plan.cfg
