"""Per-video scores (--save-scores) and score-level ensembling (internvideo eval ensemble)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eval_standins import ColourClassifier, ColourCLIP, make_colour_set
from internvideo.cli import main as cli_main
from internvideo.errors import UserError
from internvideo.tasks import evaluate_recognition, evaluate_zeroshot
from internvideo.tasks.common import VideoScores, load_scores, save_scores
from internvideo.tasks.ensemble import evaluate_ensemble

CLASSES = ["a", "b", "c"]
VIDEOS = ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
LABELS = np.array([0, 1, 2, 1])
# Model A: right on v0, v1; v2's true class second; v3 wrong (class 2 first, 1 last).
A = np.array([[.7, .2, .1], [.1, .8, .1], [.5, .1, .4], [.3, .1, .6]], dtype=np.float32)
# Model B: right on v2, v3; v0's true class second.
B = np.array([[.3, .6, .1], [.6, .3, .1], [.1, .2, .7], [.1, .8, .1]], dtype=np.float32)


def write(path, scores, videos=VIDEOS, labels=LABELS, classes=CLASSES, model="m"):
    return save_scores(path, VideoScores(scores, np.asarray(labels), list(videos), list(classes), model, "recognition"))


def test_save_and_load_round_trip(tmp_path):
    write(tmp_path / "a.npz", A, model="runs/a")
    s = load_scores(tmp_path / "a.npz")
    assert np.array_equal(s.scores, A) and s.labels.tolist() == LABELS.tolist()
    assert s.videos == VIDEOS and s.class_names == CLASSES and s.model == "runs/a" and s.task == "recognition"
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:  # plain arrays, readable without this package
        assert str(z["format"]) == "internvideo-scores-1" and z["videos"].tolist() == VIDEOS
    with pytest.raises(UserError, match="must end in .npz"):
        write(tmp_path / "a.json", A)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(UserError, match="other.npz: not a scores file"):
        load_scores(tmp_path / "other.npz")


def test_ensemble_metrics_by_hand(tmp_path):
    write(tmp_path / "a.npz", A)
    write(tmp_path / "b.npz", B)
    r = evaluate_ensemble([tmp_path / "a.npz", tmp_path / "b.npz"], save_scores=tmp_path / "ab.npz")
    # A: top-1 hits v0, v1 -> 50 %; top-5 (all 3 classes) -> 100 %. B: hits v2, v3 -> 50 %.
    assert [x["top1"] for x in r["inputs"]] == [50.0, 50.0] and [x["top5"] for x in r["inputs"]] == [100.0, 100.0]
    # mean: v0 [.5,.4,.1] -> 0 right; v1 [.35,.55,.1] -> 1 right; v2 [.3,.15,.55] -> 2 right; v3 [.2,.45,.35] -> 1 right
    assert r["ensemble"]["top1"] == 100.0 and r["ensemble"]["num_samples"] == 4
    np.testing.assert_allclose(load_scores(tmp_path / "ab.npz").scores, (A + B) / 2, rtol=1e-6)
    # weights 3:1 -> v2 [.4,.125,.475] right, v3 [.25,.275,.475] wrong, v0 [.6,.3,.1] right, v1 [.225,.675,.1] right
    w = evaluate_ensemble([tmp_path / "a.npz", tmp_path / "b.npz"], [3, 1])
    assert w["ensemble"]["top1"] == 75.0 and w["weights"] == [3.0, 1.0]


def test_videos_are_matched_by_path_in_any_order(tmp_path):
    order = [2, 0, 3, 1]
    write(tmp_path / "a.npz", A)
    write(tmp_path / "b.npz", B[order], videos=[VIDEOS[i] for i in order], labels=LABELS[order])
    r = evaluate_ensemble([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert r["ensemble"]["top1"] == 100.0 and r["inputs"][1]["top1"] == 50.0


def test_mismatches_name_the_first_difference(tmp_path):
    a = write(tmp_path / "a.npz", A)
    cases = {
        "classes.npz": (dict(classes=["a", "x", "c"]), r"classes.npz: class lists differ .* position 1 \('x' vs 'b'"),
        "fewer.npz": (dict(videos=VIDEOS[:3] + ["v9.mp4"]), r"fewer.npz: no scores for video v3.mp4 \(in .*a.npz\)"),
        "labels.npz": (dict(labels=[0, 1, 0, 1]), r"labels.npz: video v2.mp4 has label 0, .*a.npz says 2"),
    }
    for name, (kw, message) in cases.items():
        b = write(tmp_path / name, B, **kw)
        with pytest.raises(UserError, match=message):
            evaluate_ensemble([a, b])
    with pytest.raises(UserError, match="2 inputs need 2 weights"):
        evaluate_ensemble([a, a], [1.0])
    with pytest.raises(UserError, match="at least two"):
        evaluate_ensemble([a])


def test_nonfinite_scores_never_count_as_hits(tmp_path):
    bad = A.copy()
    bad[0] = np.nan
    write(tmp_path / "a.npz", bad)
    write(tmp_path / "b.npz", B)
    r = evaluate_ensemble([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert r["ensemble"]["num_nonfinite"] == 1 and r["ensemble"]["top1"] == 75.0  # v0 counts wrong


def test_save_scores_from_recognition_and_zeroshot_then_ensemble_cli(tmp_path, capsys):
    colours = make_colour_set(tmp_path / "colours")
    rec = evaluate_recognition(ColourClassifier(), colours["list"], progress=False, save_scores=tmp_path / "r.npz",
                               model_id="colour-classifier")
    s = load_scores(tmp_path / "r.npz")
    assert rec["scores_file"] == str(tmp_path / "r.npz")
    assert s.scores.shape == (8, 4) and np.allclose(s.scores.sum(1), 1.0)  # softmax probabilities
    assert s.model == "colour-classifier" and s.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(s.videos) == 8 and all(v.endswith(".mp4") for v in s.videos)
    # top-1 recomputed from the saved scores agrees with the evaluation's
    assert 100.0 * np.mean(s.scores.argmax(1) == s.labels) == rec["top1"]
    zs = evaluate_zeroshot(ColourCLIP(), colours["list"], progress=False, save_scores=tmp_path / "z.npz")
    z = load_scores(tmp_path / "z.npz")
    assert z.task == "zeroshot" and z.class_names == s.class_names and zs["num_samples"] == 8
    out = tmp_path / "ens.json"
    assert cli_main(["eval", "ensemble", str(tmp_path / "r.npz"), str(tmp_path / "z.npz"), "--weights", "1", "2",
                     "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "ensemble top-1 / top-5 (%)" in table
    saved = json.loads(out.read_text())
    mixed = (s.scores + 2 * z.scores) / 3
    assert saved["ensemble"]["top1"] == 100.0 * np.mean(mixed.argmax(1) == s.labels)


def test_cli_mismatch_is_one_line_error(tmp_path, capsys):
    a = write(tmp_path / "a.npz", A)
    b = write(tmp_path / "b.npz", B, classes=["a", "b", "z"])
    assert cli_main(["eval", "ensemble", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internvideo: error:") and "position 2" in err[0]
