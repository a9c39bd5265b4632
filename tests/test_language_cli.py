"""``internvideo eval openset`` / ``eval qa`` from the command line, and their one-line user errors."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from internvideo import cli
from internvideo.factory import save_model
from internvideo.models.qa import VideoQA, VideoQAConfig
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from mm_helpers import eval_clip, one_thread  # noqa: F401  (autouse fixture)

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
    assert cli.main(["eval", "openset", "--model", str(mm_dir), "--train", str(r / "openset_train.txt"),
                     "--val", str(r / "openset_val.txt"), "--data", str(r / "openset_test.txt"),
                     "--classes", str(r / "classes.txt"), "--unknown", "appearing", "growing",
                     "--known", "growing", "shrinking", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "internvideo: error: classes listed as both known and unknown: growing"


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
    assert cli.main(["eval", "qa", "--model", str(mm_dir), "--data", str(r / "qa_test.jsonl"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("internvideo: error: ") and "is not a QA model" in err and len(err.splitlines()) == 1


def test_eval_openset_scores_the_models_own_head(data_world, tmp_path):
    """A classifier of the known classes is scored from its own logits, its head rows mapped by saved label."""
    from internvideo.data import read_classification_list
    from internvideo.factory import create_model
    from internvideo.models.openset import SCORES
    from internvideo.tasks.openset import evaluate_openset, score_logits
    from internvideo.train.heads import fit_openset_head

    r = data_world.root
    torch.manual_seed(0)
    rows = ("7", "6", "5", "4", "3", "2", "1", "0")  # head row i predicts label 7 - i
    model = create_model("videomae_tiny", num_classes=8, class_names=rows).eval()
    result = evaluate_openset(model, r / "openset_train.txt", r / "openset_val.txt", r / "openset_test.txt",
                              progress=False)
    assert result["head"] == "model" and result["num_known_classes"] == 8
    # By hand: logits in label order, labels as rows, the same thresholds rule.
    lists = {s: read_classification_list(r / f"openset_{s}.txt") for s in ("val", "test")}
    with torch.no_grad():
        logits = {s: torch.cat([model(eval_clip(model, x.path)) for x in v])[:, list(range(7, -1, -1))]
                  for s, v in lists.items()}
    labels = {s: np.asarray([x.label for x in v]) for s, v in lists.items()}
    expected = score_logits({k: (logits["val"], logits["test"]) for k in SCORES}, labels["val"], labels["test"], 8)
    for score in SCORES:
        assert result["scores"][score]["auroc"] == pytest.approx(expected["scores"][score]["auroc"], abs=1e-6)
        assert result["scores"][score]["closed_set_accuracy"] == pytest.approx(
            expected["scores"][score]["closed_set_accuracy"])
    fitted = evaluate_openset(model, r / "openset_train.txt", r / "openset_val.txt", r / "openset_test.txt",
                              head="fit", steps=5, progress=False, fit=fit_openset_head)
    assert fitted["head"] == "fit"
    with pytest.raises(TypeError, match="need fit="):  # tasks never train: the caller passes the fitting
        evaluate_openset(model, r / "openset_train.txt", r / "openset_val.txt", r / "openset_test.txt",
                         head="fit", steps=5, progress=False)


def test_eval_openset_own_head_errors(data_world, mm_dir, tmp_path, capsys):
    from internvideo.factory import create_model

    r = data_world.root
    lists = ["--train", str(r / "openset_train.txt"), "--val", str(r / "openset_val.txt"),
             "--data", str(r / "openset_test.txt"), "--no-progress"]
    assert cli.main(["eval", "openset", "--model", str(mm_dir), "--head", "model", *lists]) == 2
    assert "no classifier head over the known classes" in capsys.readouterr().err
    wrong = tmp_path / "wrong"
    save_model(create_model("videomae_tiny", num_classes=8, class_names=tuple("01234569")), wrong)
    assert cli.main(["eval", "openset", "--model", str(wrong), "--head", "model", *lists]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("internvideo: error: the model's head predicts labels")
    assert "[0, 1, 2, 3, 4, 5, 6, 9]" in err

