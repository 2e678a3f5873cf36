"""Transformer backbones and meta-architectures (ViT / TransReID, CLIP's encoders, Swin / SOLIDER): shapes,
position embeddings at other sizes, cameras (SIE), the jigsaw patch module against a plain loop, head weights in
the criterion. Equality with the authors' own models is tests/checkpoint/test_convert_transformers.py."""
from __future__ import annotations

import pytest
import torch

from reid.config import get_cfg
from reid.modeling import build_model
from reid.modeling.backbones.swin import relative_position_index
from reid.modeling.backbones.vit import resize_grid_embedding
from reid.modeling.losses import build_criterion
from reid.modeling.meta_arch.transreid import jigsaw_parts
from reid.utils.errors import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_cfg(meta="TransReID", backbone="vit", cameras=4, **extra):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = meta
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.HEADS.CLS_LAYER = "linear"
    cfg.MODEL.LOSSES.NAME = ["CrossEntropyLoss", "TripletLoss"]
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = [64, 32]
    cfg.MODEL.VIT.EMBED_DIM, cfg.MODEL.VIT.DEPTH, cfg.MODEL.VIT.NUM_HEADS = 16, 3, 2
    cfg.MODEL.VIT.STRIDE = [12, 12]
    cfg.MODEL.VIT.SIE_CAMERAS = cameras
    cfg.MODEL.SWIN.EMBED_DIM, cfg.MODEL.SWIN.DEPTHS, cfg.MODEL.SWIN.NUM_HEADS = 8, [2, 2, 2, 2], [1, 2, 2, 4]
    cfg.MODEL.BACKBONE.LAYERS, cfg.MODEL.BACKBONE.WIDTH = [1, 1, 1, 1], 8
    cfg.MODEL.CLIP.PROJ_DIM = 8
    for key, value in extra.items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return cfg


def test_transreid_embedding_is_global_plus_parts_over_k():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), 10)
    images, cams = torch.randn(3, 3, 64, 32), torch.tensor([0, 1, 3])
    emb = model(images, camids=cams)
    assert emb.shape == (3, 5 * 16)  # global + 4 parts: TransReID's 3840-d at 768
    # the parts are scaled by 1 / K: rebuild them through the branches by hand
    tokens = model.backbone.tokens(images, cams)
    jpm = model.branches[1]
    first = jpm(jigsaw_parts(tokens, 4, 5, 2, True)[0])[:, 0]
    head = model.heads[1]
    expected = head.test_feature(first, head.neck(first)) / 4
    assert torch.allclose(emb[:, 16:32], expected, atol=1e-6)


def test_sie_uses_cameras_and_requires_them():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), 10)
    images = torch.randn(2, 3, 64, 32)
    a = model(images, camids=torch.tensor([0, 0]))
    b = model(images, camids=torch.tensor([0, 2]))
    assert torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="camids"):
        model(images)
    with pytest.raises(ValueError, match="0..3"):
        model(images, camids=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="unknown camera"):
        model(images, camids=torch.tensor([-1, 0]))


def test_models_without_sie_ignore_cameras():
    torch.manual_seed(0)
    for cfg in (tiny_cfg(cameras=0), tiny_cfg("Baseline", "resnet")):
        model = build_model(cfg, 10)
        images = torch.randn(2, 3, 64, 32)
        assert torch.equal(model(images), model(images, camids=torch.tensor([3, -1])))


def test_position_embeddings_follow_the_input_size():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("Baseline", cameras=0), 10)
    assert model.backbone.grid == (5, 2)
    assert model(torch.randn(2, 3, 128, 64)).shape == (2, 16)  # a 10 x 5 grid from the 5 x 2 embeddings
    grid = torch.arange(6.0).reshape(6, 1).repeat(1, 3)  # a 2 x 3 grid whose value is its index
    same = resize_grid_embedding(grid, (2, 3), (2, 3))
    assert same is grid
    up = resize_grid_embedding(grid, (2, 3), (4, 6))
    assert up.shape == (24, 3) and up.min() >= 0 and up.max() <= 5


