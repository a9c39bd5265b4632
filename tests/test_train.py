"""The training engine: objectives learn, resume is exact, torchrun matches one process, bad input is clear."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from internvideo.data import datasets as datasets_module
from internvideo.data import memory
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
    with pytest.raises(ConfigError, match=r"run.precision: 'fp8' is not one of \['fp32', 'bf16', 'auto'\]"):
        load_config(None, ["run.precision=fp8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective: mae\nrun:\n  batch_sise: 3\n")
    with pytest.raises(ConfigError, match="run.batch_sise"):
        load_config(bad)
    with pytest.raises(ConfigError, match="data.hflip: expected true/false"):
        load_config(None, ["data.hflip=maybe"])


@pytest.mark.parametrize("old,new", [
    ("data.feature_cache=c", "fusion.feature_cache"), ("data.qa_answers=20", "qa.answers"),
    ("data.features=f", "localize.features"), ("data.tiou=[0.5]", "localize.tiou"),
    ("data.train_subset=x", "localize.train_subset"), ("optim.caption_weight=2", "contrastive.caption_weight"),
    ("optim.edl_annealing_epochs=1", "openset.edl_annealing_epochs")])
def test_objective_settings_moved_to_their_sections(old, new, tmp_path):
    with pytest.raises(ConfigError, match=f"config key '{old.split('=')[0]}' has moved: set {new}"):
        load_config(None, [old])
    section, key = new.split(".")
    value = old.split("=")[1]
    cfg = load_config(None, [f"{new}={value}"])
    assert getattr(getattr(cfg, section), key) not in (None, ())


def test_an_unknown_objective_is_refused_before_the_run_directory(tmp_path):
    from internvideo.train import OBJECTIVES

    cfg = load_config(None, ["objective=maee", f"run.out_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"objective: 'maee' is not one of \['mae', 'classify'"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    assert "localize" in OBJECTIVES and "ava" in OBJECTIVES


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


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    return make_train_world(tmp_path_factory.mktemp("small_world"), n=8, bad=1, size=32, frames=8)


def tiny_classify(small_world: Path, out: Path, *extra: str) -> list[str]:
    return ["objective=classify", "model.name=videomae_tiny", f"data.root={small_world}", "data.train=train.txt",
            "model.overrides.frame_interval=2", "data.hflip=false", "data.num_workers=0", f"run.out_dir={out}",
            "run.batch_size=4", "run.log_every=1", "run.progress=false", "optim.scale_lr=false", "run.epochs=3",
            *extra]


def steps_on_disk(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


@pytest.mark.parametrize("override, key", [
    ("run.batch_size=-4", "run.batch_size"), ("run.batch_size=0", "run.batch_size"),
    ("optim.accum_steps=0", "optim.accum_steps"), ("run.save_every=0", "run.save_every"),
    ("run.log_every=0", "run.log_every"), ("run.keep_last=-1", "run.keep_last"), ("optim.lr=-1", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"), ("data.label_smoothing=1.5", "data.label_smoothing"),
    ("model.overrides.mask_ratio=0", "model.overrides.mask_ratio"),
    ("model.overrides.std=[0,0,0]", "model.overrides.std"),
])
def test_numeric_config_values_are_range_checked_at_load(override, key):
    # Before: batch_size=-4 trained 0 steps with exit 0; zeros crashed with ZeroDivisionError after a step.
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, [override])


def test_malformed_set_value_names_the_override():
    with pytest.raises(ConfigError, match=r"--set data\.train=\[a, b: the value is not valid YAML"):
        load_config(None, ["data.train=[a, b"])


def test_keep_last_zero_keeps_all_and_the_final_checkpoint_is_never_pruned(small_world, tmp_path):
    train(load_config(None, tiny_classify(small_world, tmp_path / "all", "run.max_steps=3", "run.save_every=1",
                                          "run.keep_last=0")))
    # Before: keep_last=0 deleted every checkpoint, the final one included.
    assert steps_on_disk(tmp_path / "all") == ["step_0000001", "step_0000002", "step_0000003"]
    result = train(load_config(None, tiny_classify(small_world, tmp_path / "one", "run.max_steps=3", "run.save_every=1",
                                          "run.keep_last=1")))
    assert steps_on_disk(tmp_path / "one") == ["step_0000003"]
    summary = json.loads((tmp_path / "one/summary.json").read_text())
    assert Path(summary["checkpoint"]).exists() and result.checkpoint.name == "step_0000003"


_HOLD = """
import sys, time
from pathlib import Path
from internvideo.train.setup import Dist, run_dir_lock
with run_dir_lock(Path(sys.argv[1]), Dist()):
    Path(sys.argv[2]).touch()
    time.sleep(60)
