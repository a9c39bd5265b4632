"""Trainer frictions: decoding once (the same run), the best checkpoint kept and named, evaluation on the console."""

from __future__ import annotations

from pathlib import Path

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


def test_best_checkpoint_is_kept_and_named(world, tmp_path, capsys):
    import json

    result = _run(world, tmp_path / "run")
    best = tmp_path / "run" / "checkpoints" / "best"
    info = json.loads((best / "best.json").read_text())
    evals = [r for r in result.history if r["kind"] == "eval"]
    assert len(evals) == 2 and info["value"] == result.best_metric == max(r["top1"] for r in evals)
    assert info["step"] == result.best_step == next(r["step"] for r in evals if r["top1"] == result.best_metric)
    assert result.best_checkpoint == best and (best / "model.safetensors").is_file()
    line = result.describe()
    assert f"best val top1 {result.best_metric:.1f} % at step {result.best_step}" in line and "last checkpoint" in line
    out = capsys.readouterr()
    assert "step 3: val" in out.out + out.err  # periodic evaluation reaches the console


def test_no_metric_says_so(world, tmp_path):
    result = train(load_config(None, [
        "objective=mae", "model.name=videomae_tiny_pretrain", f"data.root={world}", "data.train=train.txt",
        "model.overrides.frame_interval=3", "model.overrides={norm_pix_loss: false}", "data.num_workers=0",
        f"run.out_dir={tmp_path}", "run.batch_size=4", "run.progress=false", "run.max_steps=2"]))
    assert result.best_checkpoint is None and "no validation metric" in result.describe()
    assert "None" not in result.describe()


def test_missing_data_names_the_key(tmp_path, monkeypatch, capsys):
    from internvideo.cli import main
    from internvideo.train.config import ConfigError

    monkeypatch.chdir(tmp_path)  # no ./world here
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "classify.yaml"
    assert main(["train", str(tiny)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("internvideo: error: data.root: no such folder 'world'") and "\n" not in err
    (tmp_path / "world").mkdir()
    with pytest.raises(ConfigError, match="data.train: no such file 'train.txt' in data.root"):
        train(load_config(tiny, []))


def test_best_step_is_found_when_the_log_rounds_the_metric():
    from internvideo.train.loop import _best_step

    best = 100 * 37 / 120  # 30.8333..., logged as 30.833333
    history = [{"kind": "eval", "top1": 12.5, "step": 300}, {"kind": "train", "top1": best, "step": 400},
               {"kind": "eval", "top1": round(best, 6), "step": 600}, {"kind": "eval", "top1": 30.0, "step": 900}]
    assert _best_step(history, "top1", best) == 600
    assert _best_step(history, "top1", None) is None and _best_step(history, None, best) is None
