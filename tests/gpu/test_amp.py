"""Mixed precision, channels-last, fused optimizer and the training step's deferred non-finite check."""
import pytest
import torch

from reid.checkpoint import load_checkpoint
from reid.solver import build_optimizer
from reid.utils.errors import ConfigError, ReIDError

pytestmark = pytest.mark.usefixtures("single_thread")


def _trainer(make_cfg, *opts):
    from reid.engine.trainer import Trainer

    return Trainer(make_cfg(*opts))


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_amp_modes_train_with_fp32_weights_and_losses(tiny_train_cfg, amp):
    trainer = _trainer(tiny_train_cfg, "SOLVER.AMP", amp, "MODEL.CHANNELS_LAST", "True")
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    trainer.model.train()
    batch = next(iter(trainer.train_loader))
    weight = trainer.model.backbone.conv1.weight
    before = weight.detach().clone()
    for _ in range(20):  # fp16: the scaler skips steps whose gradients overflow while it lowers its scale
        terms = trainer.train_step(batch)
        if not torch.equal(weight, before):
            break
    assert not torch.equal(weight, before)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    if amp == "fp16":
        assert load_checkpoint(trainer.save("model_last.pt", epoch=0))["scaler"]["scale"] < 2.0**16


def test_channels_last_model_gives_the_same_embeddings(tiny_train_cfg):
    from reid.modeling import build_model

    cfg = tiny_train_cfg()
    model = build_model(cfg, num_classes=3)
    x = torch.randn(2, 3, 64, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5)


def test_unknown_amp_or_pipeline_name_is_a_config_error(tiny_train_cfg):
    with pytest.raises(ConfigError, match="SOLVER.AMP"):
        _trainer(tiny_train_cfg, "SOLVER.AMP", "fp8")
    with pytest.raises(ConfigError, match="DATALOADER.PIPELINE"):
        _trainer(tiny_train_cfg, "DATALOADER.PIPELINE", "dali")


def test_non_finite_loss_stops_training_with_its_iteration(tiny_train_cfg):
    """The check runs every LOG_PERIOD iterations (no per-step sync) yet names the first bad iteration."""
    trainer = _trainer(tiny_train_cfg, "SOLVER.LOG_PERIOD", "100")
    criterion, calls = trainer.criterion, []

    def poisoned(outputs, pids):
        calls.append(1)
        terms = criterion(outputs, pids)
        return {k: v * float("nan") for k, v in terms.items()} if len(calls) == 2 else terms

    trainer.criterion = poisoned
    with pytest.raises(ReIDError, match=r"became nan at epoch 1, iteration 2 .*model_last\.pt"):
        trainer.train_epoch(0)


def test_fused_optimizer_only_for_cuda_parameters(tiny_train_cfg):
    from reid.modeling import build_model

    cfg = tiny_train_cfg("SOLVER.FUSED", "True")
    assert not build_optimizer(cfg, build_model(cfg, num_classes=3)).defaults["fused"]


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_fused_optimizer_on_cuda(tiny_train_cfg, name):
    from reid.modeling import build_model

    cfg = tiny_train_cfg("SOLVER.FUSED", "True", "SOLVER.OPTIMIZER", name)
    assert build_optimizer(cfg, build_model(cfg, num_classes=3).cuda()).defaults["fused"]
