"""DDP defects found by review, on the CPU with two gloo ranks (one spawn runs every scenario, to stay cheap).

- Pair-loss-only configs (Baseline and MGN) train under DistributedDataParallel: no classifier is built without a
  classification loss and parameters no loss reaches are frozen (was: "Expected to have finished reduction").
- MODEL.LOSSES.GATHER_FEATURES: the pair losses' value and the DDP-averaged gradients equal a single process's on
  the concatenated batch (without gathering they do not).
- A non-finite loss on one rank stops every rank at the same check, each naming the bad rank.
- A warning when each GPU's batch holds fewer than 4 identities.
- ``all_gather_with_grad`` with unequal rows raises an error naming the ranks and sizes (was: SIGABRT in gloo).
- Under bf16 autocast the gathered pair-loss features and the sums of their gradients are float32.
"""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import TINY_TRAINING, spawn_ranks, torchrun_environment

WORLD = 2
TIMEOUT_S = 180
PAIR_LOSSES = "['PairwiseCircleLoss', 'TripletLoss', 'MultiSimilarityLoss']"


def _pair_only_training(cfg) -> dict:
    from reid.engine.trainer import Trainer

    trainer = Trainer(cfg)
    metrics = trainer.train()
    return {"state": trainer.model.state_dict(), "mAP": metrics["mAP"],
            "names": [n for n, _ in trainer.model.named_parameters()]}


def _gather_check(rank: int) -> dict:
    """A linear embedding in DDP, pair losses on the gathered batch vs one process on the whole batch (float64)."""
    from torch.nn.parallel import DistributedDataParallel

    from reid.config import get_cfg
    from reid.modeling.losses import build_criterion

    torch.manual_seed(0)
    images, layer = torch.randn(16, 6, dtype=torch.float64), torch.nn.Linear(6, 5).double()
    labels = torch.arange(4).repeat(4)  # every identity on both ranks: positives across ranks
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ["PairwiseCircleLoss", "TripletLoss", "MultiSimilarityLoss"]
    cfg.MODEL.LOSSES.GATHER_FEATURES = False
    reference = build_criterion(cfg)  # one process on the whole batch (no collectives)
    single = torch.nn.Linear(6, 5).double()
    single.load_state_dict(layer.state_dict())
    ref_terms = reference({"features": [single(images)]}, labels)
    sum(ref_terms.values()).backward()

    mine = slice(8 * rank, 8 * rank + 8)
    results = {}
    for gather in (True, False):
        cfg.MODEL.LOSSES.GATHER_FEATURES = gather
        model = torch.nn.Linear(6, 5).double()
        model.load_state_dict(layer.state_dict())
        ddp = DistributedDataParallel(model)
        terms = build_criterion(cfg)({"features": [ddp(images[mine])]}, labels[mine])
        sum(terms.values()).backward()
        results[gather] = {"terms": {k: v.item() for k, v in terms.items()},
                           "grads": [p.grad.clone() for p in model.parameters()]}
    results["reference"] = {"terms": {k: v.item() for k, v in ref_terms.items()},
                            "grads": [p.grad.clone() for p in single.parameters()]}
    return results


def _guard_check(rank: int) -> dict:
    """The non-finite guard of both ranks over one epoch of 4 steps (checked every 2); rank 1's 3rd loss is NaN."""
    from reid.engine.hooks import NonFiniteGuard
    from reid.utils.errors import ReIDError

    guard = NonFiniteGuard(period=2, last_good=Path("model_last.pt"))
    guard.trainer = SimpleNamespace(epoch=0, iter=0, losses=SimpleNamespace(names=["loss_ce"], last=None))
    guard.before_epoch()
    for it in range(4):
        bad = rank == 1 and it == 2
        guard.trainer.iter, guard.trainer.losses.last = it, torch.tensor([float("nan") if bad else 1.0])
        try:
            guard.after_step()
        except ReIDError as e:
            return {"stopped_after": it, "message": str(e)}
    return {"stopped_after": None}


def _unequal_rows_check(rank: int) -> dict:
    """Rank 0 gathers 3 rows, rank 1 gathers 4: both must raise, naming both shapes; then an equal gather works."""
    from reid.utils.distributed import all_gather_with_grad
    from reid.utils.errors import ReIDError

    try:
        all_gather_with_grad(torch.zeros(3 + rank, 4))
        message = None
    except ReIDError as e:
        message = str(e)
    return {"message": message, "after": tuple(all_gather_with_grad(torch.full((2, 4), float(rank))).shape)}


