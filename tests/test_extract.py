"""Feature extraction: clip and window features, the index, resuming, unreadable videos."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import internvideo
from internvideo.tasks.common import clip_embedding
from eval_standins import ColourClassifier, nan_classifier_features
from internvideo.data import IMAGENET_MEAN, IMAGENET_STD, write_video
from internvideo.tasks import extract as E
from internvideo.errors import UsageError
from internvideo.tasks.common import WrongModelError

QUIET = dict(progress=False)


def grey_level(features: np.ndarray) -> np.ndarray:
    """ColourClassifier features are the mean ImageNet-normalised colour; undo that for the red channel."""
    return (features[..., 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Ramps: frame t is a flat grey of level 20 + 10 t, so a feature tells which frames were sampled."""
    root = tmp_path_factory.mktemp("extract")
    (root / "videos").mkdir()
    for name, length in (("ramp24", 24), ("ramp16", 16), ("ramp6", 6)):
        frames = np.stack([np.full((32, 40, 3), 20 + 10 * t, dtype=np.uint8) for t in range(length)])
        write_video(root / "videos" / f"{name}.mp4", frames, fps=8, options={"crf": "0"})
    (root / "videos" / "junk.mp4").write_text("not a video")
    (root / "list.txt").write_text("videos/ramp24.mp4 0\nvideos/junk.mp4 1\nvideos/ramp16.mp4 0\n"
                                   "videos/missing.mp4 2\nvideos/ramp6.mp4 1\n")
    return root


def read_index(out):
    return [json.loads(line) for line in (out / E.INDEX_NAME).read_text().splitlines()]


def test_clip_features_index_and_bad_videos(videos, tmp_path):
    out = tmp_path / "feats"
    summary = E.extract_features(ColourClassifier(), videos / "list.txt", out, batch_size=2, **QUIET)
    assert summary["videos"] == 5 and summary["extracted"] == 3 and summary["existing"] == 0
    assert [f["video"].rsplit("/", 1)[1] for f in summary["failed"]] == ["junk.mp4", "missing.mp4"]
    index = read_index(out)
    assert [r["status"] for r in index] == ["ok", "error", "ok", "error", "ok"]  # input order
    assert "junk.mp4" in index[1]["error"] and "not found" in index[3]["error"]
    assert index[0]["features"] == "videos/ramp24.npy" and index[0]["shape"] == [3]
    feats = np.load(out / "videos/ramp24.npy")
    assert feats.shape == (3,) and feats.dtype == np.float32
    # Dense centre clip of 4 frames every 4 in 24 frames: frames 5, 9, 13, 17 -> mean level 20 + 10 * 11.
    assert grey_level(feats) == pytest.approx(130, abs=2)
    # Segment sampling spreads 4 frames over the video: middles of 4 parts of 16 frames = 2, 6, 10, 14.
    seg = E.extract_features(ColourClassifier(), [str(videos / "videos/ramp16.mp4")], tmp_path / "seg",
                             sampling="segment", **QUIET)
    assert seg["extracted"] == 1
    assert grey_level(np.load(next((tmp_path / "seg").rglob("ramp16.npy")))) == pytest.approx(100, abs=2)


def test_window_features(videos, tmp_path):
    out = tmp_path / "win"
    E.extract_features(ColourClassifier(), videos / "list.txt", out, window=8, stride=4, batch_size=3, **QUIET)
    by_name = {r["video"].rsplit("/", 1)[1]: r for r in read_index(out)}
    r24 = by_name["ramp24.mp4"]
    assert r24["shape"] == [5, 3] and r24["window_frames"] == 8 and r24["stride_frames"] == 4
    # Windows start at 0, 4, ..., 16; each samples frames start + (1, 3, 5, 7): mean level 20 + 10 (start + 4).
    levels = grey_level(np.load(out / "videos/ramp24.npy"))
    np.testing.assert_allclose(levels, [60, 100, 140, 180, 220], atol=2)
    # A video shorter than a window gives one window over all of it: 4 segments of 6 frames -> 0, 2, 3, 5.
    assert by_name["ramp6.mp4"]["shape"] == [1, 3]
    assert grey_level(np.load(out / "videos/ramp6.npy")) == pytest.approx([20 + 10 * 2.5], abs=2)
    # The same windows in seconds (8 fps), with another batch size and two decoding workers.
    secs = tmp_path / "secs"
    E.extract_features(ColourClassifier(), videos / "list.txt", secs, window=1.0, stride=0.5, unit="seconds",
                       batch_size=64, num_workers=2, **QUIET)
    for name in ("ramp24", "ramp16", "ramp6"):
        np.testing.assert_allclose(np.load(secs / f"videos/{name}.npy"), np.load(out / f"videos/{name}.npy"),
                                   rtol=1e-5, atol=1e-5)


def test_resume_skips_finished_videos_and_retries_bad_ones(videos, tmp_path):
    out = tmp_path / "resume"
    E.extract_features(ColourClassifier(), videos / "list.txt", out, **QUIET)
    done = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert len(done) == 3
    (out / "videos/ramp16.npy").unlink()  # as if interrupted before this video was finished
    (out / "videos/ramp16.npy.tmp").write_bytes(b"half-written")  # a crash leaves at most a temp file
    summary = E.extract_features(ColourClassifier(), videos / "list.txt", out, **QUIET)
    assert summary["extracted"] == 1 and summary["existing"] == 2 and len(summary["failed"]) == 2
    assert [r["status"] for r in read_index(out)] == ["exists", "error", "ok", "error", "exists"]
    assert (out / "videos/ramp24.npy").stat().st_mtime_ns == done[out / "videos/ramp24.npy"]
    assert np.load(out / "videos/ramp16.npy").shape == (3,)
    assert not list(out.rglob("*.tmp"))
    # Other settings into the same folder are refused; --overwrite re-extracts everything.
    with pytest.raises(UsageError, match="other settings"):
        E.extract_features(ColourClassifier(), videos / "list.txt", out, window=8, **QUIET)
    summary = E.extract_features(ColourClassifier(), videos / "list.txt", out, window=8, overwrite=True, **QUIET)
    assert summary["extracted"] == 3 and summary["existing"] == 0


