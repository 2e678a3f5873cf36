"""P x K identity sampler and the random fallback: batch structure, coverage, determinism, exact length, DDP."""
from collections import Counter
from typing import List

import pytest

from reid.data.samplers import IdentitySampler, ShuffleSampler
from reid.utils.errors import ConfigError

# 12 identities with 1..9 images each (identity 0 has a single image).
PIDS = [pid for pid in range(12) for _ in range(1 + (pid * 5) % 9)]


def batches(sampler, epoch: int = 0) -> List[List[int]]:
    sampler.set_epoch(epoch)
    indices = list(sampler)
    assert len(indices) == len(sampler)  # exact length
    return [indices[i:i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


def test_every_batch_has_p_identities_with_k_images_each():
    sampler = IdentitySampler(PIDS, batch_size=8, num_instances=2, seed=3)
    plan = batches(sampler)
    assert plan and all(len(b) == 8 for b in plan)
    for b in plan:
        counts = Counter(PIDS[i] for i in b)
        assert len(counts) == 4 and set(counts.values()) == {2}


def test_every_identity_and_nearly_every_image_is_seen_each_epoch():
    pids = [pid for pid in range(16) for _ in range(8)]  # 16 ids x 8 images: 32 groups of 4, 4 batches of 8 ids
    sampler = IdentitySampler(pids, batch_size=32, num_instances=4, seed=0)
    for epoch in range(3):
        seen = [i for b in batches(sampler, epoch) for i in b]
        assert sorted(seen) == list(range(len(pids)))
    sampler = IdentitySampler(PIDS, batch_size=8, num_instances=2, seed=0)
    seen = {PIDS[i] for b in batches(sampler) for i in b}
    assert seen == set(PIDS)


def test_identity_with_one_image_is_sampled_with_replacement():
    sampler = IdentitySampler([0, 1, 1, 1, 2, 2], batch_size=6, num_instances=2, seed=0)
    (batch,) = batches(sampler)
    assert batch.count(0) == 2


def test_deterministic_per_seed_and_epoch_and_epochs_differ():
    make = lambda seed: IdentitySampler(PIDS, batch_size=8, num_instances=2, seed=seed)
    assert batches(make(1), 0) == batches(make(1), 0)
    assert batches(make(1), 5) == batches(make(1), 5)
    assert batches(make(1), 0) != batches(make(1), 1)
    assert batches(make(1), 0) != batches(make(2), 0)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_ranks_get_equal_lengths_and_disjoint_batches(world_size):
    full = batches(IdentitySampler(PIDS, batch_size=4, num_instances=2, seed=7), epoch=2)
    ranks = [batches(IdentitySampler(PIDS, batch_size=4, num_instances=2, seed=7, rank=r, world_size=world_size),
                     epoch=2) for r in range(world_size)]
    assert len({len(r) for r in ranks}) == 1
    interleaved = [ranks[r][i] for i in range(len(ranks[0])) for r in range(world_size)]
    padding = len(interleaved) - len(full)
    assert 0 <= padding < world_size
    assert interleaved == full + full[:padding]  # rank r: batches r, r + W, ...; padding wraps around
    assert all(b1 != b2 for r1 in ranks for r2 in ranks if r1 is not r2 for b1 in r1[:len(full) // world_size]
               for b2 in r2[:len(full) // world_size])


def test_invalid_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="multiple"):
        IdentitySampler(PIDS, batch_size=7, num_instances=2)
    with pytest.raises(ConfigError, match="distinct identities"):
        IdentitySampler([0, 0, 1, 1], batch_size=8, num_instances=2)
    with pytest.raises(ConfigError, match="rank"):
        IdentitySampler(PIDS, batch_size=8, num_instances=2, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        ShuffleSampler(3, batch_size=4)


def test_random_sampler_full_batches_deterministic_and_ddp():
    plan = batches(ShuffleSampler(50, batch_size=8, seed=1))
    flat = [i for b in plan for i in b]
    assert len(plan) == 6 and len(set(flat)) == 48 and set(flat) <= set(range(50))
    assert plan == batches(ShuffleSampler(50, batch_size=8, seed=1)) != batches(ShuffleSampler(50, 8, seed=1), 1)
    ranks = [batches(ShuffleSampler(50, batch_size=8, seed=1, rank=r, world_size=4)) for r in range(4)]
    assert [len(r) for r in ranks] == [2, 2, 2, 2]
    assert [ranks[r][i] for i in range(2) for r in range(4)] == plan + plan[:2]