def _bf16_gather_check(rank: int) -> dict:
    """The pair losses' gather under CPU bf16 autocast: the dtypes of what is gathered and of its gradient."""
    from reid.config import get_cfg
    from reid.modeling.losses import build as losses_build
    from reid.modeling.losses import build_criterion

    seen = {}
    real = losses_build.all_gather_with_grad

    def recording(part):
        out = real(part)
        if part.is_floating_point():
            seen["gathered"] = part.dtype
            out.register_hook(lambda grad: seen.__setitem__("grad", grad.dtype))
        return out

    losses_build.all_gather_with_grad = recording
    try:
        cfg = get_cfg()
        cfg.MODEL.LOSSES.NAME = ["PairwiseCircleLoss"]
        torch.manual_seed(rank)
        layer = torch.nn.Linear(6, 5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = layer(torch.randn(8, 6))
            terms = build_criterion(cfg)({"features": [features]}, torch.arange(4).repeat(2))
        sum(terms.values()).backward()
    finally:
        losses_build.all_gather_with_grad = real
    return {"model_output": features.dtype, **seen}


def _rank_main(rank: int, port: int, cfgs: dict, out: str) -> None:
    torchrun_environment(rank, WORLD, port)
    from reid.engine.launch import distributed

    results = {}
    with distributed("cpu"):
        for name, cfg in cfgs.items():
            try:
                results[name] = _pair_only_training(cfg)
            except Exception as e:  # noqa: BLE001 - reported by the test
                results[name] = {"error": f"{type(e).__name__}: {e}"}
        results["gather"] = _gather_check(rank)
        results["guard"] = _guard_check(rank)
        results["unequal"] = _unequal_rows_check(rank)
        results["bf16"] = _bf16_gather_check(rank)
    torch.save(results, f"{out}/rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp(synthetic_root, tmp_path_factory):
    from reid.config import load_cfg

    out = tmp_path_factory.mktemp("ddp_defects")
    common = ["DATASETS.ROOT", synthetic_root, *TINY_TRAINING, "SOLVER.MAX_EPOCHS", "2", "MODEL.LOSSES.NAME",
              PAIR_LOSSES]
    cfgs = {"baseline": load_cfg(None, [*common, "OUTPUT_DIR", str(out / "baseline")]),
            "mgn": load_cfg(None, [*common, "OUTPUT_DIR", str(out / "mgn"), "MODEL.META_ARCHITECTURE", "MGN",
                                   "MODEL.HEADS.EMBEDDING_DIM", "16", "INPUT.SIZE_TRAIN", "[96, 32]",
                                   "INPUT.SIZE_TEST", "[96, 32]"])}
    spawn_ranks(_rank_main, (cfgs, str(out)), WORLD, TIMEOUT_S)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["baseline", "mgn"])
def test_pair_loss_only_configs_train_under_ddp(ddp, arch):
    out, ranks = ddp
    for r in ranks:
        assert "error" not in r[arch], r[arch].get("error")
        assert not any("classifier" in n for n in r[arch]["names"])  # no classifier without a class loss
    a, b = ranks[0][arch]["state"], ranks[1][arch]["state"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())  # the ranks stayed in step
    assert (out / arch / "model_final.pt").is_file() and ranks[0][arch]["mAP"] == ranks[1][arch]["mAP"]
    log = (out / arch / "log.txt").read_text()
    assert "Each of the 2 GPUs trains on 2 identities x 4 images" in log  # IMS_PER_BATCH 16, K 4
    assert "no classifier is built" in log


@pytest.mark.slow
def test_gathered_pair_losses_equal_one_process_on_the_whole_batch(ddp):
    _, ranks = ddp
    for r in ranks:
        gathered, local, reference = r["gather"][True], r["gather"][False], r["gather"]["reference"]
        assert gathered["terms"].keys() == reference["terms"].keys() and len(reference["terms"]) == 3
        for name, value in reference["terms"].items():
            assert gathered["terms"][name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        for g, ref in zip(gathered["grads"], reference["grads"]):  # DDP's average over ranks
            torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
        # Without gathering each rank's pair losses see half the batch: another loss and other gradients.
        assert any(abs(local["terms"][k] - v) > 1e-6 for k, v in reference["terms"].items())
        assert not all(torch.allclose(g, ref) for g, ref in zip(local["grads"], reference["grads"]))


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_stops_every_rank(ddp):
    _, (rank0, rank1) = ddp
    assert rank0["guard"]["stopped_after"] == rank1["guard"]["stopped_after"] == 3  # the next check, together
    assert "became nan on rank 1 of 2 at epoch 1, iteration 3" in rank1["guard"]["message"]
    assert "non-finite at epoch 1 on rank 1 at iteration 3" in rank0["guard"]["message"]
    assert "training stopped on every rank" in rank0["guard"]["message"]


def test_unequal_rows_in_all_gather_with_grad_raise_an_error_naming_ranks_and_sizes(ddp):
    _, ranks = ddp
    for r in ranks:
        message = r["unequal"]["message"]
        assert message and "rank 0: (3, 4), rank 1: (4, 4)" in message and "same shape on every rank" in message
        assert r["unequal"]["after"] == (4, 4)  # the group is still usable


def test_pair_loss_features_are_gathered_in_float32_under_bf16_autocast(ddp):
    _, ranks = ddp
    for r in ranks:
        assert r["bf16"] == {"model_output": torch.bfloat16, "gathered": torch.float32, "grad": torch.float32}


def test_identities_per_gpu_warning(tiny_train_cfg):
    from reid.engine.trainer import identities_per_gpu_warning

    cfg = tiny_train_cfg("SOLVER.IMS_PER_BATCH", "64")
    assert identities_per_gpu_warning(cfg, 1) is None and identities_per_gpu_warning(cfg, 4) is None  # 4 ids each
    gathered = identities_per_gpu_warning(cfg, 8)
    assert "2 identities x 4 images" in gathered and "at least 128" in gathered and "MODEL.SYNC_BN" in gathered
    local = identities_per_gpu_warning(tiny_train_cfg("SOLVER.IMS_PER_BATCH", "64",
                                                      "MODEL.LOSSES.GATHER_FEATURES", "False"), 8)
    assert "3 positives and 4 negatives per anchor" in local and "GATHER_FEATURES True" in local
    assert identities_per_gpu_warning(tiny_train_cfg("SOLVER.IMS_PER_BATCH", "64", "DATALOADER.SAMPLER", "random"),
                                      8) is None
