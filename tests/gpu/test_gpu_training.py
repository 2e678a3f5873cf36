"""Training on a CUDA GPU (skipped without one; ``benchmarks/gpu_check.sh`` runs them on a GPU machine).

Each check is a function of the device, so the same code runs on the CPU where that makes sense: a whole run with
evaluation, re-ranking, report, checkpoints and resume; MGN; fp16 with its GradScaler; gradient clipping with the
fused Adam step; and one training step on CUDA against the same step on the CPU. ``torch.compile`` has a test of
its own (it would slow every other one down by its compilation).
"""
import copy
import json
from contextlib import contextmanager

import pytest
import torch

from reid.checkpoint import load_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("single_thread")]

CUDA = "cuda"
FAST = ("DATALOADER.PIPELINE", "gpu", "SOLVER.AMP", "bf16", "MODEL.CHANNELS_LAST", "True")


def _trainer(make_cfg, *opts):
    from reid.engine.trainer import Trainer

    return Trainer(make_cfg(*opts))


@contextmanager
def full_fp32():
    """Full-precision float32 convolutions and matrix products (no TF32) inside the block (new fp32_precision API
    only: torch refuses a mix with the legacy flags)."""
    backends = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, saved):
            b.fp32_precision = value


@pytest.fixture
def restore_determinism():
    """DETERMINISTIC True switches torch to deterministic algorithms for the process; later tests get it back."""
    state = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(state[0], warn_only=state[1])
    torch.backends.cudnn.benchmark = state[2]


def run_end_to_end(make_cfg, tmp_path, device: str) -> None:
    """2 epochs straight vs 1 epoch + --resume: evaluation with re-ranking every epoch (model_best.pt), report."""
    from reid.engine.trainer import Trainer

    opts = ("MODEL.DEVICE", device, *FAST, "TEST.RERANK.ENABLED", "True", "VIS.REPORT", "True",
            "TEST.EVAL_PERIOD", "1", "DETERMINISTIC", "True", "SEED", "4")

    def cfg(out, epochs):
        return make_cfg(*opts, "OUTPUT_DIR", str(tmp_path / out), "SOLVER.MAX_EPOCHS", str(epochs))

    straight = Trainer(cfg("straight", 2)).train()
    Trainer(cfg("resumed", 1)).train()
    resumed = Trainer(cfg("resumed", 2), resume=True).train()
    for out, metrics in (("straight", straight), ("resumed", resumed)):
        run = tmp_path / out
        on_disk = json.loads((run / "metrics.json").read_text())
        assert on_disk["mAP"] == pytest.approx(metrics["mAP"]) and 0.0 <= metrics["mAP"] <= 1.0
        assert "rerank" in on_disk["datasets"]["Synthetic"]
        assert (run / "report.html").is_file()
        assert load_checkpoint(run / "model_last.pt")["epoch"] == 2
        assert load_checkpoint(run / "model_best.pt")["best"]["epoch"] in (1, 2)
    # The resumed run redoes epoch 2 as the straight run did. Not bit for bit on a GPU (atomics in some backward
    # kernels, cuBLAS handles made before CUBLAS_WORKSPACE_CONFIG): Adam turns a gradient that differs in its 7th
    # digit near zero into an update of up to 2 x LR (7e-4), hence the tolerances.
    a, b = (load_checkpoint(tmp_path / out / "model_final.pt")["model"] for out in ("straight", "resumed"))
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, rtol=1e-2, atol=2e-3, msg=k)
    losses = [[json.loads(line)["loss_total"] for line in (tmp_path / out / "train_log.jsonl").read_text().splitlines()
               if '"loss_total"' in line] for out in ("straight", "resumed")]
    assert len(losses[0]) == len(losses[1]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-3)
    assert resumed["mAP"] == pytest.approx(straight["mAP"], abs=0.02)


@pytest.mark.usefixtures("restore_determinism")
def test_train_on_cuda_end_to_end_with_rerank_report_checkpoints_and_resume(tiny_train_cfg, tmp_path):
    run_end_to_end(tiny_train_cfg, tmp_path, CUDA)


def run_mgn(make_cfg, device: str) -> None:
    trainer = _trainer(make_cfg, "MODEL.DEVICE", device, *FAST, "MODEL.META_ARCHITECTURE", "MGN",
                       "MODEL.HEADS.EMBEDDING_DIM", "16", "INPUT.SIZE_TRAIN", "[96, 32]", "INPUT.SIZE_TEST", "[96, 32]")
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    means = trainer.train_epoch(0)
    assert means and all(torch.isfinite(torch.tensor(v)) for v in means.values())
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("branches.2") for k in changed) and any(k.startswith("heads.7") for k in changed)
    embedding = trainer.model.eval()(torch.randn(2, 3, 96, 32, device=device))
    assert embedding.shape == (2, 8 * 16) and embedding.device.type == device


def test_mgn_trains_on_cuda(tiny_train_cfg):
    run_mgn(tiny_train_cfg, CUDA)