def _jigsaw_loop(n, parts, shift, groups):
    """TransReID's JPM order written as index arithmetic: patch ids of each part (no tensors)."""
    seq = list(range(shift - 1, n)) + list(range(0, shift - 1))
    while len(seq) % groups:
        seq.append(seq[-2])
    m = len(seq) // groups
    shuffled = [seq[g * m + j] for j in range(m) for g in range(groups)]
    length = n // parts
    return [shuffled[i * length:(i + 1) * length] for i in range(parts)]


@pytest.mark.parametrize("n,parts,shift,groups", [(210, 4, 5, 2), (50, 4, 5, 2), (11, 4, 5, 2), (12, 3, 2, 3)])
def test_jigsaw_parts_match_the_index_loop(n, parts, shift, groups):
    tokens = torch.arange(n + 1, dtype=torch.float32).reshape(1, n + 1, 1) - 1  # class token -1, patch i = i
    got = jigsaw_parts(tokens, parts, shift, groups, True)
    for part, ids in zip(got, _jigsaw_loop(n, parts, shift, groups)):
        assert part[0, 0, 0] == -1 and part[0, 1:, 0].long().tolist() == ids
    plain = jigsaw_parts(tokens, parts, shift, groups, False)
    assert plain[1][0, 1:, 0].long().tolist() == list(range(n // parts, 2 * (n // parts)))


def test_head_weights_weigh_the_criterion():
    """TransReID: 0.5 x global + 0.5 x mean of the K locals, for both the ID and the triplet term."""
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg, 6).train()
    crit = build_criterion(cfg)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = model(torch.randn(8, 3, 64, 32), pids, camids=torch.zeros(8, dtype=torch.long))
    terms = crit(out, pids)
    ce, tri = crit.losses["loss_ce"], crit.losses["loss_triplet"]
    local_ce = sum(ce(lg, pids) for lg in out["logits"][1:]) / 4
    local_tri = sum(tri(f, pids) for f in out["features"][1:]) / 4
    assert torch.allclose(terms["loss_ce"], 0.5 * ce(out["logits"][0], pids) + 0.5 * local_ce)
    assert torch.allclose(terms["loss_triplet"], 0.5 * tri(out["features"][0], pids) + 0.5 * local_tri)


@pytest.mark.parametrize("backbone,dim", [("clip_vit", 16 + 8), ("clip_resnet", 256 + 8)])
def test_clipreid_concatenates_both_features(backbone, dim):
    torch.manual_seed(0)
    model = build_model(tiny_cfg("CLIPReID", backbone, cameras=0), 10)
    assert model(torch.randn(2, 3, 64, 32)).shape == (2, dim)
    assert model(torch.randn(2, 3, 96, 48)).shape == (2, dim)  # other sizes: interpolated position tables
    out = model.train()(torch.randn(4, 3, 64, 32), torch.tensor([0, 0, 1, 1]))
    assert len(out["logits"]) == 2 and len(out["features"]) == 2


def test_swin_semantic_weight_changes_the_features():
    torch.manual_seed(0)
    cfg = tiny_cfg("Baseline", "swin", cameras=0)
    model = build_model(cfg, 10)
    images = torch.randn(2, 3, 112, 48)  # maps 28x12 -> 14x6 -> 7x3 -> 4x2: padded windows and merging
    a = model(images)
    assert a.shape == (2, 64)
    model.backbone.semantic_weight = 0.8
    assert not torch.allclose(a, model(images))
    assert not any(p.requires_grad for n, p in model.named_parameters() if "semantic_embed" in n)


def test_relative_position_index_is_the_offset_table():
    idx = relative_position_index(3)
    for p in range(9):
        for q in range(9):
            (pi, pj), (qi, qj) = divmod(p, 3), divmod(q, 3)
            assert idx[p, q] == (pi - qi + 2) * 5 + (pj - qj + 2)


def test_bad_transformer_configs_name_the_key():
    with pytest.raises(ConfigError, match="MODEL.HEADS.POOL"):
        build_model(tiny_cfg(**{"MODEL.HEADS.POOL": "gem"}), 10)
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.NAME vit"):
        build_model(tiny_cfg("TransReID", "resnet"), 10)
    with pytest.raises(ConfigError, match="divide"):
        build_model(tiny_cfg(**{"MODEL.VIT.NUM_HEADS": 3}), 10)
