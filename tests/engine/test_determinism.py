"""DETERMINISTIC: what makes a resumed GPU run repeat the uninterrupted one, checked where a CPU can check it.

The model's pooling is a reduction (CUDA's adaptive pooling backward accumulates with atomics and is refused by
strict deterministic mode), and CUBLAS_WORKSPACE_CONFIG is set before any GPU work. Whether every op of a training
step has a deterministic CUDA kernel is checked on a GPU (tests/gpu/test_gpu_multi.py).
"""
import os

import torch

from reid.utils import env


def test_pooling_layers_equal_adaptive_pooling_and_train_under_strict_deterministic_algorithms():
    """reid's global pooling is a reduction (deterministic backward on CUDA, where adaptive pooling's is not)."""
    from reid.modeling.heads.pooling import build_pooling

    x = torch.randn(3, 5, 7, 4, dtype=torch.float64, requires_grad=True)
    f = torch.nn.functional
    expected = {"avg": f.adaptive_avg_pool2d(x, 1), "max": f.adaptive_max_pool2d(x, 1),
                "gem": f.adaptive_avg_pool2d(x.clamp(min=1e-6).pow(3.0), 1).pow(1 / 3.0)}
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True)  # strict: an op without a deterministic kernel would raise
    try:
        for name, reference in expected.items():
            pooled = build_pooling(name, gem_learn=False)(x)
            torch.testing.assert_close(pooled, reference, rtol=1e-12, atol=1e-12)
            pooled.sum().backward()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_cublas_workspace_is_set_at_start_and_by_seeding(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    env.deterministic_environment()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == env.CUBLAS_WORKSPACE
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own choice is kept
    env.deterministic_environment()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
