"""Videos decoded once into memory give the same items as decoding every time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internvideo.data import (DecodedVideos, DenseSampler, SegmentSampler, TrainTransformConfig,
                              VideoClassificationDataset, View, build_train_transform)
from internvideo.data import datasets as datasets_module
from internvideo.data import memory as memory_module


def _views():
    train = build_train_transform(TrainTransformConfig(img_size=32, hflip=False))
    return [View(DenseSampler(4, 2), train, name="mae"), View(SegmentSampler(3), train, name="clip")]


def test_decoded_once_and_identical_items(data_world, monkeypatch):
    calls = []
    real = memory_module.read_frames

    def counting(path, indices, **kw):
        calls.append(path)
        return real(path, indices, **kw)

    monkeypatch.setattr(memory_module, "read_frames", counting)
    lst = data_world.root / "train.txt"
    decoded = DecodedVideos().preload(VideoClassificationDataset(lst).videos)
    assert len(calls) == len(decoded) > 0
    plain = VideoClassificationDataset(lst, _views(), training=True, seed=5)
    cached = VideoClassificationDataset(lst, _views(), training=True, seed=5, decoded=decoded)

    def forbid(*a, **k):
        raise AssertionError("the dataset decoded a video that was in memory")

    for epoch in range(2):
        plain.set_epoch(epoch), cached.set_epoch(epoch)
        for i in range(len(plain)):
            a = plain[i]
            monkeypatch.setattr(datasets_module, "read_frames", forbid)
            b = cached[i]
            monkeypatch.setattr(datasets_module, "read_frames", real)
            for key in ("mae", "clip"):
                assert torch.equal(a[key], b[key])
            assert a["label"] == b["label"]
    assert len(calls) == len(decoded)  # nothing decoded twice


def test_memory_cap_and_mismatched_short_side(data_world):
    lst = data_world.root / "val.txt"
    videos = VideoClassificationDataset(lst).videos
    small = DecodedVideos(max_bytes=1).preload(videos)
    assert len(small) == 0 and small.nbytes == 0
    frames, fps = small.get(videos[0])  # still served, just not kept
    assert frames.shape[0] == 8 and fps > 0 and not frames.flags.writeable
    with pytest.raises(ValueError, match="short side"):
        VideoClassificationDataset(lst, decoded=DecodedVideos(short_side=16))
    assert np.array_equal(DecodedVideos(short_side=16).get(videos[0])[0].shape[1:3], (16, 16))


def test_keep_decoded_shares_one_decode_between_evaluations(data_world, monkeypatch):
    from internvideo.data import keep_decoded, recipe_view
    from internvideo import create_model

    lst = data_world.root / "val.txt"
    view = recipe_view(create_model("videomae_tiny", num_classes=3).input_recipe())
    plain = [VideoClassificationDataset(lst, view, training=False)[i]["video"] for i in range(3)]
    monkeypatch.setattr(memory_module, "_SHARED", {})  # a cache of this test's own, dropped after it
    calls = []
    real = memory_module.read_frames
    monkeypatch.setattr(memory_module, "read_frames", lambda p, i, **kw: calls.append(p) or real(p, i, **kw))
    monkeypatch.setattr(datasets_module, "read_frames", lambda *a, **k: pytest.fail("decoded outside the cache"))
    with keep_decoded():
        for _ in range(2):  # two evaluations of the same clips, datasets built without a cache of their own
            items = [VideoClassificationDataset(lst, view, training=False)[i]["video"] for i in range(3)]
            assert all(torch.equal(a, b) for a, b in zip(plain, items, strict=True))
    assert len(calls) == 3  # each video decoded once
    monkeypatch.setattr(datasets_module, "read_frames", real)
    assert memory_module.active_decoded_videos(None) is None  # outside the block, datasets decode as before
