"""GPU tests of what the CPU tests cannot show (skipped without CUDA; ``benchmarks/gpu_check.sh`` runs them):

- EMA weights on CUDA: the averaged model lives on the GPU and follows the closed-form update of each step;
- DDP on CUDA, two processes on the one GPU: a run with SyncBN, EMA and MODEL.LOSSES.GATHER_FEATURES keeps the
  ranks in step (weights, BN statistics, EMA weights) and writes its checkpoints once; NCCL refuses two ranks on one
  device ("Duplicate GPU detected"), so the run uses gloo on CUDA tensors (``REID_DIST_BACKEND``) when NCCL does;
- GATHER_FEATURES on CUDA tensors: the gathered pair losses and DDP's averaged gradients equal one process on the
  whole batch;
- checkpoint snapshots of GPU tensors: pinned host buffers, values as on the device;
- a training step of ResNet50-like and MGN models under *strict* deterministic algorithms (what DETERMINISTIC's
  exact resume needs: an op without a deterministic CUDA kernel raises here, naming itself).
"""
import os

import pytest
import torch

from tests.conftest import TINY_TRAINING, spawn_ranks, torchrun_environment

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("single_thread")]

WORLD = 2
TIMEOUT_S = {"nccl": 60, "gloo": 240}  # NCCL refuses (or hangs) at once when it cannot share the GPU


def test_ema_weights_on_cuda_follow_the_closed_form_update(tiny_train_cfg):
    from reid.engine.hooks.ema import ema_decay
    from reid.engine.trainer import Trainer

    trainer = Trainer(tiny_train_cfg("MODEL.DEVICE", "cuda", "SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.DECAY", "0.9"))
    ema = trainer.ema
    trainer.model.train()
    ema.before_train()
    batches = iter(trainer.train_loader)
    for step in range(3):
        before = {k: v.detach().clone() for k, v in ema.model.state_dict().items()}
        trainer.run_step(next(batches))
        d = ema_decay(0.9, step)
        weights = trainer.model.state_dict()
        for k, v in ema.model.state_dict().items():
            assert v.is_cuda, k
            if v.is_floating_point():
                torch.testing.assert_close(v, d * before[k] + (1 - d) * weights[k], rtol=1e-5, atol=1e-6, msg=k)
            else:
                assert torch.equal(v, weights[k]), k
    assert ema.updates == 3


def _gather_on_cuda(rank: int) -> dict:
    """A linear embedding in DDP on CUDA, pair losses on the gathered batch vs one process on the whole batch."""
    from torch.nn.parallel import DistributedDataParallel

    from reid.config import get_cfg
    from reid.modeling.losses import build_criterion

    device = torch.device("cuda", 0)
    torch.manual_seed(0)
    images, layer = torch.randn(16, 6, device=device), torch.nn.Linear(6, 5).to(device)
    labels = torch.arange(4, device=device).repeat(4)
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ["PairwiseCircleLoss", "TripletLoss", "MultiSimilarityLoss"]
    cfg.MODEL.LOSSES.GATHER_FEATURES = False
    single = torch.nn.Linear(6, 5).to(device)
    single.load_state_dict(layer.state_dict())
    reference = build_criterion(cfg)({"features": [single(images)]}, labels)
    sum(reference.values()).backward()
    cfg.MODEL.LOSSES.GATHER_FEATURES = True
    model = torch.nn.Linear(6, 5).to(device)
    model.load_state_dict(layer.state_dict())
    mine = slice(8 * rank, 8 * rank + 8)
    ddp = DistributedDataParallel(model, device_ids=[device])  # kept alive until backward: it reduces the gradients
    terms = build_criterion(cfg)({"features": [ddp(images[mine])]}, labels[mine])
    sum(terms.values()).backward()
    return {"terms": {k: v.item() for k, v in terms.items()}, "reference": {k: v.item() for k, v in reference.items()},
            "grads": [p.grad.cpu() for p in model.parameters()], "ref_grads": [p.grad.cpu() for p in single.parameters()]}


