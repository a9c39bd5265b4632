"""The ``internvideo`` command's data and evaluation sub-commands: synth, eval TASK, extract.

The task logic is tested in test_tasks.py / test_extract.py; here the command
line itself: every task is reachable under ``internvideo eval``, both spellings
of the two-word tasks work, each run prints its table and writes its JSON.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import internvideo
import internvideo.cli as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny synthetic world written by ``internvideo synth``."""
    out = tmp_path_factory.mktemp("synth") / "world"
    assert cli.main(["synth", str(out), "--videos", "30", "--size", "32", "--frames", "8", "--long", "1",
                     "--ava", "1", "--images", "2", "--seed", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    internvideo.save_model(internvideo.create_model("videomae_tiny"), root / "videomae")
    internvideo.save_model(internvideo.create_model("internvideo_mm_tiny", caption_layers=0), root / "mm")
    return root


def test_synth_writes_the_world(world, capsys):
    for name in ("classes.txt", "train.txt", "test.txt", "captions_test.jsonl", "mc_test.jsonl", "world.json",
                 "localization/activitynet.json", "ava/ava_train.csv", "image_text.jsonl"):
        assert (world / name).exists(), name
    assert len(list((world / "videos").glob("*.mp4"))) == 30
    assert json.loads((world / "world.json").read_text())["seed"] == 5


@pytest.mark.parametrize("task, model, data, expect", [
    ("recognition", "videomae", "test.txt", "top1"),
    ("linear-probe", "videomae", "test.txt", "top1"),
    ("linear_probe", "videomae", "test.txt", "top1"),
    ("zeroshot", "mm", "test.txt", "top1"),
    ("retrieval", "mm", "captions_test.jsonl", "t2v"),
    ("multiple-choice", "mm", "mc_test.jsonl", "accuracy"),
    ("multiple_choice", "mm", "mc_test.jsonl", "accuracy"),
])
def test_eval_task_prints_table_and_writes_json(world, models, tmp_path, capsys, task, model, data, expect):
    out = tmp_path / f"{task}.json"
    argv = ["eval", task, "--model", str(models / model), "--data", str(world / data), "--out", str(out),
            "--no-progress", "--batch-size", "4"]
    if task.startswith("linear"):
        argv += ["--train", str(world / "train.txt")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"results written to {out}" in printed
    results = json.loads(out.read_text())
    assert expect in results and results["model"] == str(models / model)
    assert "chance" in results or "chance_R@1" in results
    assert results["chance" if "chance" in results else "chance_R@1"] > 0


def test_eval_lists_every_task():
    proc = subprocess.run([sys.executable, "-m", "internvideo.cli", "eval", "--help"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for task in ("recognition", "linear-probe", "zeroshot", "retrieval", "multiple-choice"):
        assert task in proc.stdout


def test_eval_unknown_task_and_missing_model_are_clear(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "detection", "--model", "x", "--data", "y"])
    assert e.value.code == 2
    assert "invalid choice: 'detection'" in capsys.readouterr().err
    # A user error: one line and exit code 2 (a traceback only with --debug).
    assert cli.main(["eval", "recognition", "--model", str(tmp_path / "nothing"), "--data",
                     str(world / "test.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("internvideo: error: no model at") and len(err.strip().splitlines()) == 1
    with pytest.raises(FileNotFoundError, match="no model at"):
        cli.main(["--debug", "eval", "recognition", "--model", str(tmp_path / "nothing"), "--data",
                  str(world / "test.txt")])


def test_extract_writes_features_and_resumes(world, models, tmp_path, capsys):
    out = tmp_path / "features"
    argv = ["extract", "--model", str(models / "mm"), "--videos", str(world / "test.txt"), "--out", str(out),
            "--no-progress"]
    assert cli.main(argv) == 0
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    test_videos = (world / "test.txt").read_text().split("\n")
    assert len(index) == len([v for v in test_videos if v.strip()])
    assert {r["status"] for r in index} == {"ok"} and all(r["shape"] == [32] for r in index)
    capsys.readouterr()
    assert cli.main(argv) == 0  # a rerun skips what is done
    assert [json.loads(line)["status"] for line in (out / "index.jsonl").read_text().splitlines()] == \
        ["exists"] * len(index)
