"""MGN: parameter count derived from torchvision's ResNet50, shapes at 384x128, branch strides, stripes, heads."""
import pytest
import torch
from torchvision.models import resnet50

from reid.config import load_cfg
from reid.modeling import build_model
from reid.modeling.heads import horizontal_stripes
from reid.modeling.losses import build_criterion
from reid.utils.errors import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")

MGN = ["MODEL.META_ARCHITECTURE", "MGN", "MODEL.HEADS.POOL", "max", "MODEL.HEADS.EMBEDDING_DIM", "256"]
TINY = MGN + ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAYERS", "[1, 1, 2, 1]", "MODEL.BACKBONE.WIDTH", "8"]


def _params(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_parameter_count_matches_torchvision_resnet50_layout():
    classes = 751
    r = resnet50()
    shared = _params(r.conv1, r.bn1, r.layer1, r.layer2, r.layer3[0])
    branch = _params(r.layer3[1:], r.layer4)
    reduction = 2048 * 256 + 2 * 256  # 1x1 conv without bias + BN (weight, bias)
    bnneck = 2 * 256  # BatchNorm1d weight + (frozen) bias
    classifier = classes * 256  # class-level Circle proxies, no bias
    expected = shared + 3 * branch + 8 * (reduction + bnneck + classifier)
    assert expected == 70_349_888
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = build_model(load_cfg(None, MGN), num_classes=classes)
    assert _params(model) == expected


def test_shapes_at_384x128_and_branch_strides():
    maps = []
    with torch.device("meta"):  # eval mode of the full model; meta tensors give shapes without compute
        model = build_model(load_cfg(None, MGN), num_classes=751)
        for branch in model.branches:
            branch.register_forward_hook(lambda m, i, o: maps.append(tuple(o.shape)))
        assert model(torch.empty(4, 3, 384, 128)).shape == (4, 2048)  # eight 256-d BN-ed features
    # Global branch downsampled in layer4 (1/32), part branches at stride 1 (1/16).
    assert maps == [(4, 2048, 12, 4), (4, 2048, 24, 8), (4, 2048, 24, 8)]
    assert model.embedding_dim == 2048 and model.num_classes == 751
    # Train mode (the losses need real tensors): the same head layout on the tiny variant.
    tiny = build_model(load_cfg(None, TINY), num_classes=751).train()
    out = tiny(torch.randn(4, 3, 384, 128), torch.zeros(4, dtype=torch.long))
    assert [tuple(t.shape) for t in out["logits"]] == [(4, 751)] * 8
    assert [tuple(t.shape) for t in out["features"]] == [(4, 256)] * 3


def test_embedding_is_the_eight_heads_on_global_maps_and_stripes():
    """Heads are built branch by branch (g; p2, p21, p22; p3, p31, p32, p33); the embedding lists the three global
    features first, then the stripes (fast-reid's order, so an imported fast-reid MGN gives its exact vector)."""
    torch.manual_seed(0)
    model = build_model(load_cfg(None, TINY), num_classes=5)
    x = torch.randn(3, 3, 96, 32)
    shared = model.shared(x)
    g, p2, p3 = (b(shared) for b in model.branches)
    assert g.shape[2] * 2 == p2.shape[2] == 6  # part maps: 6 rows, split 3 + 3 and 2 + 2 + 2
    inputs = [g, p2, p2[:, :, :3], p2[:, :, 3:], p3, p3[:, :, :2], p3[:, :, 2:4], p3[:, :, 4:]]
    per_head = [head(m) for head, m in zip(model.heads, inputs)]
    expected = torch.cat([per_head[i] for i in (0, 1, 4, 2, 3, 5, 6, 7)], dim=1)
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_fastreid_layout_keeps_global_stride_and_concat_classifier_sees_all_features():
    cfg = load_cfg(None, TINY + ["MODEL.MGN.GLOBAL_STRIDE", "1", "MODEL.MGN.CLASSIFIER", "concat",
                                 "MODEL.HEADS.REDUCTION", "conv"])
    model = build_model(cfg, num_classes=7).train()
    assert model.branches[0].layer4[0].downsample[0].stride == (1, 1)
    assert all(head.classifier is None for head in model.heads)
    assert model.classifier.weight.shape == (7, 8 * 256)  # one classifier on the 2048-d concatenation
    assert [type(m).__name__ for m in model.heads[0].reduction] == ["Conv2d"]  # fast-reid: conv, then the BNNeck
    out = model(torch.randn(4, 3, 96, 32), torch.arange(4))
    assert [tuple(t.shape) for t in out["logits"]] == [(4, 7)] and len(out["features"]) == 3
    with pytest.raises(ConfigError, match="WITH_NL"):
        build_model(load_cfg(None, MGN + ["MODEL.BACKBONE.WITH_NL", "True"]))


@pytest.mark.parametrize("n", [2, 3])
def test_stripes_have_adaptive_pooling_bins_for_any_height(n):
    for h in range(n, 13):
        x = torch.randn(2, 4, h, 3)
        pooled = torch.stack([s.amax((2, 3)) for s in horizontal_stripes(x, n)], dim=2)
        assert torch.equal(pooled, torch.nn.functional.adaptive_max_pool2d(x, (n, 1))[..., 0]), h


def test_training_step_reaches_every_parameter_with_circle_losses():
    cfg = load_cfg(None, TINY + ["MODEL.LOSSES.NAME", "['CrossEntropyLoss', 'PairwiseCircleLoss']"])
    model = build_model(cfg, num_classes=4).train()
    pids = torch.arange(4).repeat_interleave(2)
    terms = build_criterion(cfg)(model(torch.randn(8, 3, 64, 32), pids), pids)
    sum(terms.values()).backward()
    assert set(terms) == {"loss_ce", "loss_circle"} and all(torch.isfinite(v) for v in terms.values())
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad


def test_branches_are_independent_copies_of_the_backbone():
    model = build_model(load_cfg(None, TINY), num_classes=3)
    first, second = model.branches[0].layer4[0].conv1.weight, model.branches[1].layer4[0].conv1.weight
    assert torch.equal(first, second) and first.data_ptr() != second.data_ptr()
    assert model.branches[0].layer4[0].downsample[0].stride == (2, 2)
    assert model.branches[2].layer4[0].downsample[0].stride == (1, 1)


@pytest.mark.parametrize("name", ["Market1501", "MSMT17"])
def test_published_configs_build_mgn(name):
    cfg = load_cfg(f"configs/{name}/mgn_circle.yml", ["MODEL.BACKBONE.PRETRAIN", "False"])
    assert cfg.INPUT.SIZE_TRAIN == [384, 128] and cfg.DATASETS.NAMES == [name]
    with torch.device("meta"):
        model = build_model(cfg, num_classes=10)
    assert model.embedding_dim == 2048