"""


def test_a_second_run_on_a_locked_directory_is_refused(small_world, tmp_path):
    import internvideo
    from internvideo.train.setup import RunDirLocked

    out = tmp_path / "run"
    out.mkdir()
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(Path(internvideo.__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out), str(ready)], env=env)
    try:
        for _ in range(600):  # at most 60 s for the holder to start
            if ready.exists() or holder.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists()
        # Before: the second run resumed from the first one's checkpoints and both exited 0.
        with pytest.raises(RunDirLocked, match=f"in use by another run \\(pid {holder.pid} on host"):
            train(load_config(None, tiny_classify(small_world, out, "run.max_steps=1")))
        assert not (out / "checkpoints").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up; the lock file stays, and the kernel frees the lock
        holder.wait()
    assert (out / "run.lock").exists()
    train(load_config(None, tiny_classify(small_world, out, "run.max_steps=1")))
    assert (out / "checkpoints/step_0000001").exists() and not (out / "run.lock").exists()


def test_divergence_sets_the_bad_checkpoint_aside_and_says_how_to_start_fresh(small_world, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as e:
        train(load_config(None, tiny_classify(small_world, out, "run.epochs=3", "optim.lr=1e10", "run.save_every=1")))
    msg = str(e.value)
    # Before: step_1 (weights ~1e10) was named "the last good checkpoint" and auto-resumed from.
    assert "step_0000001.diverged" in msg and "run.resume=false" in msg and "There is no good checkpoint" in msg
    assert steps_on_disk(out) == ["step_0000001.diverged"]
    result = train(load_config(None, tiny_classify(small_world, out, "run.max_steps=2", "optim.lr=1e-4")))
    assert result.steps == 2 and [r["step"] for r in result.history if r["kind"] == "train"] == [1, 2]


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(small_world, tmp_path, caplog):
    out = tmp_path / "run"
    train(load_config(None, tiny_classify(small_world, out, "run.max_steps=2", "run.save_every=1", "run.keep_last=0")))
    weights = out / "checkpoints/step_0000002/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])  # the disk filled up / the copy was cut
    (out / "checkpoints/step_0000009.tmp").mkdir()  # an unfinished write (disk-full case)
    with caplog.at_level(logging.WARNING):
        result = train(load_config(None, tiny_classify(small_world, out, "run.max_steps=3", "run.save_every=1",
                                              "run.keep_last=0")))
    # Before: SafetensorError "incomplete metadata", no path, and no fallback.
    assert "skipping damaged checkpoint" in caplog.text and "step_0000002" in caplog.text
    assert "resumed from" in caplog.text or result.steps == 3
    assert result.steps == 3 and not (out / "checkpoints/step_0000009.tmp").exists()
    assert "removing the unfinished checkpoint" in caplog.text


def test_resume_keeps_total_seconds_and_does_not_repeat_metric_rows(small_world, tmp_path):
    import shutil

    out = tmp_path / "run"
    train(load_config(None, tiny_classify(small_world, out, "run.max_steps=4", "run.save_every=2")))
    first = json.loads((out / "summary.json").read_text())
    # As if killed after logging steps 3-4 but before their checkpoint was written.
    shutil.rmtree(out / "checkpoints/step_0000004")
    train(load_config(None, tiny_classify(small_world, out, "run.max_steps=4", "run.save_every=2")))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # before: [1, 2, 3, 4, 3, 4]
    summary = json.loads((out / "summary.json").read_text())
    # Before: only the last segment (steps 3-4) was counted.
    assert summary["seconds"] > summary["seconds_this_segment"]
    assert summary["seconds"] >= 0.4 * first["seconds"]


def test_skip_summaries_name_the_epoch_they_belong_to(small_world, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="internvideo.train"):
        # 2 steps per epoch: 0, 1, 2 (part)
        train(load_config(None, tiny_classify(small_world, tmp_path / "run", "run.max_steps=5")))
    labels = [r.getMessage().split(":")[0] for r in caplog.records if "unreadable video(s) skipped" in r.getMessage()]
    assert labels == sorted(set(labels)) and set(labels) <= {"epoch 0", "epoch 1", "epoch 2"} and "epoch 0" in labels


def test_class_names_are_saved_with_the_checkpoint_and_unknown_lines_left_out(small_world, tmp_path):
    from internvideo import load_model

    lst = (small_world / "train.txt").read_text() + "clip000.mp4 -1\n"
    (small_world / "train_unknown.txt").write_text(lst)
    result = train(load_config(None, tiny_classify(small_world, tmp_path / "run", "data.train=train_unknown.txt",
                                          "data.classes=classes.txt", "run.max_steps=1")))
    model = load_model(result.checkpoint)
    assert model.config.class_names == ("moving left", "moving right") and model.config.num_classes == 2


def test_a_label_beyond_the_classes_is_an_error_at_load(small_world, tmp_path):
    from internvideo.data import AnnotationError

    (small_world / "train_bad.txt").write_text("clip000.mp4 0\nclip001.mp4 7\n")
    # Before: a bare IndexError inside the training loop.
    with pytest.raises(AnnotationError, match=r"train_bad\.txt:2: label 7 is out of range"):
        train(load_config(None, tiny_classify(small_world, tmp_path / "run", "data.train=train_bad.txt",
                                              "data.classes=classes.txt", "run.max_steps=1")))


def classify_run(world, out, *extra):
    return train(load_config(None, [
        "objective=classify", "model.name=videomae_tiny", f"data.root={world}", "data.train=train.txt",
        "data.val=val.txt", "model.overrides.frame_interval=3", "data.hflip=false", "data.num_workers=0",
        f"run.out_dir={out}", "run.batch_size=4", "run.log_every=1", "run.progress=false", "run.max_steps=6",
        "run.eval_every=3", "optim.scale_lr=false", *extra]))


@pytest.mark.slow
def test_decode_once_gives_the_same_run(world, tmp_path, monkeypatch):
    plain = classify_run(world, tmp_path / "plain")
    memory._SHARED.clear()
    decoded = []
    real = memory.read_frames
    monkeypatch.setattr(memory, "read_frames", lambda p, i, **k: decoded.append(p) or real(p, i, **k))

    def no_decoding(*a, **k):
        raise AssertionError("a video in memory was decoded again")

    monkeypatch.setattr(datasets_module, "read_frames", no_decoding)
    once = classify_run(world, tmp_path / "once", "data.decode_once=true")
    assert [r["loss"] for r in plain.history if r["kind"] == "train"] == \
           [r["loss"] for r in once.history if r["kind"] == "train"]
    for a, b in zip(plain.model.state_dict().values(), once.model.state_dict().values()):
        assert torch.equal(a, b)
    assert len(decoded) == len(set(decoded))  # every readable video decoded exactly once
    again = classify_run(world, tmp_path / "again", "data.decode_once=true")  # a second run in the process: no decoding
    assert len(decoded) == len(set(decoded)) and again.steps == once.steps


def test_best_checkpoint_is_kept_and_named(world, tmp_path, capsys):
    import json

    result = classify_run(world, tmp_path / "run")
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
