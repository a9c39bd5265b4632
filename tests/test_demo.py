"""``internvideo demo``: the whole pipeline runs and writes every promised file.

Scores are not asserted (the small presets train for seconds); the default
preset's numbers are recorded in docs/demo.md.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import internvideo.cli as cli
from internvideo.demo import PRESETS, run_demo
from internvideo.demo.report import format_table

STAGE_CURVES = ("mae", "contrastive", "classify", "fusion", "fusion_gated", "classify_mm", "openset")
FAMILIES = {"Action recognition", "Zero-shot action recognition", "Video-text retrieval", "Zero-shot multiple choice",
            "Open-set recognition"}


def check_outputs(out: Path, preset: str) -> dict:
    for name in ("results.json", "results.md", "reconstructions.png", "retrieval.png",
                 *(f"curves_{s}.png" for s in STAGE_CURVES)):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = json.loads((out / "results.json").read_text())
    assert report["preset"]["name"] == preset
    rows = report["table"]
    from internvideo.demo.pipeline import TASK_STAGES

    core = [r for r in rows if r["family"] in FAMILIES]  # task-family stages add their own rows
    assert len(core) == 16 and {r["family"] for r in core} == FAMILIES
    for r in rows:
        assert 0.0 <= r["value"] <= 100.0 and 0.0 < r["chance"] < 100.0, r
    assert [s["stage"] for s in report["stages"]] == ["world", "mae", "contrastive", "classify", "classify_mae",
                                                      "fusion", "fusion_gated", "late_fusion", "classify_mm",
                                                      "evaluate", "openset",
                                                      *(n for n, _, _ in TASK_STAGES), "figures"]
    assert [c["claim"][:3] for c in report["claims"]] == ["(a)", "(b)", "(c)", "(d)", "(e)"]
    assert all(s["seconds"] >= 0 and s["summary"] for s in report["stages"])
    md = (out / "results.md").read_text()
    assert format_table(rows, markdown=True) in md and "Chance (%)" in md
    assert "The paper's claims, in miniature" in md and md.count("| (") == 5
    # Each stage's recipe is kept and re-runnable with `internvideo train`.
    for s in STAGE_CURVES:
        assert (out / "runs" / s / "recipe.yaml").is_file()
    check_openset_recipe(out)
    return report


def check_openset_recipe(out: Path) -> None:
    """The open-set stage is the classify stage's recipe on the known-class lists, with the official EDL loss."""
    from internvideo.train.config import load_config

    classify, openset = (load_config(out / "runs" / s / "recipe.yaml") for s in ("classify", "openset"))
    assert openset.objective == "openset" and (openset.openset.loss, openset.openset.kl) == ("log", False)
    assert (openset.data.train, openset.data.val) == ("openset_train.txt", "openset_val.txt")
    assert openset.model == classify.model and openset.optim == classify.optim
    assert dataclasses.replace(openset.run, out_dir=classify.run.out_dir) == classify.run
    assert dataclasses.replace(openset.data, train=classify.data.train, val=classify.data.val,
                               classes=classify.data.classes) == classify.data
    # Training never sees a held-out clip: the known-class list holds no held-out label.
    world = json.loads((out / "world" / "world.json").read_text())
    classes = (out / "world" / "classes.txt").read_text().split("\n")
    held_out = {classes.index(name) for name in world["held_out_classes"]}
    labels = {int(line.split()[-1]) for line in (out / "world" / "openset_train.txt").read_text().splitlines()}
    assert labels and not labels & held_out


def test_demo_smoke_preset_runs_end_to_end(tmp_path, capsys):
    report = run_demo(tmp_path / "demo", "smoke", progress=False)
    check_outputs(tmp_path / "demo", "smoke")
    printed = capsys.readouterr().out
    from internvideo.demo.pipeline import TASK_STAGES

    n = 12 + len(TASK_STAGES)
    assert f"[{n}/{n}] figures" in printed and "Task family (paper)" in printed
    assert report["wall_seconds"] > 0


@pytest.mark.slow
def test_demo_quick_from_the_command_line(tmp_path, capsys):
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "quick"), "--seed", "1", "--no-progress"]) == 0
    report = check_outputs(tmp_path / "quick", "quick")
    assert report["seed"] == 1 and report["preset"]["num_videos"] == PRESETS["quick"].num_videos


def test_demo_presets_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--quick", "--smoke"])
    assert "not allowed with argument" in capsys.readouterr().err
