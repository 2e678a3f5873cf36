"""Learning-rate schedule: warm-up, multistep and cosine, per iteration; parameter groups."""
import math

import pytest
import torch

from reid.config import load_cfg
from reid.solver import Schedule, build_lr_scheduler, build_optimizer, lr_factor


def _cfg(*opts):
    return load_cfg(None, ["SOLVER.MAX_EPOCHS", "20", "SOLVER.WARMUP_EPOCHS", "4", "SOLVER.WARMUP_FACTOR", "0.1",
                           "SOLVER.STEPS", "[8, 15]", "SOLVER.GAMMA", "0.1", *opts])


def test_warmup_then_multistep():
    cfg = _cfg()
    assert lr_factor(cfg, 0) == pytest.approx(0.1)
    assert lr_factor(cfg, 2) == pytest.approx(0.55)
    assert lr_factor(cfg, 4) == 1.0 and lr_factor(cfg, 7.99) == 1.0
    assert lr_factor(cfg, 8) == pytest.approx(0.1) and lr_factor(cfg, 15) == pytest.approx(0.01)


def test_cosine_ends_at_eta_min():
    cfg = _cfg("SOLVER.SCHED", "cosine", "SOLVER.ETA_MIN_LR", "1e-6", "SOLVER.BASE_LR", "1e-3")
    assert lr_factor(cfg, 4) == pytest.approx(1.0)
    assert lr_factor(cfg, 12) == pytest.approx(0.5 * (1 + 1e-3), rel=1e-6)
    assert lr_factor(cfg, 20) == pytest.approx(1e-3)


def test_scheduler_steps_per_iteration_and_groups():
    cfg = _cfg("SOLVER.BIAS_LR_FACTOR", "2.0", "SOLVER.BASE_LR", "0.01", "SOLVER.WEIGHT_DECAY_NORM", "0.0")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(cfg, model)
    # fast-reid's / detectron2's groups: weight | biases (BN's too: BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS) | BN weight
    assert [len(g["params"]) for g in opt.param_groups] == [1, 2, 1]
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 5e-4, 0.0]
    sched = build_lr_scheduler(cfg, opt, iters_per_epoch=10)
    for _ in range(20):  # two epochs into the warm-up
        opt.step()
        sched.step()
    expected = 0.01 * (0.1 + 0.9 * 2 / 4)
    assert math.isclose(opt.param_groups[0]["lr"], expected, rel_tol=1e-9)
    assert math.isclose(opt.param_groups[1]["lr"], 2 * expected, rel_tol=1e-9)
    assert math.isclose(opt.param_groups[2]["lr"], expected, rel_tol=1e-9)


def test_warmup_in_iterations_equals_the_same_warmup_in_epochs():
    """WARMUP_ITERS (fast-reid) and WARMUP_EPOCHS (reid) are one warm-up, in two units."""
    in_epochs = Schedule(_cfg().SOLVER, 25)
    in_iters = Schedule(_cfg("SOLVER.WARMUP_EPOCHS", "0", "SOLVER.WARMUP_ITERS", "100").SOLVER, 25)
    assert all(in_epochs.lr(it, 1.0) == in_iters.lr(it, 1.0) for it in range(500))


def test_epoch_stepping_counts_decay_steps_from_the_end_of_warm_up():
    """SCHED_STEP epoch: the multistep milestones count the epochs ended after warm-up (fast-reid's hook)."""
    s = _cfg("SOLVER.WARMUP_EPOCHS", "0", "SOLVER.WARMUP_ITERS", "25", "SOLVER.SCHED_STEP", "epoch",
             "SOLVER.STEPS", "[2]").SOLVER
    lrs = [Schedule(s, 10).lr(it, 1.0) for it in range(60)]
    assert lrs[24] < 1 and lrs[25] == lrs[29] == 1.0  # warm-up ends inside epoch 2 (iterations 20-29)
    assert lrs[30] == lrs[39] == 1.0 and lrs[40] == pytest.approx(0.1)  # stepped after epochs 2 and 3


def test_timm_epoch_stepping_equals_transreids_timm_scheduler():
    """SCHED_STEP timm_epoch against timm's own CosineLRScheduler, created and stepped as TransReID's
    create_scheduler / do_train do (scheduler.step(epoch) before each 1-based epoch), every group at every iteration
    of a whole shrunken recipe: warm-up from 0.01 x BASE_LR for every group (the 2x-LR bias group too), then the
    cosine over all epochs down to 0.002 x BASE_LR."""
    from timm.scheduler import CosineLRScheduler  # a test-only oracle (requirements-peers.txt)

    cfg = load_cfg("configs/Market1501/vit_transreid_stride.yml", ["SOLVER.MAX_EPOCHS", "12"])
    s = cfg.SOLVER
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    ours, theirs = build_optimizer(cfg, model), build_optimizer(cfg, model)
    assert len({g["initial_lr"] for g in ours.param_groups}) == 2  # BASE_LR and the biases' 2 x BASE_LR
    iters_per_epoch = 3
    sched = build_lr_scheduler(cfg, ours, iters_per_epoch)
    timm = CosineLRScheduler(theirs, t_initial=s.MAX_EPOCHS, lr_min=0.002 * s.BASE_LR, cycle_mul=1.0, cycle_decay=0.1,
                             warmup_lr_init=0.01 * s.BASE_LR, warmup_t=s.WARMUP_EPOCHS, cycle_limit=1,
                             t_in_epochs=True)
    assert s.ETA_MIN_LR == pytest.approx(0.002 * s.BASE_LR) and s.WARMUP_FACTOR == 0.01
    for epoch in range(1, s.MAX_EPOCHS + 1):
        timm.step(epoch)
        for _ in range(iters_per_epoch):
            for a, b in zip(ours.param_groups, theirs.param_groups):
                assert a["lr"] == pytest.approx(b["lr"], rel=1e-12, abs=1e-15), (epoch, a["lr"], b["lr"])
            ours.step()
            sched.step()
