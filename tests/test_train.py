"""The training engine: objectives learn, resume is exact, torchrun matches one process, bad input is clear."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from internvideo.train.config import ConfigError, load_config
from internvideo.train import TrainingDiverged, train

sys.path.insert(0, str(Path(__file__).parent))
from trainworld import make_train_world  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_train_world(tmp_path_factory.mktemp("world"), n=16, bad=1)


def tiny(world: Path, out: Path, objective: str, model: str, *extra: str) -> list[str]:
    return [f"objective={objective}", f"model.name={model}", f"data.root={world}", "data.train=train.txt",
            "model.overrides.frame_interval=3", "data.hflip=false",
            "data.num_workers=0", f"run.out_dir={out}", "run.batch_size=4", "run.log_every=1",
            "run.progress=false", "optim.scale_lr=false", "optim.weight_decay=0.0", *extra]


def train_losses(result) -> list[float]:
    return [r["loss"] for r in result.history if r["kind"] == "train"]


def test_mae_pretraining_loss_falls(world, tmp_path):
    cfg = load_config(None, tiny(world, tmp_path, "mae", "videomae_tiny_pretrain", "run.epochs=8",
                                 "optim.lr=3e-3", "model.overrides.mask_ratio=0.75", "optim.warmup_steps=2",
                                 "model.overrides.norm_pix_loss=false"))  # noise patches are unpredictable
    result = train(cfg)
    losses = train_losses(result)
    assert len(losses) == 32
    assert sum(losses[-4:]) / 4 < 0.9 * sum(losses[:4]) / 4, losses
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "curves.png"):
        assert (tmp_path / name).exists()
    assert list((tmp_path / "tensorboard").iterdir())
    assert result.checkpoint and (result.checkpoint / "model.safetensors").exists()


def test_classification_learns_and_reports_skips(world, tmp_path, caplog):
    cfg = load_config(None, tiny(world, tmp_path, "classify", "videomae_tiny", "data.val=val.txt",
                                 "run.epochs=30", "optim.lr=1e-3", "optim.warmup_steps=10", "run.eval_every=40",
                                 "data.scale=[0.5, 1.0]", "model.overrides.init_scale=1.0"))
    with caplog.at_level("WARNING"):
        result = train(cfg)
    losses = train_losses(result)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert result.best_metric is not None and result.best_metric > 60  # percent; 2 classes: chance is 50
    assert "unreadable video(s) skipped" in caplog.text and "broken0.mp4" in caplog.text


def test_linear_probe_trains_only_the_head(world, tmp_path):
    cfg = load_config(None, tiny(world, tmp_path, "linear_probe", "videomae_tiny", "run.epochs=1",
                                 "optim.lr=1e-2"))
    from internvideo.train.objectives import make_objective

    objective = make_objective(cfg)
    torch.manual_seed(cfg.run.seed)  # train() seeds the same way before building the model
    before = {k: v.clone() for k, v in objective.build_model().state_dict().items()}
    result = train(cfg, objective)
    after = result.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"head.weight", "head.bias"}


def test_union_of_label_sets(world, tmp_path):
    # A second list whose classes are the same names in another order: merged by name, not index.
    (world / "other_classes.txt").write_text("moving right\nmoving left\nspinning\n")
    (world / "other.txt").write_text("clip000.mp4 1\nclip001.mp4 0\nclip002.mp4 2\n")
    cfg = load_config(None, tiny(world, tmp_path, "classify", "videomae_tiny", "data.classes=classes.txt",
                                 "data.extra_train=[[other.txt, other_classes.txt]]"))
    from internvideo.train.objectives import ClassifyObjective

    obj = ClassifyObjective(cfg)
    assert obj.classes == ["moving left", "moving right", "spinning"]
    tail = obj.train_samples[-3:]
    assert [s.label for s in tail] == [0, 1, 2]  # clip000 is "moving left" in both lists
    assert obj.build_model().head.out_features == 3


RESUME_ARGS = ["run.epochs=3", "optim.lr=2e-3", "run.save_every=1", "run.keep_last=2", "model.overrides.mask_ratio=0.75",
               "optim.ema=0.9", "optim.clip_grad=1.0"]


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "internvideo.cli", "train", "--set", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def test_resume_after_sigkill_is_bit_identical(world, tmp_path):
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    ref = _run_cli(tiny(world, ref_dir, "mae", "videomae_tiny_pretrain", *RESUME_ARGS))
    assert ref.wait(timeout=300) == 0, ref.stdout.read().decode()
    proc = _run_cli(tiny(world, killed_dir, "mae", "videomae_tiny_pretrain", *RESUME_ARGS))
    ckpts = killed_dir / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once a few steps are saved, mid-epoch
        done = [p for p in ckpts.glob("step_*") if not p.name.endswith(".tmp")] if ckpts.exists() else []
        if any(p.name >= "step_0000005" for p in done):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _run_cli(tiny(world, killed_dir, "mae", "videomae_tiny_pretrain", *RESUME_ARGS))
    out = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, out
    final = "checkpoints/step_0000012/model.safetensors"
    a, b = load_file(str(ref_dir / final)), load_file(str(killed_dir / final))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ema_a = load_file(str(ref_dir / "checkpoints/step_0000012/ema.safetensors"))
    ema_b = load_file(str(killed_dir / "checkpoints/step_0000012/ema.safetensors"))
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert len(list(ckpts.glob("step_*"))) <= 2  # keep_last


def test_torchrun_two_processes_match_one(world, tmp_path):
    args = ["run.epochs=2", "optim.lr=2e-3", "model.overrides.mask_ratio=0.75"]
    one = load_config(None, tiny(world, tmp_path / "one", "mae", "videomae_tiny_pretrain", *args))
    single = train_losses(train(one))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    # Same global batch: 2 processes x 2 clips.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "internvideo.cli", "train", "--set",
           *tiny(world, tmp_path / "two", "mae", "videomae_tiny_pretrain", *args), "run.batch_size=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    rows = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    double = [r["loss"] for r in rows if r["kind"] == "train"]
    assert len(double) == len(single) == 8
    # Different ranks see different masks, so curves agree in level and trend, not bit for bit.
    assert abs(sum(double) / 8 - sum(single) / 8) < 0.05
    assert double[-1] < double[0] and single[-1] < single[0]


def test_nan_loss_stops_with_step_and_checkpoint(world, tmp_path):
    cfg = load_config(None, tiny(world, tmp_path, "mae", "videomae_tiny_pretrain", "run.epochs=4",
                                 "optim.lr=1e30", "run.save_every=1", "model.overrides.mask_ratio=0.75"))
    # The checkpoint of the weights that gave the NaN is set aside, never called "good" (issue #13, item 10).
    with pytest.raises(TrainingDiverged, match=r"non-finite loss .* at step \d+; .*(last good checkpoint is .*step_|"
                                               r"There is no good checkpoint).*run\.resume=false"):
        train(cfg)


def test_bf16_on_a_cpu_that_emulates_it_logs_one_warning(world, tmp_path, monkeypatch, caplog):
    from internvideo.models import hardware
    monkeypatch.setattr(hardware, "cpu_bf16", lambda: hardware.Bf16Support(native=False, capability="AVX2"))
    hardware._log_once.cache_clear()
    for precision, warned in (("auto", False), ("bf16", True)):  # auto: fp32 here
        caplog.clear()
        cfg = load_config(None, tiny(world, tmp_path / precision, "mae", "videomae_tiny_pretrain", "run.max_steps=1",
                                     f"run.precision={precision}"))
        with caplog.at_level("WARNING", logger=hardware.__name__):
            train(cfg)
        warnings = [r.getMessage() for r in caplog.records if r.name == hardware.__name__]
        assert warnings == (["bf16 requested, but this CPU emulates it (PyTorch CPU capability AVX2): "
                             "fp32 will be faster"] if warned else []), precision
    hardware._log_once.cache_clear()


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*valid keys of optim: lr, min_lr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"run.precision: 'fp8' is not one of \['fp32', 'bf16', 'fp16', 'auto'\]"):
        load_config(None, ["run.precision=fp8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective: mae\nrun:\n  batch_sise: 3\n")
    with pytest.raises(ConfigError, match="run.batch_sise"):
        load_config(bad)
    with pytest.raises(ConfigError, match="data.hflip: expected true/false"):
        load_config(None, ["data.hflip=maybe"])


def test_recipes_parse():
    for path in sorted((ROOT / "configs").glob("**/*.yaml")):
        load_config(path)


def test_contrastive_objective_learns(world, tmp_path):
    cfg = load_config(None, tiny(world, tmp_path, "contrastive", "internvideo_mm_tiny", "data.train=train.jsonl",
                                 "data.val=train.jsonl", "model.overrides.sampling=uniform", "run.epochs=5", "optim.lr=1e-3",
                                 "run.eval_every=1000",
                                 "model.overrides.mean=[0.481, 0.458, 0.408]", "model.overrides.std=[0.269, 0.261, 0.276]",
                                 "data.scale=[0.5, 1.0]"))
    result = train(cfg)
    losses = train_losses(result)
    assert sum(losses[-4:]) < sum(losses[:4]), losses
    caption = [r["caption"] for r in result.history if r["kind"] == "train"]
    assert caption[-1] < caption[0]
    assert result.metric_name == "r1" and result.best_metric is not None


def test_fsdp_two_processes_save_and_resume(world, tmp_path):
    import internvideo

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}

    def launch(epochs: int, port: int):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
               "-m", "internvideo.cli", "train", "--set",
               *tiny(world, tmp_path, "mae", "videomae_tiny_pretrain", f"run.epochs={epochs}", "optim.lr=2e-3",
                     "model.overrides.mask_ratio=0.75", "run.distributed=fsdp", "run.batch_size=2", "optim.ema=0.9",
                     "optim.clip_grad=1.0", "run.save_every=2")]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    launch(1, 29531)
    launch(2, 29532)  # resumes the sharded run from its full checkpoint
    import json

    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, 9))
    model = internvideo.load_model(tmp_path / "checkpoints" / "step_0000008")
    assert type(model).__name__ == "VideoMAEPretrain"


def test_trainer_uses_the_fused_adamw_and_matches_the_default():
    from internvideo.train.optim import adamw as _adamw
    torch.manual_seed(0)
    a = torch.nn.Linear(8, 4)
    b = torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    fused = _adamw([{"params": a.parameters(), "weight_decay": 0.05}], lr=1e-2)
    plain = torch.optim.AdamW([{"params": b.parameters(), "weight_decay": 0.05}], lr=1e-2)
    assert fused.defaults["fused"] and not plain.defaults.get("fused")
    x = torch.randn(16, 8)
    for _ in range(3):
        for model, opt in ((a, fused), (b, plain)):
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
