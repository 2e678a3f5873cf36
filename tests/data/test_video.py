"""Video re-ID pieces on their own: frame sampling (against torchreid's definitions), training clips, tracklet
pooling in chunks (against pooling all frames at once), the tracklet model wrapper, same-tracklet removal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.data import build_test_set, build_train_loader
from reid.data.datasets import TrackletRecord
from reid.data.datasets.base import SAME_TRACKLET, choose_protocol, image_ids
from reid.data.video import TrackletFrames, chunk_frames, evenly, random_frames, eval_frames
from reid.evaluation.extract import TrackletPool
from reid.evaluation.protocol import REMOVAL_RULES
from reid.modeling.video import FrameQuality, TrackletModel, pool_frames
from tests.data.test_data_standard import cfg_for
from tests.support import dataset_trees as trees


def torchreid_evenly(n: int, length: int) -> np.ndarray:
    """torchreid's VideoDataset 'evenly' indices (dataset.py), written out."""
    if n >= length:
        n -= n % length
        return np.arange(0, n, n / length).astype(int)
    return np.concatenate([np.arange(n), np.ones(length - n).astype(int) * (n - 1)])


@pytest.mark.parametrize("n", [1, 3, 4, 7, 8, 30, 31])
def test_frame_samplers_give_seq_len_frames_in_temporal_order(n):
    rng = np.random.default_rng(n)
    np.testing.assert_array_equal(evenly(n, 4), torchreid_evenly(n, 4))
    for sample in (random_frames, chunk_frames):
        idx = sample(n, 4, rng)
        assert len(idx) == 4 and idx.min() >= 0 and idx.max() < n and (np.diff(idx) >= 0).all()
    if n >= 4:  # one frame from each quarter of the tracklet, and without repeats for random
        chunks = chunk_frames(n, 4, rng)
        edges = np.arange(5) * n // 4  # chunk i holds frames edges[i] .. edges[i + 1] - 1
        assert (np.searchsorted(edges, chunks, side="right") - 1).tolist() == [0, 1, 2, 3]
        assert len(set(random_frames(n, 4, rng).tolist())) == 4
    record = TrackletRecord(tuple(f"f{i}.jpg" for i in range(n)), 1, 0)
    assert eval_frames(record, 0) == record.paths and len(eval_frames(record, 2)) == min(n, 2)


def test_training_clips_share_one_augmentation_per_tracklet_and_repeat_per_epoch(tmp_path):
    trees.write_mars(tmp_path)
    cfg = cfg_for(tmp_path, NAMES=["MARS"], TESTS=["MARS"])
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE, cfg.DATALOADER.SEQ_LEN = 4, 2, 2
    cfg.INPUT.REA.ENABLED = False
    loader, _ = build_train_loader(cfg)
    first = next(iter(loader))["images"]
    assert torch.equal(first, next(iter(loader))["images"])  # a function of (seed, epoch, batch) only
    dataset = loader.dataset
    keys = [(7, i) for i in range(len(dataset))]
    batch = dataset.__getitems__(keys)
    params = dataset.augmentation.draw(len(keys), torch.Generator().manual_seed(7))
    # Padded and cropped by the tracklet's one crop: the zero border is in the same place in each of its frames.
    for b in range(len(keys)):
        zero = batch["images"][b].abs().sum(1) < 1e-6 if params.crop[b].tolist() != [10, 10] else None
        if zero is not None:
            assert torch.equal(zero[0], zero[1])


def test_tracklet_pool_in_chunks_equals_pooling_all_frames_at_once():
    rng = torch.Generator().manual_seed(0)
    lengths = [3, 1, 7, 2]
    owner = torch.repeat_interleave(torch.arange(4), torch.tensor(lengths))
    emb, scores = torch.randn(len(owner), 5, generator=rng), 3 * torch.randn(len(owner), generator=rng)
    for with_scores in (False, True):
        pool = TrackletPool(4)
        for lo in range(0, len(owner), 3):  # chunks that split tracklets
            pool.add(owner[lo:lo + 3], emb[lo:lo + 3], scores[lo:lo + 3] if with_scores else None)
        expected = torch.stack([pool_frames(emb[owner == t][None], scores[owner == t][None] if with_scores
                                            else None)[0] for t in range(4)])
        torch.testing.assert_close(pool.result(), expected)
        assert pool.first_frames.tolist() == [0, 3, 4, 11]
    empty = TrackletPool(2)
    empty.add(torch.tensor([0]), emb[:1])
    with pytest.raises(ValueError, match="1 of 2 tracklets had no frame"):
        empty.result()


