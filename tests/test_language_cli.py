"""``internvideo eval openset`` / ``eval qa`` from the command line, and their one-line user errors."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from internvideo import cli
from internvideo.factory import save_model
from internvideo.models.qa import VideoQA, VideoQAConfig
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)

TINY = dataclasses.replace(NAMED_CONFIGS["internvideo_mm_tiny"][1], caption_layers=0)


@pytest.fixture(scope="module")
def mm_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("mm")
    save_model(InternVideoMM(TINY), d)
    return d


def test_eval_openset(data_world, mm_dir, tmp_path, capsys):
    r = data_world.root
    out = tmp_path / "openset.json"
    code = cli.main(["eval", "openset", "--model", str(mm_dir), "--train", str(r / "openset_train.txt"),
                     "--val", str(r / "openset_val.txt"), "--data", str(r / "openset_test.txt"), "--steps", "20",
                     "--out", str(out), "--no-progress"])
    assert code == 0 and "AUROC" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["scores"]) == {"uncertainty", "msp", "energy", "max_logit"}
    assert result["num_test_unknown"] > 0 and result["num_known_classes"] == 8


def test_eval_openset_overlapping_class_lists(data_world, mm_dir, capsys):
    r = data_world.root
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "openset", "--model", str(mm_dir), "--train", str(r / "openset_train.txt"),
                  "--val", str(r / "openset_val.txt"), "--data", str(r / "openset_test.txt"),
                  "--classes", str(r / "classes.txt"), "--unknown", "appearing", "growing",
                  "--known", "growing", "shrinking", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err == "internvideo: error: classes listed as both known and unknown: growing"


def test_eval_qa_and_refusing_other_models(data_world, mm_dir, tmp_path, capsys):
    r = data_world.root
    torch.manual_seed(0)
    qa_dir = tmp_path / "qa"
    save_model(VideoQA(VideoQAConfig(answers=("red", "left", "circle"), width=32, heads=2, layers=1),
                       backbone=InternVideoMM(TINY)), qa_dir)
    out = tmp_path / "qa.json"
    assert cli.main(["eval", "qa", "--model", str(qa_dir), "--data", str(r / "qa_test.jsonl"), "--train",
                     str(r / "qa_train.jsonl"), "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["num_answers"] == 3 and result["num_out_of_vocabulary"] > 0 and "motion" in result["per_type"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "qa", "--model", str(mm_dir), "--data", str(r / "qa_test.jsonl"), "--no-progress"])
    assert e.value.code == 2 and "is not a QA model" in capsys.readouterr().err
