"""``data.decode_once``: training from videos decoded once into memory is the same training."""

from __future__ import annotations

import pytest
import torch

from internvideo.data import datasets as datasets_module
from internvideo.data import memory
from internvideo.train import train
from internvideo.train.config import load_config

from trainworld import make_train_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_train_world(tmp_path_factory.mktemp("world"), n=16, bad=1)


def _run(world, out, *extra):
    return train(load_config(None, [
        "objective=classify", "model.name=videomae_tiny", f"data.root={world}", "data.train=train.txt",
        "data.val=val.txt", "model.overrides.frame_interval=3", "data.hflip=false", "data.num_workers=0",
        f"run.out_dir={out}", "run.batch_size=4", "run.log_every=1", "run.progress=false", "run.max_steps=6",
        "run.eval_every=3", "optim.scale_lr=false", *extra]))


@pytest.mark.slow
def test_decode_once_gives_the_same_run(world, tmp_path, monkeypatch):
    plain = _run(world, tmp_path / "plain")
    memory._SHARED.clear()
    decoded = []
    real = memory.read_frames
    monkeypatch.setattr(memory, "read_frames", lambda p, i, **k: decoded.append(p) or real(p, i, **k))

    def no_decoding(*a, **k):
        raise AssertionError("a video in memory was decoded again")

    monkeypatch.setattr(datasets_module, "read_frames", no_decoding)
    once = _run(world, tmp_path / "once", "data.decode_once=true")
    assert [r["loss"] for r in plain.history if r["kind"] == "train"] == \
           [r["loss"] for r in once.history if r["kind"] == "train"]
    for a, b in zip(plain.model.state_dict().values(), once.model.state_dict().values()):
        assert torch.equal(a, b)
    assert len(decoded) == len(set(decoded))  # every readable video decoded exactly once
    again = _run(world, tmp_path / "again", "data.decode_once=true")  # a second run in the process: no decoding
    assert len(decoded) == len(set(decoded)) and again.steps == once.steps