def run_fp16_with_grad_scaler(make_cfg, tmp_path, device: str) -> None:
    from reid.engine.trainer import Trainer

    cfg = make_cfg("MODEL.DEVICE", device, "SOLVER.AMP", "fp16", "SOLVER.MAX_EPOCHS", "2")
    trainer = Trainer(cfg)
    assert trainer.scaler.is_enabled()
    weight = trainer.model.backbone.conv1.weight
    initial = weight.detach().clone()
    trainer.model.train()
    batch = next(iter(trainer.train_loader))
    for _ in range(30):  # the scaler skips the steps whose gradients overflow while it lowers its scale
        terms = trainer.train_step(batch)
        if not torch.equal(weight, initial):
            break
    assert not torch.equal(weight, initial)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp16 only inside autocast
    scale = trainer.scaler.get_scale()
    assert 0 < scale < 2.0**16  # lowered from its initial 65536
    trainer.save("model_last.pt", epoch=1)
    resumed = Trainer(cfg, resume=True)
    assert resumed.scaler.get_scale() == scale


def test_fp16_with_grad_scaler_on_cuda(tiny_train_cfg, tmp_path):
    run_fp16_with_grad_scaler(tiny_train_cfg, tmp_path, CUDA)


def run_clipped_fused_adam(make_cfg, device: str, amp: str) -> None:
    """One training step with SOLVER.GRAD_CLIP and the fused Adam applies exactly the unscaled (fp16), clipped
    gradient: the same update as torch's loop Adam given that gradient, whose norm is the clip value."""
    clip = 0.05
    trainer = _trainer(make_cfg, "MODEL.DEVICE", device, "SOLVER.GRAD_CLIP", str(clip), "SOLVER.AMP", amp,
                       "SOLVER.FUSED", "True")
    assert trainer.optimizer.defaults["fused"] == (device == CUDA)
    if amp == "fp16":  # a loss scale that does not overflow, so that this very step is applied
        trainer.scaler.load_state_dict({**trainer.scaler.state_dict(), "scale": 1024.0})
    params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    initial = [p.detach().clone() for p in params]
    trainer.model.train()
    trainer.train_step(next(iter(trainer.train_loader)))
    grads = [p.grad.detach().clone() for p in params]  # what the step applied: unscaled and clipped in place
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert clip * 0.99 <= float(norm) <= clip * (1 + 1e-4)  # the tiny model's raw gradient norm is far above 0.05
    copies = iter([torch.nn.Parameter(p.clone()) for p in initial])
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [next(copies) for _ in g["params"]]}
              for g in trainer.optimizer.param_groups]
    groups = [{**g, "fused": False, "foreach": False} for g in groups]
    reference = torch.optim.Adam(groups)
    for copy_, grad in zip([p for g in groups for p in g["params"]], grads):
        copy_.grad = grad
    reference.step()
    for trained, expected in zip(params, [p for g in groups for p in g["params"]]):
        torch.testing.assert_close(trained.detach(), expected.detach(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("amp", ["off", "fp16"])
def test_gradient_clipping_with_fused_adam_on_cuda(tiny_train_cfg, amp):
    run_clipped_fused_adam(tiny_train_cfg, CUDA, amp)


def one_step(make_cfg, device: str):
    """Loss terms, gradients and updated weights of the first training step on ``device`` (same seed, batch)."""
    trainer = _trainer(make_cfg, "MODEL.DEVICE", device, "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.01",
                       "DETERMINISTIC", "True")
    trainer.model.train()
    batch = next(iter(trainer.train_loader))
    with full_fp32():
        terms = trainer.train_step(batch)
    grads = {n: p.grad.detach().cpu() for n, p in trainer.model.named_parameters() if p.grad is not None}
    weights = {n: p.detach().cpu() for n, p in trainer.model.named_parameters()}
    return {k: float(v.detach()) for k, v in terms.items()}, grads, weights, batch["paths"]


def test_one_training_step_on_cuda_equals_the_cpu_step(tiny_train_cfg):
    cpu_terms, cpu_grads, cpu_weights, cpu_paths = one_step(tiny_train_cfg, "cpu")
    gpu_terms, gpu_grads, gpu_weights, gpu_paths = one_step(tiny_train_cfg, CUDA)
    assert gpu_paths == cpu_paths and gpu_grads.keys() == cpu_grads.keys()
    for name, value in cpu_terms.items():
        assert gpu_terms[name] == pytest.approx(value, rel=1e-4), name
    flat_cpu, flat_gpu = (torch.cat([g.flatten() for g in grads.values()]) for grads in (cpu_grads, gpu_grads))
    assert float((flat_gpu - flat_cpu).norm() / flat_cpu.norm()) < 1e-3
    for name, w in cpu_weights.items():
        torch.testing.assert_close(gpu_weights[name], w, rtol=1e-4, atol=1e-5, msg=name)


def test_fast_settings_train_on_cuda(tiny_train_cfg):
    trainer = _trainer(tiny_train_cfg, "MODEL.DEVICE", CUDA, *FAST)
    assert trainer.train_loader.cache.on_device is not None and trainer.train_loader.cache.host is None
    assert trainer.optimizer.defaults["fused"]
    means = trainer.train_epoch(0)
    assert means and all(torch.isfinite(torch.tensor(v)) for v in means.values())


def test_compiled_training_step_on_cuda(tiny_train_cfg):
    """torch.compile alone: the compiled step trains and gives finite losses (its speed: train_bench.py)."""
    trainer = _trainer(tiny_train_cfg, "MODEL.DEVICE", CUDA, *FAST, "MODEL.COMPILE", "True")
    before = copy.deepcopy(trainer.model.state_dict())
    means = trainer.train_epoch(0)
    assert means and all(torch.isfinite(torch.tensor(v)) for v in means.values())
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())
