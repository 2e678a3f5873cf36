"""Distances in full float32 whatever matmul precision the process was set to, through torch's new
``fp32_precision`` API only (the legacy getter raises once the new API set backends apart), restored afterwards
and safe when several threads evaluate at once."""
import threading
import time

import numpy as np
import pytest
import torch

from reid.evaluation import compute_distance, evaluate, re_ranking
from reid.utils.precision import ieee_matmul

BACKENDS = {"cuda": torch.backends.cuda.matmul, "cpu": torch.backends.mkldnn.matmul}


@pytest.fixture
def fast_matmuls():
    """TF32 for cuBLAS and bf16 for oneDNN, set through the new API as a training script would; restored after."""
    before = {k: b.fp32_precision for k, b in BACKENDS.items()}
    BACKENDS["cuda"].fp32_precision = "tf32"
    BACKENDS["cpu"].fp32_precision = "bf16"
    yield {k: b.fp32_precision for k, b in BACKENDS.items()}
    for k, b in BACKENDS.items():
        b.fp32_precision = before[k]


def _features(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 20, 300)
    feats = torch.from_numpy((rng.standard_normal((20, 512))[ids] + rng.standard_normal((300, 512))).astype(np.float32))
    return feats[:60], feats[60:], ids[:60], ids[60:], rng.integers(0, 3, 60), rng.integers(0, 3, 240)


def test_evaluation_and_reranking_run_in_full_float32_and_restore_the_setting(fast_matmuls):
    q, g, qp, gp, qc, gc = _features()
    with ieee_matmul("cpu"):  # the reference: every matmul below in full float32
        expected = (compute_distance(q, g), re_ranking(q, g), evaluate(q, g, qp, gp, qc, gc, rerank=True).ap)
    assert {k: b.fp32_precision for k, b in BACKENDS.items()} == fast_matmuls
    got = (compute_distance(q, g), re_ranking(q, g), evaluate(q, g, qp, gp, qc, gc, rerank=True).ap)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # NaN AP of queries without a match: equal
    assert {k: b.fp32_precision for k, b in BACKENDS.items()} == fast_matmuls


def test_the_cuda_setting_is_switched_with_the_new_api_only(fast_matmuls):
    """No GPU is needed to flip the cuBLAS setting: what evaluation on a GPU does, checked on any machine."""
    with ieee_matmul(torch.device("cuda", 0)):
        assert BACKENDS["cuda"].fp32_precision == "ieee"
        assert BACKENDS["cpu"].fp32_precision == "bf16"  # other device types are left alone
    assert BACKENDS["cuda"].fp32_precision == "tf32"
    with ieee_matmul("meta"):  # no matmul precision for this device type: nothing to switch
        assert BACKENDS["cuda"].fp32_precision == "tf32"


def test_threads_entering_and_leaving_in_any_order_see_ieee_and_leave_the_setting_as_before(fast_matmuls):
    """Eight threads enter together and leave in a shuffled order; a plain save / set / restore per call would
    let an early leaver restore "tf32" under the others, and a late one restore "ieee" for good."""
    threads, rounds = 8, 20
    barrier, seen, errors = threading.Barrier(threads), [], []

    def worker(i: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait()
                with ieee_matmul("cuda"):
                    barrier.wait()  # everyone is inside
                    time.sleep(((i * 7 + r * 3) % threads) * 1e-4)  # leave in a different order each round
                    seen.append(BACKENDS["cuda"].fp32_precision)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            barrier.abort()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors and len(seen) == threads * rounds
    assert set(seen) == {"ieee"}
    assert BACKENDS["cuda"].fp32_precision == "tf32"


def test_threads_computing_distances_at_once_get_full_float32_results(fast_matmuls):
    q, g, *_ = _features(1)
    with ieee_matmul("cpu"):
        expected = compute_distance(q, g, chunk_size=7)
    results = [None] * 4

    def worker(i: int) -> None:
        results[i] = compute_distance(q, g, chunk_size=7)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert all(torch.equal(r, expected) for r in results)
    assert BACKENDS["cpu"].fp32_precision == "bf16"


@pytest.fixture
def legacy_tf32():
    """TF32 switched on the legacy way (as many training scripts do); the default restored after."""
    torch.set_float32_matmul_precision("high")
    yield
    torch.set_float32_matmul_precision("highest")


def test_a_process_that_enabled_tf32_the_legacy_way_gets_full_float32_without_the_mixed_api_error(legacy_tf32):
    """Reading ``allow_tf32`` is the check cuBLAS makes before every matmul: with only the new per-backend setting
    changed it raised torch's "mix of the legacy and new APIs" error."""
    q, g, *_ = _features(2)
    with ieee_matmul("cuda"):
        assert torch.backends.cuda.matmul.allow_tf32 is False  # raised before
        assert BACKENDS["cpu"].fp32_precision == "ieee"  # the legacy setting covers every backend
        with ieee_matmul("cpu"):  # nested, other device type: one legacy holder
            inside = compute_distance(q, g)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cuda.matmul.allow_tf32 is True
    torch.set_float32_matmul_precision("highest")
    torch.testing.assert_close(inside, compute_distance(q, g), rtol=0, atol=0)