def test_read_video_list_formats(videos, tmp_path):
    from_dir = E.read_video_list(videos / "videos")
    assert [e.key for e in from_dir] == ["junk.mp4", "ramp16.mp4", "ramp24.mp4", "ramp6.mp4"]
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text(json.dumps({"video": str(videos / "videos/ramp6.mp4"), "caption": "x"}) + "\n")
    (entry,) = E.read_video_list(jsonl, root=videos)
    assert entry.key == "videos/ramp6.mp4"
    plain = tmp_path / "plain.txt"
    plain.write_text(f"{videos}/videos/ramp6.mp4\n{videos}/videos/ramp6.mp4 3\n")
    assert len(E.read_video_list(plain)) == 1  # a label is dropped; duplicates are extracted once
    np.testing.assert_array_equal(E.window_starts(24, 8, 4), [0, 4, 8, 12, 16])
    np.testing.assert_array_equal(E.window_starts(5, 8, 4), [0])


def test_clip_embedding_of_every_model_kind():
    import torch

    torch.manual_seed(0)
    clips = torch.randn(2, 3, 4, 32, 32)
    mae = internvideo.create_model("videomae_tiny")
    assert clip_embedding(mae, clips).shape == (2, 64)
    torch.testing.assert_close(clip_embedding(mae, clips, "mean"), mae.forward_features(clips).mean(1))
    pre = internvideo.create_model("videomae_tiny_pretrain")
    assert clip_embedding(pre, clips).shape == (2, 64)
    with pytest.raises(WrongModelError, match="no head"):
        clip_embedding(pre, clips, "pre_logits")


def test_extract_cli(videos, tmp_path):
    model_dir = tmp_path / "mae"
    internvideo.save_model(internvideo.create_model("videomae_tiny"), model_dir)
    parser = argparse.ArgumentParser()
    E.add_arguments(parser)
    args = parser.parse_args(["--model", str(model_dir), "--videos", str(videos / "list.txt"), "--out",
                              str(tmp_path / "cli"), "--window", "8", "--dtype", "float16", "--no-progress"])
    assert E.main(args) == 0
    feats = np.load(tmp_path / "cli/videos/ramp24.npy")
    assert feats.shape == (3, 64) and feats.dtype == np.float16  # stride defaults to the window: 0, 8, 16
    assert json.loads((tmp_path / "cli" / E.CONFIG_NAME).read_text())["model"] == str(model_dir)


@pytest.fixture(scope="module")
def ext_videos(tmp_path_factory):
    from internvideo.data import write_video

    root = tmp_path_factory.mktemp("ext")
    for name, level, length in (("a.mp4", 60, 12), ("a.mkv", 180, 12), ("b.mp4", 120, 16)):
        write_video(root / name, np.full((length, 32, 40, 3), level, dtype=np.uint8), fps=8, options={"crf": "0"})
    return root


def test_extract_videos_differing_by_extension_get_their_own_files(ext_videos, tmp_path):
    from internvideo.tasks import extract as E

    out = tmp_path / "f"
    E.extract_features(ColourClassifier(), [ext_videos / "a.mp4", ext_videos / "a.mkv", ext_videos / "b.mp4"], out,
                       root=ext_videos, **QUIET)
    rows = read_index(out)
    # Before: both a.* wrote a.npy, two "ok" rows pointing at one file (the second overwrote the first).
    assert [r["features"] for r in rows] == ["a.mp4.npy", "a.mkv.npy", "b.npy"]
    assert not np.allclose(np.load(out / "a.mp4.npy"), np.load(out / "a.mkv.npy"))


def test_extract_rerun_recomputes_empty_files_and_keeps_window_fields(ext_videos, tmp_path):
    from internvideo.tasks import extract as E

    out = tmp_path / "w"
    videos = [ext_videos / "a.mp4", ext_videos / "b.mp4"]
    E.extract_features(ColourClassifier(), videos, out, root=ext_videos, window=8, stride=4, **QUIET)
    first = read_index(out)
    (out / "b.npy").write_bytes(b"")  # a 0-byte file left by a full disk
    summary = E.extract_features(ColourClassifier(), videos, out, root=ext_videos, window=8, stride=4, **QUIET)
    assert summary["extracted"] == 1 and summary["existing"] == 1  # before: EOFError
    rows = read_index(out)
    assert rows[0]["status"] == "exists" and rows[1]["status"] == "ok"
    for key in ("window_frames", "stride_frames", "fps", "num_frames"):  # before: missing from reused rows
        assert rows[0][key] == first[0][key]


def test_extract_marks_nan_features_as_errors(ext_videos, tmp_path):
    from internvideo.tasks import extract as E

    summary = E.extract_features(nan_classifier_features(), [ext_videos / "b.mp4"], tmp_path / "n", **QUIET)
    row = read_index(tmp_path / "n")[0]
    # Before: NaN features written with status "ok".
    assert row["status"] == "error" and "non-finite" in row["error"] and summary["extracted"] == 0
    assert not list((tmp_path / "n").rglob("*.npy"))
