"""Regression tests of the bad-input probe (issue #13) for training: config ranges, checkpoints, locks, logs.

Tiny runs (videomae_tiny, 8 clips of 32 px, 2 steps per epoch) on the two-class trainer world.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import sys
from pathlib import Path

import pytest

from internvideo.train import TrainingDiverged, load_config, train
from internvideo.train.config import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from trainworld import make_train_world  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_train_world(tmp_path_factory.mktemp("world"), n=8, bad=1, size=32, frames=8)


def tiny(world: Path, out: Path, *extra: str) -> list[str]:
    return ["objective=classify", "model.name=videomae_tiny", f"data.root={world}", "data.train=train.txt",
            "model.overrides.frame_interval=2", "data.hflip=false", "data.num_workers=0", f"run.out_dir={out}",
            "run.batch_size=4", "run.log_every=1", "run.progress=false", "optim.scale_lr=false", "run.epochs=3",
            *extra]


def steps_on_disk(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


# ----------------------------------------------------------------------------- 6, 13. config values


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


def test_zero_std_in_a_transform_is_a_clear_error():
    from internvideo.data.transforms import Normalize

    with pytest.raises(ValueError, match="positive std"):
        Normalize(std=(0.0, 0.0, 0.0))


# ----------------------------------------------------------------------------- 7. keep_last


def test_keep_last_zero_keeps_all_and_the_final_checkpoint_is_never_pruned(world, tmp_path):
    train(load_config(None, tiny(world, tmp_path / "all", "run.max_steps=3", "run.save_every=1", "run.keep_last=0")))
    # Before: keep_last=0 deleted every checkpoint, the final one included.
    assert steps_on_disk(tmp_path / "all") == ["step_0000001", "step_0000002", "step_0000003"]
    result = train(load_config(None, tiny(world, tmp_path / "one", "run.max_steps=3", "run.save_every=1",
                                          "run.keep_last=1")))
    assert steps_on_disk(tmp_path / "one") == ["step_0000003"]
    summary = json.loads((tmp_path / "one/summary.json").read_text())
    assert Path(summary["checkpoint"]).exists() and result.checkpoint.name == "step_0000003"


# ----------------------------------------------------------------------------- 8. run-directory lock


_HOLD = """
import sys, time
from pathlib import Path
from internvideo.train.setup import Dist, run_dir_lock
with run_dir_lock(Path(sys.argv[1]), Dist()):
    Path(sys.argv[2]).touch()
    time.sleep(60)
"""


def test_a_second_run_on_a_locked_directory_is_refused(world, tmp_path):
    from internvideo.train.setup import RunDirLocked

    out = tmp_path / "run"
    out.mkdir()
    ready = tmp_path / "ready"
    import internvideo

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
            train(load_config(None, tiny(world, out, "run.max_steps=1")))
        assert not (out / "checkpoints").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up; the lock file stays, and the kernel frees the lock
        holder.wait()
    assert (out / "run.lock").exists()
    train(load_config(None, tiny(world, out, "run.max_steps=1")))
    assert (out / "checkpoints/step_0000001").exists() and not (out / "run.lock").exists()


# ----------------------------------------------------------------------------- 10. divergence guard


def test_divergence_sets_the_bad_checkpoint_aside_and_says_how_to_start_fresh(world, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as e:
        train(load_config(None, tiny(world, out, "run.epochs=3", "optim.lr=1e10", "run.save_every=1")))
    msg = str(e.value)
    # Before: step_1 (weights ~1e10) was named "the last good checkpoint" and auto-resumed from.
    assert "step_0000001.diverged" in msg and "run.resume=false" in msg and "There is no good checkpoint" in msg
    assert steps_on_disk(out) == ["step_0000001.diverged"]
    result = train(load_config(None, tiny(world, out, "run.max_steps=2", "optim.lr=1e-4")))
    assert result.steps == 2 and [r["step"] for r in result.history if r["kind"] == "train"] == [1, 2]


# ----------------------------------------------------------------------------- 11. corrupt latest checkpoint


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(world, tmp_path, caplog):
    out = tmp_path / "run"
    train(load_config(None, tiny(world, out, "run.max_steps=2", "run.save_every=1", "run.keep_last=0")))
    weights = out / "checkpoints/step_0000002/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])  # the disk filled up / the copy was cut
    (out / "checkpoints/step_0000009.tmp").mkdir()  # an unfinished write (disk-full case)
    with caplog.at_level(logging.WARNING):
        result = train(load_config(None, tiny(world, out, "run.max_steps=3", "run.save_every=1",
                                              "run.keep_last=0")))
    # Before: SafetensorError "incomplete metadata", no path, and no fallback.
    assert "skipping damaged checkpoint" in caplog.text and "step_0000002" in caplog.text
    assert "resumed from" in caplog.text or result.steps == 3
    assert result.steps == 3 and not (out / "checkpoints/step_0000009.tmp").exists()
    assert "removing the unfinished checkpoint" in caplog.text


# ----------------------------------------------------------------------------- smaller: logs across resume


def test_resume_keeps_total_seconds_and_does_not_repeat_metric_rows(world, tmp_path):
    import shutil

    out = tmp_path / "run"
    train(load_config(None, tiny(world, out, "run.max_steps=4", "run.save_every=2")))
    first = json.loads((out / "summary.json").read_text())
    # As if killed after logging steps 3-4 but before their checkpoint was written.
    shutil.rmtree(out / "checkpoints/step_0000004")
    train(load_config(None, tiny(world, out, "run.max_steps=4", "run.save_every=2")))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # before: [1, 2, 3, 4, 3, 4]
    summary = json.loads((out / "summary.json").read_text())
    # Before: only the last segment (steps 3-4) was counted.
    assert summary["seconds"] > summary["seconds_this_segment"]
    assert summary["seconds"] >= 0.4 * first["seconds"]


def test_skip_summaries_name_the_epoch_they_belong_to(world, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="internvideo.train"):
        train(load_config(None, tiny(world, tmp_path / "run", "run.max_steps=5")))  # 2 steps per epoch: 0, 1, 2 (part)
    labels = [r.getMessage().split(":")[0] for r in caplog.records if "unreadable video(s) skipped" in r.getMessage()]
    assert labels == sorted(set(labels)) and set(labels) <= {"epoch 0", "epoch 1", "epoch 2"} and "epoch 0" in labels


# ----------------------------------------------------------------------------- 2. labels in training


def test_class_names_are_saved_with_the_checkpoint_and_unknown_lines_left_out(world, tmp_path):
    from internvideo import load_model

    lst = (world / "train.txt").read_text() + "clip000.mp4 -1\n"
    (world / "train_unknown.txt").write_text(lst)
    result = train(load_config(None, tiny(world, tmp_path / "run", "data.train=train_unknown.txt",
                                          "data.classes=classes.txt", "run.max_steps=1")))
    model = load_model(result.checkpoint)
    assert model.config.class_names == ("moving left", "moving right") and model.config.num_classes == 2


def test_a_label_beyond_the_classes_is_an_error_at_load(world, tmp_path):
    from internvideo.data import AnnotationError

    (world / "train_bad.txt").write_text("clip000.mp4 0\nclip001.mp4 7\n")
    # Before: a bare IndexError inside the training loop.
    with pytest.raises(AnnotationError, match=r"train_bad\.txt:2: label 7 is out of range"):
        train(load_config(None, tiny(world, tmp_path / "run", "data.train=train_bad.txt", "data.classes=classes.txt",
                                     "run.max_steps=1")))
