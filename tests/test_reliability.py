"""Regression tests of the bad-input probe (issue #13): no silent wrong results, no lost data, clean errors.

Each test reproduces one failure the probe saw and would fail on the code before its fix.
docs/reliability.md lists the guarantees with the test that backs each.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eval_standins import ColourClassifier, ColourCLIP, make_colour_set
from internvideo.tasks import evaluate_recognition, evaluate_retrieval, evaluate_zeroshot, linear_probe
from internvideo.train.config import ConfigError
from internvideo.tasks.metrics import NonFiniteError, correct_rank, retrieval_ranks, topk_accuracy
from internvideo.errors import UsageError

QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_colour_set(tmp_path_factory.mktemp("colours"))


# ----------------------------------------------------------------------------- 1. non-finite scores


def test_nan_scores_never_count_as_hits():
    scores = np.array([[np.nan, 0.1, 0.2], [0.3, np.nan, 0.1], [np.inf, 0.0, 0.0]])
    # Before: a NaN true-class score had nothing ">=" it, so it ranked first (a hit).
    assert correct_rank(scores, [0, 1, 0]).tolist() == [3, 3, 3]
    assert topk_accuracy(np.full((4, 5), np.nan), [0, 1, 2, 3], ks=(1,))[1] == 0.0
    t2v, v2t = retrieval_ranks(torch.full((3, 4), float("nan")), torch.randn(3, 4))
    assert t2v.tolist() == [3, 3, 3] and v2t.tolist() == [3, 3, 3]
    t2v, v2t = retrieval_ranks(torch.full((3, 4), float("nan")), torch.randn(3, 4), dsl=True)
    assert t2v.tolist() == [3, 3, 3] and v2t.tolist() == [3, 3, 3]


def _nan_classifier() -> ColourClassifier:
    model = ColourClassifier()
    model.centres[0, 0] = float("nan")  # one NaN weight in the "head"
    return model


def test_recognition_with_nan_weight_fails_then_scores_zero(colours):
    with pytest.raises(NonFiniteError, match="8 of 8 test videos gave non-finite"):
        evaluate_recognition(_nan_classifier(), colours["list"], **QUIET)
    result = evaluate_recognition(_nan_classifier(), colours["list"], allow_nonfinite=True, **QUIET)
    assert result["top1"] == 0.0 and result["num_nonfinite"] == 8  # was 100 %
    assert evaluate_recognition(ColourClassifier(), colours["list"], **QUIET)["num_nonfinite"] == 0


def test_linear_probe_with_nan_features_fails(colours):
    with pytest.raises(NonFiniteError, match="training videos"):
        linear_probe(_nan_classifier_features(), colours["list"], colours["list"], **QUIET)


def _nan_classifier_features() -> ColourClassifier:
    model = ColourClassifier()
    model.forward_features = lambda video: torch.full((video.shape[0], 4, 3), float("nan"))
    return model


class _NaNCLIP(ColourCLIP):
    def encode_video(self, video):
        out = super().encode_video(video)
        return out + self.bad  # one NaN in the "projection"

    def __init__(self):
        super().__init__()
        self.bad = torch.tensor([float("nan"), 0.0, 0.0])


def test_zeroshot_and_retrieval_with_nan_projection(colours):
    with pytest.raises(NonFiniteError, match="8 of 8 test videos"):
        evaluate_zeroshot(_NaNCLIP(), colours["list"], colours["classes"], **QUIET)
    zs = evaluate_zeroshot(_NaNCLIP(), colours["list"], colours["classes"], allow_nonfinite=True, **QUIET)
    assert zs["top1"] == 0.0 and zs["num_nonfinite"] == 8
    with pytest.raises(NonFiniteError, match="8 of 8 videos"):
        evaluate_retrieval(_NaNCLIP(), colours["captions"], **QUIET)
    r = evaluate_retrieval(_NaNCLIP(), colours["captions"], dsl=True, allow_nonfinite=True, **QUIET)
    assert r["t2v"]["R@1"] == 0.0 and r["v2t"]["R@1"] == 0.0  # was 100 % both ways
    assert r["dsl"]["t2v"]["R@1"] == 0.0 and r["num_nonfinite"] == {"videos": 8, "captions": 0}


# ----------------------------------------------------------------------------- 2. labels: -1, gaps, out of range


def _write(path, text, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def test_unknown_label_is_left_out_of_training_not_the_last_class(tmp_path, caplog):
    from internvideo.data.labels import merge_label_sets

    lst = _write(tmp_path / "named/train.txt", "a.mp4 0\nb.mp4 1\nc.mp4 -1\n")
    _write(tmp_path / "named/classes.txt", "jump\nrun\n")
    with caplog.at_level("WARNING"):
        names, samples = merge_label_sets([(lst, None)])
    # Before: c.mp4 was trained as names[-1] == "run".
    assert names == ["jump", "run"] and [s.label for s in samples] == [0, 1]
    assert "1 training line(s) labelled -1" in caplog.text


def test_unnamed_labels_keep_their_numbers(tmp_path):
    from internvideo.data.labels import merge_label_sets

    labels = [9, 3, 7, 8, 0, 6, 2, 5, -1]
    lst = _write(tmp_path / "train.txt", "".join(f"v{i}.mp4 {y}\n" for i, y in enumerate(labels)))
    names, samples = merge_label_sets([(lst, None)])
    # Before: ['9', '3', '7', '8', '0', '6', '2', '5', '-1'] and scrambled indices.
    assert names == [str(i) for i in range(10)]
    assert [s.label for s in samples] == labels[:-1]


def test_label_beyond_classes_names_file_and_line(tmp_path):
    from internvideo.data import AnnotationError
    from internvideo.data.labels import merge_label_sets

    lst = _write(tmp_path / "train.txt", "a.mp4 0\n\nb.mp4 2\n")
    _write(tmp_path / "classes.txt", "jump\nrun\n")
    with pytest.raises(AnnotationError, match=r"train\.txt:3: label 2 is out of range: there are 2 classes"):
        merge_label_sets([(lst, None)])


def test_recognition_maps_labels_by_the_saved_class_names(colours, tmp_path):
    from internvideo.data import read_classes
    from internvideo.tasks.recognition import align_labels, classification_dataset

    model = ColourClassifier()
    names = read_classes(colours["classes"])
    # A test list written against another classes.txt order: labels are indices into *that* file.
    root = colours["list"].parent
    order = names[::-1]
    lines = [f"{root}/videos/{n}_0.mp4 {order.index(n)}" for n in names]
    _write(tmp_path / "rev/test.txt", "\n".join(lines) + "\n")
    _write(tmp_path / "rev/classes.txt", "\n".join(order) + "\n")
    model.config.class_names = tuple(names)  # as a checkpoint of `internvideo train` stores them
    assert evaluate_recognition(model, tmp_path / "rev/test.txt", **QUIET)["top1"] == 100.0
    model.config.class_names = None  # without names the list's indices are trusted (and are wrong here)
    assert evaluate_recognition(model, tmp_path / "rev/test.txt", **QUIET)["top1"] == 0.0
    ds = classification_dataset(model, tmp_path / "rev/test.txt")
    with pytest.raises(UsageError, match="not among the model's"):
        align_labels(ds, ("red", "green"))


# ----------------------------------------------------------------------------- 3, 4, 13, 14. checkpoints


def test_our_weights_without_config_are_refused(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError, save_model

    save_model(internvideo.create_model("videomae_tiny"), tmp_path / "ckpt")
    (tmp_path / "ckpt/config.json").unlink()
    # Before: detected as an official VideoMAE (1 head, 224 px, 16 frames) and evaluated without a word.
    with pytest.raises(CheckpointError, match="model.safetensors without its config.json"):
        internvideo.load_model(tmp_path / "ckpt")


def test_head_count_is_never_guessed_from_shapes(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError

    model = internvideo.create_model("videomae_tiny")  # width 64: no official size
    torch.save(model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="number of attention heads cannot be read.*num_heads="):
        internvideo.load_model(tmp_path / "w.pth")
    loaded = internvideo.load_model(tmp_path / "w.pth", num_heads=4, img_size=32, num_frames=4)
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(video), model.eval()(video))


def test_pretrained_of_another_family_is_an_error(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError, save_model

    save_model(internvideo.create_model("internvideo_mm_tiny"), tmp_path / "mm")
    # Before: "pretrained" with 0 of 32 tensors matched, a warning, and training from random weights.
    with pytest.raises(CheckpointError, match="fills only 0 of the 32 tensors.*allow_partial"):
        internvideo.create_model("videomae_tiny", pretrained=tmp_path / "mm")
    internvideo.create_model("videomae_tiny", pretrained=tmp_path / "mm", allow_partial=True)
    save_model(internvideo.create_model("videomae_tiny_pretrain"), tmp_path / "mae")
    internvideo.create_model("videomae_tiny", pretrained=tmp_path / "mae")  # the usual pretrain -> fine-tune


def test_truncated_safetensors_names_the_file(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError, save_model

    save_model(internvideo.create_model("videomae_tiny"), tmp_path / "ckpt")
    weights = tmp_path / "ckpt/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"ckpt/model\.safetensors: not a readable safetensors file"):
        internvideo.load_model(tmp_path / "ckpt")


class _Hostile:
    def __reduce__(self):
        import os

        return (os.system, ("echo hostile > /dev/null",))


def test_hostile_pickle_refusal_says_it_holds_code(tmp_path):
    import internvideo
    from internvideo.checkpoints import CheckpointError

    torch.save({"model": {"w": _Hostile()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as e:
        internvideo.load_model(tmp_path / "evil.pth")
    assert "contains pickled code" in str(e.value) and "nothing in it ran" in str(e.value)
    assert "allow_torchscript" not in str(e.value)  # before: wrong advice for a pickle


# ----------------------------------------------------------------------------- 5. duplicates in evaluation lists


def test_duplicate_lines_are_counted_once_and_reported(colours, tmp_path):
    from internvideo.tasks import recognition, retrieval

    lines = colours["list"].read_text().splitlines()
    dup = _write(colours["list"].parent / "dup.txt", "\n".join(lines + lines[:3]) + "\n")  # 11 lines, 8 videos
    result = evaluate_recognition(ColourClassifier(), dup, **QUIET)
    assert result["num_samples"] == 8 and result["num_duplicates"] == 3  # before: 11 samples
    assert "duplicate lines dropped" in recognition.results_table(result)
    clash = _write(colours["list"].parent / "clash.txt", lines[0] + "\n" + lines[0].rsplit(" ", 1)[0] + " 3\n")
    with pytest.raises(UsageError, match="is listed with labels 0 and 3"):
        evaluate_recognition(ColourClassifier(), clash, **QUIET)

    records = colours["captions"].read_text().splitlines()
    dup_caps = _write(colours["list"].parent / "dup.jsonl", "\n".join(records + records[:2]) + "\n")
    r = evaluate_retrieval(ColourCLIP(), dup_caps, **QUIET)
    assert r["num_captions"] == 16 and r["num_duplicates"] == 4  # before: 20 caption queries
    assert "duplicate pairs dropped" in retrieval.results_table(r)


# ----------------------------------------------------------------------------- 1, 9. extract


@pytest.fixture(scope="module")
def ext_videos(tmp_path_factory):
    from internvideo.data import write_video

    root = tmp_path_factory.mktemp("ext")
    for name, level, length in (("a.mp4", 60, 12), ("a.mkv", 180, 12), ("b.mp4", 120, 16)):
        write_video(root / name, np.full((length, 32, 40, 3), level, dtype=np.uint8), fps=8, options={"crf": "0"})
    return root


def _index(out):
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def test_extract_videos_differing_by_extension_get_their_own_files(ext_videos, tmp_path):
    from internvideo.tasks import extract as E

    out = tmp_path / "f"
    E.extract_features(ColourClassifier(), [ext_videos / "a.mp4", ext_videos / "a.mkv", ext_videos / "b.mp4"], out,
                       root=ext_videos, **QUIET)
    rows = _index(out)
    # Before: both a.* wrote a.npy, two "ok" rows pointing at one file (the second overwrote the first).
    assert [r["features"] for r in rows] == ["a.mp4.npy", "a.mkv.npy", "b.npy"]
    assert not np.allclose(np.load(out / "a.mp4.npy"), np.load(out / "a.mkv.npy"))


def test_extract_rerun_recomputes_empty_files_and_keeps_window_fields(ext_videos, tmp_path):
    from internvideo.tasks import extract as E

    out = tmp_path / "w"
    videos = [ext_videos / "a.mp4", ext_videos / "b.mp4"]
    E.extract_features(ColourClassifier(), videos, out, root=ext_videos, window=8, stride=4, **QUIET)
    first = _index(out)
    (out / "b.npy").write_bytes(b"")  # a 0-byte file left by a full disk
    summary = E.extract_features(ColourClassifier(), videos, out, root=ext_videos, window=8, stride=4, **QUIET)
    assert summary["extracted"] == 1 and summary["existing"] == 1  # before: EOFError
    rows = _index(out)
    assert rows[0]["status"] == "exists" and rows[1]["status"] == "ok"
    for key in ("window_frames", "stride_frames", "fps", "num_frames"):  # before: missing from reused rows
        assert rows[0][key] == first[0][key]


def test_extract_marks_nan_features_as_errors(ext_videos, tmp_path):
    from internvideo.tasks import extract as E

    summary = E.extract_features(_nan_classifier_features(), [ext_videos / "b.mp4"], tmp_path / "n", **QUIET)
    row = _index(tmp_path / "n")[0]
    # Before: NaN features written with status "ok".
    assert row["status"] == "error" and "non-finite" in row["error"] and summary["extracted"] == 0
    assert not list((tmp_path / "n").rglob("*.npy"))


# ----------------------------------------------------------------------------- 12, 13. error presentation


def _cli_error(capsys, *argv) -> str:
    from internvideo import cli

    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("internvideo: error: ") and len(err.splitlines()) == 1, err
    return err


def test_cli_user_errors_are_one_line_exit_2(capsys, tmp_path, colours):
    import internvideo
    from internvideo import cli
    from internvideo.checkpoints import save_model

    # Before: every one of these printed a full traceback.
    assert "run.batch_size: must be >= 1, got -4" in _cli_error(capsys, "train", "--set", "run.batch_size=-4")
    assert "--set data.train=[a" in _cli_error(capsys, "train", "--set", "data.train=[a")
    assert str(tmp_path / "none.yaml") in _cli_error(capsys, "train", str(tmp_path / "none.yaml"))
    bad = _write(tmp_path / "bad.txt", b"videos/red_0.mp4 0\nvideos/caf\xe9.mp4 1\n")
    assert "bad.txt:2: not valid UTF-8" in _cli_error(capsys, "eval", "recognition", "--model", "videomae_tiny",
                                                      "--data", str(bad), "--no-progress")
    err = _cli_error(capsys, "eval", "recognition", "--model", "internvideo_mm_tiny", "--data", str(colours["list"]),
                     "--no-progress")
    assert "video-language model: use `eval zeroshot`" in err  # before: forward() missing 'text_ids'
    save_model(internvideo.create_model("videomae_tiny"), tmp_path / "ckpt")
    (tmp_path / "ckpt/model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    assert "ckpt/model.safetensors: not a readable safetensors file" in _cli_error(
        capsys, "eval", "recognition", "--model", str(tmp_path / "ckpt"), "--data", str(colours["list"]))
    with pytest.raises(ConfigError):
        cli.main(["--debug", "train", "--set", "run.batch_size=-4"])  # --debug: the traceback


def test_cli_bugs_still_show_the_traceback(monkeypatch):
    from internvideo import cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_models", broken)
    with pytest.raises(KeyError):
        cli.main(["models"])


def test_utf8_bom_is_stripped_from_lists_and_classes(tmp_path):
    from internvideo.data import read_classes, read_classification_list

    lst = _write(tmp_path / "l.txt", "\ufeffvideos/a.mp4 0\n".encode())
    cls = _write(tmp_path / "c.txt", "\ufeffjump\nrun\n".encode())
    # Before: the first path started with U+FEFF (file not found) and the first class name silently did too.
    assert read_classification_list(lst)[0].path == str(tmp_path / "videos/a.mp4")
    assert read_classes(cls) == ["jump", "run"]


def test_mask_ratio_hiding_nothing_is_a_clear_error():
    from internvideo.models.videomae import tube_mask

    with pytest.raises(ValueError, match="hides no token"):  # before: a reshape error in the loss
        tube_mask(1, (2, 4, 4), 0.0)


def test_multiple_choice_with_nan_projection_fails(colours):
    from internvideo.tasks import evaluate_multiple_choice

    with pytest.raises(NonFiniteError, match="8 of 8 questions"):
        evaluate_multiple_choice(_NaNCLIP(), colours["mc"], **QUIET)
    result = evaluate_multiple_choice(_NaNCLIP(), colours["mc"], allow_nonfinite=True, **QUIET)
    assert result["accuracy"] == 0.0 and result["chance"] == pytest.approx(100 / 3)