class FrameModel(torch.nn.Module):
    """Eval: a per-image embedding; train: a logits / features dict, as a meta-architecture returns."""

    def forward(self, images, pids=None, camids=None):
        emb = images.mean((2, 3))
        if not self.training:
            return emb
        return {"logits": [emb * pids[:, None]], "features": [emb], "head_weights": [1.0]}


def test_tracklet_model_pools_every_output_over_frames_with_the_frames_pids():
    frames = torch.randn(2, 3, 3, 4, 2)
    model = TrackletModel(FrameModel()).eval()
    torch.testing.assert_close(model(frames), frames.mean((3, 4)).mean(1))
    assert torch.equal(model(frames[:, 0]), frames[:, 0].mean((2, 3)))  # images pass through
    out = model.train()(frames, torch.tensor([2, 5]))
    torch.testing.assert_close(out["logits"][0], frames.mean((3, 4)).mean(1) * torch.tensor([[2.0], [5.0]]))
    assert out["head_weights"] == [1.0]
    attention = FrameQuality()
    assert torch.equal(attention(frames.flatten(0, 1) * 0 + 1), torch.zeros(6))  # starts as the average
    model.model.temporal_pool = attention
    attention.score.bias.data.fill_(1.0)
    attention.score.weight.data.normal_()
    pooled = model.eval()(frames)
    weights = torch.softmax(attention(frames.flatten(0, 1)).view(2, 3), 1)
    torch.testing.assert_close(pooled, (frames.mean((3, 4)) * weights[..., None]).sum(1))


def test_same_tracklet_removal_is_a_registered_rule_keyed_by_the_tracklets_frames(tmp_path):
    a, b = TrackletRecord(("x/1.jpg", "x/2.jpg"), 1, -1), TrackletRecord(("x/3.jpg",), 1, -1)
    assert image_ids([a, b, TrackletRecord(a.paths, 1, -1)]) == [0, 1, 0]
    protocol = choose_protocol([a], [a, b], cross_camera=True)
    assert protocol.name == SAME_TRACKLET and "tracklets have no camera id" in protocol.reason
    assert REMOVAL_RULES[SAME_TRACKLET].key == "image_ids"
    trees.write_dukevideo(tmp_path)
    cfg = cfg_for(tmp_path, TESTS=["DukeMTMCVideo"])
    cfg.TEST.CROSS_CAMERA = False
    test = build_test_set(cfg, "DukeMTMCVideo")
    assert test.protocol.name == SAME_TRACKLET and len(set(test.image_ids)) == len(test.records)


def test_tracklet_frames_subset_is_the_frames_of_those_tracklets():
    records = [TrackletRecord(tuple(f"t{t}_{i}.jpg" for i in range(t + 1)), t, 0) for t in range(4)]
    frames = TrackletFrames(records, None, 0)
    part = frames.subset([3, 1])
    assert part.frames == [(0, p) for p in records[3].paths] + [(1, p) for p in records[1].paths]
    assert len(TrackletFrames(records, None, 2)) == 1 + 2 + 2 + 2


@pytest.mark.parametrize("key, value, message", [("DATALOADER.SEQ_LEN", 0, "DATALOADER.SEQ_LEN must be at least 1"),
                                                 ("TEST.SEQ_LEN", -1, "TEST.SEQ_LEN must be >= 0"),
                                                 ("DATALOADER.SEQ_SAMPLE", "dense", "DATALOADER.SEQ_SAMPLE"),
                                                 ("MODEL.TEMPORAL_POOL", "max", "MODEL.TEMPORAL_POOL")])
def test_video_keys_are_validated(tmp_path, key, value, message):
    from reid.config.validation import validate
    from reid.utils.errors import ConfigError

    cfg = cfg_for(tmp_path)
    node, leaf = key.split(".")
    cfg[node][leaf] = value
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
