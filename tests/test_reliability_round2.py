"""Regression tests of the second probe (issue #26): each test reproduces one failure class the probe saw (the
listed example and at least one case of the same class it did not list) and would fail on the code before its fix.
docs/reliability.md lists the guarantees with the test that backs each (R2). The server's security tests live in
tests/test_search_server.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import internvideo
from eval_standins import ColourCLIP, make_colour_set
from internvideo.tasks import evaluate_retrieval, evaluate_zeroshot
from internvideo.errors import UserError
from internvideo.tasks.metrics import NonFiniteError

from mm_helpers import one_thread  # noqa: F401  (autouse fixture)
from search_helpers import search_model, search_world, video_folder  # noqa: F401

QUIET = dict(progress=False)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_colour_set(tmp_path_factory.mktemp("colours"))


# ----------------------------------------------------------------------------- non-finite model outputs


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_logit_scale_is_the_same_error_for_every_metric(colours, raw):
    """Retrieval read a NaN logit_scale and scored 0 % without a word; zero-shot said why. Now both raise the
    same NonFiniteError (an infinite scale was clamped to a plausible 100 before)."""
    model = ColourCLIP()
    model.logit_scale.data.fill_(raw)
    with pytest.raises(NonFiniteError, match="logit_scale"):
        evaluate_retrieval(model, colours["captions"], **QUIET)
    with pytest.raises(NonFiniteError, match="logit_scale"):
        evaluate_zeroshot(model, colours["list"], colours["classes"], **QUIET)
    model.logit_scale.data.fill_(1000.0)  # finite and huge: clamped at 100 as CLIP does, not an error
    assert evaluate_zeroshot(model, colours["list"], colours["classes"], **QUIET)["top1"] == 100.0


def test_qa_with_nan_answer_scores_is_an_error_not_the_first_answer():
    """argmax over NaN logits returns the first NaN's index, which could be the right answer."""
    from internvideo.data import QASample
    from internvideo.tasks.qa import QAFeatures, predict_answers

    class NaNQA(nn.Module):
        answers = ["yes", "no"]

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward_head(self, q, pad, v):
            return torch.full((len(q), 2), float("nan"))

    samples = [QASample("a.mp4", "is it?", "yes"), QASample("b.mp4", "is it?", "yes")]
    features = QAFeatures(torch.zeros(1, 1, 1, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 4),
                          torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(NonFiniteError, match="2 of 2 questions"):
        predict_answers(NaNQA(), samples, features=features, progress=False)


def _nan_after(model, calls: int, value: float = float("nan")):
    """Make ``model.encode_video`` give ``value`` from its ``calls``-th call on (one call per window here)."""
    real, seen = model.encode_video, []

    def encode_video(video):
        seen.append(1)
        out = real(video)
        return out if len(seen) <= calls else torch.full_like(out, value)

    model.encode_video = encode_video
    return model


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_index_refuses_non_finite_embeddings_per_video(search_world, search_model, tmp_path, value):
    """NaN rows were stored as good ones and search then said "no results" (exit 0). Now the video is marked
    failed and counted, and no non-finite row reaches the index."""
    from internvideo.search import Searcher, build_index

    folder = video_folder(search_world, tmp_path / "videos", clips=3, long=False)
    out = tmp_path / "idx"
    # One window per forward pass; clip 0 and 1 are fine, clip 2 is non-finite.
    model = _nan_after(internvideo.load_model(search_model), calls=2, value=value)
    summary = build_index(model, folder, out, model_source=search_model, window=1.0, stride=1.0, batch_size=1,
                          precision="fp32", progress=False)
    assert summary["indexed"] == 2 and summary["failed_now"] == 1
    assert [f["video"] for f in summary["failed"]] == ["clips/clip_00002.mp4"]
    assert "non-finite" in summary["failed"][0]["error"]
    searcher = Searcher(out)
    try:
        ids, x = searcher.store.embeddings()
        assert np.isfinite(x).all() and len(ids) == summary["windows"] == 2
    finally:
        searcher.close()


def test_index_cli_exits_non_zero_when_every_video_fails(search_world, search_model, tmp_path, capsys):
    from internvideo.search.__main__ import main as search_main

    bad = tmp_path / "nan_model"
    model = internvideo.load_model(search_model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    internvideo.save_model(model, bad)
    folder = video_folder(search_world, tmp_path / "videos", clips=2, long=False)
    code = search_main(["index", str(folder), "--model", str(bad), "--out", str(tmp_path / "idx"), "--window", "1",
                        "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "all 2 videos to index failed" in err and "non-finite" in err


def test_search_with_a_nan_text_projection_is_an_error(search_world, search_model, tmp_path):
    from internvideo.search import Searcher, build_index

    folder = video_folder(search_world, tmp_path / "videos", clips=2, long=False)
    build_index(internvideo.load_model(search_model), folder, tmp_path / "idx", model_source=search_model,
                window=1.0, precision="fp32", progress=False)
    searcher = Searcher(tmp_path / "idx")
    try:
        assert searcher.search("a red circle", 2)
        real = searcher.model.encode_text
        searcher.model.encode_text = lambda ids: real(ids) * float("nan")
        with pytest.raises(NonFiniteError, match="query"):
            searcher.search("a blue square", 2)  # was: [] ("no results", exit 0)
        searcher.model.encode_text = lambda ids: real(ids) * float("inf")
        with pytest.raises(NonFiniteError, match="query"):
            searcher.search("a green triangle", 2)
    finally:
        searcher.close()


# ----------------------------------------------------------------------------- checkpoint config.json: no guesses


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    mae = internvideo.save_model(internvideo.create_model("videomae_tiny", num_classes=3, img_size=32, num_frames=4),
                                 base / "mae")
    mm = internvideo.save_model(internvideo.create_model("internvideo_mm_tiny"), base / "mm")
    return {"mae": mae, "mm": mm}


def _edited(src, dest, edit):
    """A copy of checkpoint ``src`` whose config.json went through ``edit(meta)`` (or is ``edit`` when bytes)."""
    import shutil

    shutil.copytree(src, dest)
    cfg = dest / "config.json"
    if isinstance(edit, bytes):
        cfg.write_bytes(edit)
    else:
        meta = json.loads(cfg.read_text())
        edit(meta)
        cfg.write_text(json.dumps(meta))
    return dest


def _load_error(path) -> str:
    from internvideo.checkpoints import CheckpointError

    with pytest.raises(CheckpointError) as e:
        internvideo.load_model(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("which, fields", [("mae", ["img_size"]), ("mae", ["num_frames"]),
                                           ("mae", ["img_size", "num_frames"]), ("mae", ["sampling", "mean"]),
                                           ("mm", ["vision_layers"]), ("mm", ["std"])])
def test_a_missing_config_field_is_an_error_naming_it(tiny_dirs, tmp_path, which, fields):
    """Before: img_size/num_frames fell back to 224 px / 16 frames and the demo classifier scored 0 %."""
    path = _edited(tiny_dirs[which], tmp_path / "ckpt", lambda m: [m["config"].pop(f) for f in fields])
    message = _load_error(path)
    assert "missing" in message and all(repr(f) in message for f in fields)


def test_naming_only_fields_may_be_missing(tiny_dirs, tmp_path):
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt", lambda m: m["config"].pop("class_names"))
    assert internvideo.load_model(path).config.img_size == 32


@pytest.mark.parametrize("field", ["num_frame", "imgsize", "Img_size"])
def test_an_unknown_config_field_is_an_error(tiny_dirs, tmp_path, field):
    """Before: a misspelt field only warned, and its default was used."""
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt", lambda m: m["config"].update({field: 4}))
    assert f"unknown VideoMAEConfig field(s) {field!r}" in _load_error(path)


def test_a_known_rename_is_read_under_its_new_name(tiny_dirs, tmp_path):
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt",
                   lambda m: m["config"].update(all_frames=m["config"].pop("num_frames")))
    assert internvideo.load_model(path).config.num_frames == 4
    both = _edited(tiny_dirs["mae"], tmp_path / "both", lambda m: m["config"].update(all_frames=4))
    assert "both 'all_frames' and 'num_frames'" in _load_error(both)


@pytest.mark.parametrize("field, value, needle", [
    ("num_frames", "4", "expected an integer, got a string"),
    ("num_frames", 4.0, "expected an integer, got a number"),
    ("num_frames", True, "expected an integer, got true/false"),
    ("mean", "abc", "expected a list"),
    ("mean", [0.5, "x", 0.5], "field 'mean'[1]: expected a number"),
    ("mean", [0.5, 0.5], "expected 3 values"),
    ("sampling", "random", "'random' is not one of"),
    ("qkv_bias", "yes", "expected true/false"),
    ("mlp_ratio", float("nan"), "finite"),
])
def test_wrong_config_types_and_enum_values_are_one_line_errors(tiny_dirs, tmp_path, field, value, needle):
    path = _edited(tiny_dirs["mae"], tmp_path / "ckpt", lambda m: m["config"].update({field: value}))
    message = _load_error(path)
    assert needle in message and repr(field) in message


@pytest.mark.parametrize("content, needle", [
    (b"[1, 2, 3]", "expected a JSON object at the top level, got list"),
    (b'"videomae"', "expected a JSON object at the top level, got str"),
    (b"null", "expected a JSON object at the top level"),
    (b'{"format": "internvideo", "class": "VideoMAEClassifier", "config": [1]}', "expected a JSON object of VideoMAEConfig"),
    (b'{"format": "internvideo", "class": "VideoMAEClassifier"}', "no 'config'"),
    (b'{"format": "internvideo", ', "not valid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not valid UTF-8"),
])
def test_a_config_json_that_is_not_a_config_object_is_named(tiny_dirs, tmp_path, content, needle):
    assert needle in _load_error(_edited(tiny_dirs["mae"], tmp_path / "ckpt", content))


def test_config_errors_print_one_line_through_the_cli(tiny_dirs, tmp_path, capsys):
    from internvideo.cli import main

    path = _edited(tiny_dirs["mm"], tmp_path / "ckpt", lambda m: m["config"].pop("img_size"))
    code = main(["index", str(tmp_path), "--model", str(path), "--out", str(tmp_path / "idx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("internvideo: error:")
    assert "missing InternVideoMMConfig field(s) 'img_size'" in err


# ----------------------------------------------------------------------------- schedule cross-field checks


@pytest.mark.parametrize("overrides, needle", [
    (["optim.lr=1e-4", "optim.min_lr=1e-2"], "optim.min_lr (0.01) is above optim.lr"),
    (["optim.warmup_steps=5", "optim.warmup_epochs=1", "run.epochs=3"], "both set"),
    (["optim.warmup_epochs=3", "run.epochs=3"], "optim.warmup_epochs (3) must be less than run.epochs"),
    (["optim.warmup_steps=50", "run.max_steps=50"], "optim.warmup_steps (50) must be less than run.max_steps"),
])
def test_schedule_cross_field_checks(overrides, needle):
    """Before: min_lr above lr was accepted; the lr climbed to ~10 and the loss to 3,623, exit 0."""
    from internvideo.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)
    load_config(None, ["optim.lr=1e-4", "optim.min_lr=1e-4", "optim.warmup_steps=49", "run.max_steps=50"])


def test_warmup_longer_than_the_run_is_refused_once_the_step_count_is_known():
    from internvideo.train.config import ConfigError, load_config
    from internvideo.train.loop import Schedule

    class OneProcess:
        world = 1

    cfg = load_config(None, ["optim.warmup_steps=40", "run.epochs=2", "run.batch_size=4", "optim.accum_steps=1"])
    with pytest.raises(ConfigError, match=r"warmup \(40 steps.*not shorter than the run \(10 steps"):
        Schedule.of(cfg, 20, OneProcess())
    assert Schedule.of(cfg, 100, OneProcess()).warmup == 40  # 50 steps: fine


# ----------------------------------------------------------------------------- run-directory lock: no race


def _contender(run_dir, start, inside, results, index):
    """Wait for the start signal, try the lock; inside it, check that nobody else is inside."""
    import os
    import time
    from pathlib import Path

    from internvideo.train import setup
    from internvideo.train.setup import Dist, RunDirLocked, run_dir_lock

    # A slow log handler (a network file system, a busy terminal) widens any gap between "the lock is stale"
    # and "it is mine": a takeover that is not atomic loses the race then.
    setup.log.warning = lambda *args, **kwargs: time.sleep(0.05)
    start.wait()
    try:
        with run_dir_lock(Path(run_dir), Dist()):
            with inside.get_lock():
                inside.value += 1
                crowded = inside.value > 1
            time.sleep(0.05)
            with inside.get_lock():
                inside.value -= 1
            results[index] = 2 if crowded else 1
    except RunDirLocked:
        results[index] = 0
    os._exit(0)


def test_a_stale_lock_is_taken_over_by_exactly_one_of_several_racing_runs(tmp_path):
    """Before: three runs finding the same dead-pid lock; two held it at once in 11 of 20 trials."""
    import multiprocessing
    import subprocess
    import sys

    ctx = multiprocessing.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    racers, trials = 5, 6
    for trial in range(trials):
        run_dir = tmp_path / f"run{trial}"
        run_dir.mkdir()
        (run_dir / "run.lock").write_text(json.dumps({"pid": dead.pid, "host": __import__("socket").gethostname(),
                                                      "since": "long ago"}))
        start, inside = ctx.Event(), ctx.Value("i", 0)
        results = ctx.Array("i", [-1] * racers)
        procs = [ctx.Process(target=_contender, args=(str(run_dir), start, inside, results, i))
                 for i in range(racers)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(timeout=60)
        got = list(results)
        assert 2 not in got, f"trial {trial}: two runs held the lock at once ({got})"
        assert got.count(1) >= 1 and -1 not in got, got
        assert not (run_dir / "run.lock").exists()  # released by whoever held it


# ----------------------------------------------------------------------------- atomic writes and full disks


def _enospc(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_extract_leaves_no_torn_config_and_names_the_path(colours, tmp_path, monkeypatch):
    """Before: a 0-byte extract_config.json, and the rerun failed with a JSON message naming no file."""
    from eval_standins import ColourClassifier
    from internvideo import fileio
    from internvideo.tasks import extract as E

    out = tmp_path / "feats"
    with monkeypatch.context() as m:
        m.setattr(fileio.os, "fsync", _enospc)
        with pytest.raises(fileio.DiskFullError) as e:
            E.extract_features(ColourClassifier(), colours["list"], out, progress=False)
    assert str(out / "extract_config.json") in str(e.value) and "\n" not in str(e.value)
    assert not (out / "extract_config.json").exists() and not list(out.rglob("*.tmp"))
    summary = E.extract_features(ColourClassifier(), colours["list"], out, progress=False)
    assert summary["extracted"] == summary["videos"] > 0


def test_a_torn_extract_config_left_by_an_older_version_is_recognised(colours, tmp_path):
    from eval_standins import ColourClassifier
    from internvideo.tasks import extract as E

    out = tmp_path / "feats"
    out.mkdir()
    (out / "extract_config.json").write_bytes(b"")  # what the old in-place write left on a full disk
    assert E.extract_features(ColourClassifier(), colours["list"], out, progress=False)["extracted"] > 0
    (out / "extract_config.json").write_bytes(b'{"window": ')  # torn, and now features lie beside it
    with pytest.raises(UserError, match=r"extract_config\.json is damaged.*--overwrite"):
        E.extract_features(ColourClassifier(), colours["list"], out, progress=False)


def test_disk_full_while_saving_a_training_checkpoint_is_one_line_naming_it(tmp_path, monkeypatch):
    """Before: a SafetensorError traceback. Now DiskFullError naming the checkpoint; no partial step_N left."""
    from safetensors import SafetensorError

    from internvideo import fileio
    from internvideo.checkpoints import base
    from internvideo.train.state import Checkpointer

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    model = internvideo.create_model("videomae_tiny", num_classes=3, img_size=32, num_frames=4)
    ckpt = Checkpointer(tmp_path, keep_last=2)
    monkeypatch.setattr(base, "save_file", full)
    with pytest.raises(fileio.DiskFullError) as e:
        ckpt.write(3, model, {"step": 3}, None, model.state_dict())
    assert str(tmp_path / "checkpoints" / "step_0000003") in str(e.value) and "\n" not in str(e.value)
    assert not list((tmp_path / "checkpoints").iterdir())  # neither step_0000003 nor its .tmp
    with pytest.raises(fileio.DiskFullError, match="model.safetensors"):  # save_model on its own, too
        internvideo.save_model(model, tmp_path / "saved")
    assert not list((tmp_path / "saved").iterdir())


def test_disk_full_during_index_names_the_index_and_the_real_error_is_not_hidden(search_world, search_model,
                                                                                  tmp_path, monkeypatch):
    """Before: "cannot rollback - no transaction is active", hiding SQLite's "database or disk is full"."""
    import sqlite3

    from internvideo import fileio
    from internvideo.search import build_index
    from internvideo.search.store import Store

    store = Store(tmp_path / "plain", create=True)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        with store.transaction() as db:
            db.execute("ROLLBACK")  # what SQLite does by itself on a full disk
            raise sqlite3.OperationalError("database or disk is full")
    store.close()

    def full(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    folder = video_folder(search_world, tmp_path / "videos", clips=1, long=False)
    monkeypatch.setattr(Store, "replace_video", full)
    with pytest.raises(fileio.DiskFullError) as e:
        build_index(internvideo.load_model(search_model), folder, tmp_path / "idx", model_source=search_model,
                    window=1.0, precision="fp32", progress=False)
    assert str(tmp_path / "idx") in str(e.value)


def test_disk_full_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    """Writing scorer results (an unlisted writer of the same class) on a full disk: one line, exit 2."""
    from internvideo import fileio
    from internvideo.cli import main

    gt, pred = _localization_files(tmp_path)
    monkeypatch.setattr(fileio.os, "fsync", _enospc)
    code = main(["eval", "localization", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "No space left on device" in err and "r.json" in err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.json.tmp").exists()


def test_results_json_is_valid_json_even_when_a_value_is_not_finite(tmp_path):
    from internvideo import fileio

    path = fileio.write_json(tmp_path / "r.json", {"mAP": float("nan"), "per_class": [1.0, float("inf")],
                                                  "n": np.float32("nan")})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "mAP": None, "per_class": [1.0, None], "n": None}


def _localization_files(tmp_path, gt_segments=((1.0, 3.0),), pred=None):
    gt = {"database": {"v1": {"duration": 10.0, "subset": "validation",
                              "annotations": [{"segment": list(s), "label": "jump"} for s in gt_segments]}}}
    results = pred if pred is not None else {"v1": [{"label": "jump", "score": 0.9, "segment": [1.0, 3.0]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps({"results": results}))
    return tmp_path / "gt.json", tmp_path / "pred.json"


# ----------------------------------------------------------------------------- scorers: nothing dropped silently


def _ava_files(tmp_path, gt_rows, pred_rows, pred_prefix=b"", gt_prefix=b""):
    (tmp_path / "gt.csv").write_bytes(gt_prefix + "".join(r + "\n" for r in gt_rows).encode())
    (tmp_path / "pred.csv").write_bytes(pred_prefix + "".join(r + "\n" for r in pred_rows).encode())
    (tmp_path / "map.pbtxt").write_text('item { name: "stand" id: 1 }\nitem { name: "walk" id: 2 }\n')
    return ["eval", "ava", "--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv"),
            "--labels", str(tmp_path / "map.pbtxt")]


GT_ROW = "v1,0902,0.1,0.1,0.5,0.9,1,0"
HIT = "v1,0902,0.1,0.1,0.5,0.9,1,0.9"


@pytest.mark.parametrize("gt_rows", [[], ["v1,0902"], ["v1,0902,0.1,0.1,0.5,0.9,5,0"]])
def test_ava_without_ground_truth_to_score_is_an_error_not_nan(tmp_path, capsys, gt_rows):
    """Before: "mAP: nan %", exit 0, and a bare NaN in the --out JSON. Unlisted: only keyframes without boxes,
    only classes outside the label map."""
    from internvideo.cli import main

    argv = _ava_files(tmp_path, gt_rows, [HIT]) + ["--out", str(tmp_path / "r.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "gt.csv" in err and "nothing to score" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_ava_bom_on_either_csv_keeps_the_first_row(tmp_path, capsys):
    """Before: a UTF-8 BOM stuck to the first video id and that detection was silently dropped (mAP 0)."""
    from internvideo.cli import main

    for gt_bom, pred_bom in ((b"", b"\xef\xbb\xbf"), (b"\xef\xbb\xbf", b"")):
        argv = _ava_files(tmp_path, [GT_ROW], [HIT], pred_prefix=pred_bom, gt_prefix=gt_bom)
        assert main(argv + ["--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["mAP"] == 100.0 and result["false_positives_off_ground_truth"] == {}


def test_ava_non_utf8_csv_names_file_and_line(tmp_path, capsys):
    from internvideo.cli import main

    argv = _ava_files(tmp_path, [GT_ROW], [HIT])
    (tmp_path / "pred.csv").write_bytes(HIT.encode() + b"\nv1,0902,0.1,0.1,0.5,0.9,1,\xff\xfe\n")
    assert main(argv) == 2
    assert "pred.csv:2: not valid UTF-8" in capsys.readouterr().err


def test_ava_detections_off_the_ground_truth_are_counted(tmp_path, capsys):
    from internvideo.cli import main

    preds = [HIT, "v9,0902,0.1,0.1,0.5,0.9,1,0.8", "v1,0903,0.1,0.1,0.5,0.9,1,0.7", "v1,0904,0.1,0.1,0.5,0.9,1,0.6"]
    argv = _ava_files(tmp_path, [GT_ROW, "v1,0904"], preds)  # 0904: an annotated keyframe without boxes
    assert main(argv + ["--json", "--out", str(tmp_path / "r.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["false_positives_off_ground_truth"] == {"detections of videos not in the ground truth": 1,
                                                          "detections at timestamps that are not annotated keyframes": 1}
    assert result["num_detections"] == 4 and result["mAP"] == 100.0  # the hit ranks first
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == result
    assert main(argv) == 0
    assert "scored as false positives: 1 detections of videos not in the ground truth" in capsys.readouterr().out


@pytest.mark.parametrize("segment, needle", [
    ("[NaN, 3]", "must be a finite number, got nan"),
    ("[1, Infinity]", "must be a finite number, got inf"),
    ("[-5, -2]", "lies before the video starts"),
])
def test_localization_ground_truth_segments_that_can_never_match_are_refused(tmp_path, capsys, segment, needle):
    """Before: accepted and silently never matched (the class's recall dropped)."""
    from internvideo.cli import main

    gt, pred = _localization_files(tmp_path)
    gt.write_text(gt.read_text().replace("[1.0, 3.0]", segment))
    assert main(["eval", "localization", "--gt", str(gt), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "gt.json" in err and "database/v1/annotations[0]/segment" in err and needle in err


def test_a_repeated_video_key_in_predictions_is_an_error(tmp_path, capsys):
    """Before: the second list silently replaced the first. Unlisted: the same in the ground truth."""
    from internvideo.cli import main

    gt, pred = _localization_files(tmp_path)
    one = '{"label": "jump", "score": 0.9, "segment": [1.0, 3.0]}'
    pred.write_text('{"results": {"v1": [' + one + '], "v1": [' + one + ']}}')
    assert main(["eval", "localization", "--gt", str(gt), "--pred", str(pred)]) == 2
    assert "pred.json" in (err := capsys.readouterr().err) and "'v1' appears twice" in err
    gt2, pred2 = _localization_files(tmp_path)
    gt2.write_text(gt2.read_text().replace('{"database": {', '{"database": {"v1": {"duration": 5}, '))
    assert main(["eval", "localization", "--gt", str(gt2), "--pred", str(pred2)]) == 2
    assert "gt.json" in (err := capsys.readouterr().err) and "'v1' appears twice" in err


def test_localization_counts_predictions_it_cannot_match(tmp_path, capsys):
    from internvideo.cli import main

    preds = {"v1": [{"label": "jump", "score": 0.9, "segment": [1.0, 3.0]},
                    {"label": "swim", "score": 0.5, "segment": [1.0, 3.0]},
                    {"label": "jump", "score": float("nan"), "segment": [4.0, 5.0]}],
             "v7": [{"label": "jump", "score": 0.4, "segment": [1.0, 3.0]}]}
    gt, pred = _localization_files(tmp_path, pred=preds)
    assert main(["eval", "localization", "--gt", str(gt), "--pred", str(pred), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["num_predictions"], result["num_ignored_predictions"], result["num_nonfinite"],
            result["num_predictions_unknown_videos"]) == (4, 1, 1, 1)
    assert main(["eval", "localization", "--gt", str(gt), "--pred", str(pred)]) == 0
    table = capsys.readouterr().out
    assert "of videos without GT (false positives)" in table and "non-finite (never hits)" in table


# ----------------------------------------------------------------------------- messages


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00"


@pytest.mark.parametrize("name, read", [
    ("recipe.yaml", lambda p: __import__("internvideo.train.config", fromlist=["x"]).load_config(p)),
    ("templates.txt", lambda p: __import__("internvideo.tasks.zeroshot", fromlist=["x"]).read_templates(p)),
    ("map.pbtxt", lambda p: __import__("internvideo.data.ava", fromlist=["x"]).read_label_map(p)),
    ("gt.json", lambda p: __import__("internvideo.data", fromlist=["x"]).read_activitynet(p)),
    ("msrvtt.csv", lambda p: __import__("internvideo.data.datasets", fromlist=["x"]).read_msrvtt(p, ".")),
    ("results.csv", lambda p: __import__("internvideo.data.ava", fromlist=["x"]).read_ava_results(p)),
    ("test.txt", lambda p: __import__("internvideo.data", fromlist=["x"]).read_classification_list(p)),
])
def test_every_reader_names_the_file_and_line_of_bytes_that_are_not_text(tmp_path, name, read):
    """Before: a UnicodeDecodeError traceback naming no file (YAML configs, templates, label maps, JSON)."""
    from internvideo.errors import UserError

    path = tmp_path / name
    path.write_bytes(b"first line\n" + BINARY)
    with pytest.raises((UserError, ValueError)) as e:
        read(path)
    message = str(e.value)
    assert f"{path}:2" in message and "UTF-8" in message, message


@pytest.mark.parametrize("argv, option", [
    (["index", "f", "--model", "m", "--window", "nan"], "--window"),
    (["index", "f", "--model", "m", "--stride", "0"], "--stride"),
    (["index", "f", "--model", "m", "--target-recall", "inf"], "--target-recall"),
    (["index", "f", "--model", "m", "--batch-size", "0"], "--batch-size"),
    (["search", "i", "q", "-k", "0"], "-k"),
    (["serve", "i", "--port", "70000"], "--port"),
    (["eval", "ava", "--gt", "a", "--pred", "b", "--iou", "nan"], "--iou"),
    (["eval", "ava", "--gt", "a", "--pred", "b", "--capacity", "-1"], "--capacity"),
    (["eval", "localization", "--gt", "a", "--pred", "b", "--tiou", "0.5", "inf"], "--tiou"),
    (["extract", "l", "--model", "m", "--out", "o", "--window", "-inf"], "--window"),
    (["extract", "l", "--model", "m", "--out", "o", "--num-workers", "1.5"], "--num-workers"),
])
def test_numeric_options_refuse_nan_inf_and_zero_where_meaningless(argv, option, capsys):
    from internvideo.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1  # one line, like every other user error (no usage block)
    assert err[0].startswith("internvideo") and f"argument {option}: expected" in err[0]


def test_control_characters_in_file_names_are_escaped_when_printed(tmp_path, capsys):
    """A file name can hold ESC, CR or a right-to-left override; printed raw it recolours, overwrites or
    reorders the terminal."""
    from internvideo.cli import main
    from internvideo.fileio import printable
    from internvideo.search.query import Hit, format_hits

    evil = "clip\x1b[2J\rfake\u202egpj.mp4"
    assert printable(evil) == "clip\\x1b[2J\\rfake\\u202egpj.mp4" and printable("plain é.mp4") == "plain é.mp4"
    table = format_hits([Hit(1, 1, 1, evil, 0.0, 1.0, 0.5)])
    assert "\x1b" not in table and "\r" not in table and "\u202e" not in table and "\\x1b[2J" in table
    # Through the CLI's one error line (an unlisted path of the same class).
    bad = tmp_path / "list\x1b]0;pwned\x07.txt"
    bad.write_bytes(b"a.mp4 0\n" + BINARY)
    code = main(["eval", "recognition", "--model", "videomae_tiny", "--data", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err and "\x07" not in err and "\\x1b]0;pwned\\x07" in err