def _rank_main(rank: int, port: int, cfg, backend: str, out: str) -> None:
    torchrun_environment(rank, WORLD, port)
    os.environ.update(LOCAL_RANK="0", REID_DIST_BACKEND=backend)  # both processes on the one GPU
    from reid.engine.launch import distributed
    from reid.engine.trainer import Trainer

    result = {}
    try:
        with distributed("cuda"):
            trainer = Trainer(cfg)
            result["sync_bn"] = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.model.modules())
            result["metrics"] = trainer.train()
            result["state"] = {k: v.cpu() for k, v in trainer.model.state_dict().items()}
            result["ema"] = {k: v.cpu() for k, v in trainer.ema.model.state_dict().items()}
            result["gather"] = _gather_on_cuda(rank)
    except Exception as e:  # noqa: BLE001 - reported by the test (NCCL refusing two ranks on one GPU, say)
        result["error"] = f"{type(e).__name__}: {e}"
    torch.save(result, f"{out}/rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp_on_one_gpu(synthetic_root, tmp_path_factory):
    """The 2-process run, with NCCL when it accepts two ranks on one GPU, else gloo on CUDA tensors."""
    from reid.config import load_cfg

    tried = {}
    for backend in ("nccl", "gloo"):
        out = tmp_path_factory.mktemp(f"ddp_cuda_{backend}")
        cfg = load_cfg(None, ["DATASETS.ROOT", synthetic_root, "OUTPUT_DIR", str(out / "run"), *TINY_TRAINING,
                              "MODEL.DEVICE", "cuda", "SOLVER.MAX_EPOCHS", "2", "MODEL.SYNC_BN", "True",
                              "SOLVER.EMA.ENABLED", "True", "MODEL.LOSSES.GATHER_FEATURES", "True",
                              "DATALOADER.PIPELINE", "gpu", "SOLVER.AMP", "bf16"])
        try:
            spawn_ranks(_rank_main, (cfg, backend, str(out)), WORLD, TIMEOUT_S[backend])
        except pytest.fail.Exception as timeout:
            tried[backend] = str(timeout)
            continue
        ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
        tried[backend] = [r.get("error") for r in ranks]
        if not any(tried[backend]):
            print(f"DDP on one GPU ran with {backend}; tried: {tried}")  # in pytest_gpu.txt with -s / -rA
            return backend, out, ranks
    pytest.fail(f"no backend ran two processes on one GPU: {tried}")


def test_ddp_on_cuda_with_sync_bn_and_ema_keeps_the_ranks_in_step(ddp_on_one_gpu):
    backend, out, (rank0, rank1) = ddp_on_one_gpu
    assert rank0["sync_bn"] > 0 and rank0["sync_bn"] == rank1["sync_bn"]
    for key in ("state", "ema"):  # weights, SyncBN's running statistics and the EMA weights: identical on both ranks
        assert rank0[key].keys() == rank1[key].keys()
        for k, v in rank0[key].items():
            assert torch.equal(v, rank1[key][k]), (backend, key, k)
    assert rank0["metrics"]["mAP"] == rank1["metrics"]["mAP"] and 0.0 <= rank0["metrics"]["mAP"] <= 1.0
    assert (out / "run" / "model_final.pt").is_file() and (out / "run" / "model_last.pt").is_file()


def test_gathered_pair_losses_on_cuda_equal_one_process_on_the_whole_batch(ddp_on_one_gpu):
    _, _, ranks = ddp_on_one_gpu
    for r in ranks:
        g = r["gather"]
        for name, value in g["reference"].items():
            assert g["terms"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
        for grad, ref in zip(g["grads"], g["ref_grads"]):
            torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-6)


def test_checkpoint_snapshots_of_gpu_tensors_are_pinned_and_synchronised_once(monkeypatch):
    from reid.checkpoint import to_host

    calls = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: (calls.append(device), real(device)))
    state = {"model": {"w": torch.randn(1000, 100, device="cuda"), "b": torch.arange(7, device="cuda")},
             "opt": [torch.randn(3, device="cuda").t()], "cpu": torch.ones(2), "epoch": 3}
    snapshot = to_host(state)
    assert len(calls) == 1
    for got, expected in ((snapshot["model"]["w"], state["model"]["w"]), (snapshot["model"]["b"], state["model"]["b"]),
                          (snapshot["opt"][0], state["opt"][0])):
        assert got.device.type == "cpu" and got.is_pinned() and torch.equal(got, expected.cpu())
    assert not snapshot["cpu"].is_pinned() and snapshot["epoch"] == 3


@pytest.mark.parametrize("arch", ["Baseline", "MGN"])
def test_a_training_step_on_cuda_runs_under_strict_deterministic_algorithms(tiny_train_cfg, arch):
    """DETERMINISTIC warns (warn_only) for an op without a deterministic CUDA kernel; here such an op would raise."""
    from reid.engine.trainer import Trainer

    extra = ["MODEL.HEADS.EMBEDDING_DIM", "16", "INPUT.SIZE_TRAIN", "[96, 32]", "INPUT.SIZE_TEST", "[96, 32]"] \
        if arch == "MGN" else []
    trainer = Trainer(tiny_train_cfg("MODEL.DEVICE", "cuda", "MODEL.META_ARCHITECTURE", arch, "DETERMINISTIC", "True",
                                     *extra))
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True)
    try:
        trainer.model.train()
        terms = trainer.train_step(next(iter(trainer.train_loader)))
        torch.cuda.synchronize()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    assert all(torch.isfinite(v) for v in terms.values()) and os.environ["CUBLAS_WORKSPACE_CONFIG"]
