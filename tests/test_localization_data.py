"""Localization inputs: feature folders (extract's index or user files), bad input, crops, THUMOS14 import."""
from __future__ import annotations

import json

import numpy as np
import pytest

from internvideo.data import AnnotationError
from internvideo.data.localization import (
    FeatureSequenceDataset, FeatureTiming, collate_sequences, crop_sequence, read_thumos14, write_activitynet,
)


def write_gt(path, database):
    path.write_text(json.dumps({"database": database}))
    return path


@pytest.fixture
def folder(tmp_path):
    gt = write_gt(tmp_path / "gt.json", {
        "a": {"duration": 10.0, "subset": "training", "fps": 8, "annotations": [{"segment": [1.0, 3.0], "label": "x"}]},
        "b": {"duration": 6.0, "subset": "validation", "annotations": [{"segment": [2.0, 7.5], "label": "y"}]},
        "c": {"duration": 5.0, "subset": "training", "annotations": []},
        "gone": {"duration": 5.0, "subset": "training", "annotations": [{"segment": [0, 1], "label": "x"}]},
    })
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "a.npy", np.arange(20 * 3, dtype=np.float32).reshape(20, 3))
    np.save(feats / "b.npy", np.ones((12, 3), dtype=np.float32))
    np.save(feats / "c.npy", np.zeros((9, 3), dtype=np.float32))
    return gt, feats


def test_user_features_with_stride_and_fps(folder, caplog):
    gt, feats = folder
    ds = FeatureSequenceDataset(gt, feats, feat_stride=4, window_frames=8, fps=8)
    assert ds.classes == ["x", "y"] and ds.missing == ["gone"] and len(ds) == 3
    assert "1 video(s) without features" in caplog.text and "gone" in caplog.text
    item = ds[0]
    assert item["feats"].shape == (20, 3) and item["labels"].tolist() == [0]
    # [1 s, 3 s] at 8 fps = frames 8..24; grid = (frame - window/2) / stride = 1..5
    assert item["segments"].tolist() == [[1.0, 5.0]]
    # b's segment end 7.5 was clipped to its 6 s duration: frames 16..48 -> grid 3..11
    assert ds[1]["segments"].tolist() == [[3.0, 11.0]]
    assert ds[2]["segments"].shape == (0, 2)  # an empty annotation list is a video with no actions
    batch = collate_sequences([ds[0], ds[2]])
    assert [f.shape[0] for f in batch["feats"]] == [20, 9]
    val = FeatureSequenceDataset(gt, feats, subset="validation", feat_stride=4, window_frames=8, fps=8)
    assert [v.video_id for v in val.videos] == ["b"]


def test_timing_from_extract_index_and_missing_timing(folder):
    gt, feats = folder
    (feats / "index.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"video": "/v/a.mp4", "features": "a.npy", "shape": [20, 3], "status": "ok", "window_frames": 16,
         "stride_frames": 8, "fps": 30.0, "num_frames": 176},
        {"video": "/v/b.mp4", "features": "b.npy", "shape": [12, 3], "status": "exists"},
        {"video": "/v/c.mp4", "features": None, "shape": None, "status": "error", "error": "broken"}]) + "\n")
    (feats / "extract_config.json").write_text(json.dumps({"window": 4, "stride": 2, "unit": "frames"}))
    ds = FeatureSequenceDataset(gt, feats, fps=10)
    assert ds.timing[0] == FeatureTiming(8, 16, 30.0)
    assert ds.timing[1] == FeatureTiming(2, 4, 10.0)  # record without timing: extract_config + the fps argument
    assert sorted(ds.missing) == ["c", "gone"]  # failed extraction is skipped like a missing file
    (feats / "extract_config.json").unlink()
    with pytest.raises(ValueError, match="video b: no feat_stride, window_frames"):
        FeatureSequenceDataset(gt, feats)


def test_wrong_width_names_the_file(folder):
    gt, feats = folder
    np.save(feats / "c.npy", np.zeros((9, 5), dtype=np.float32))
    ds = FeatureSequenceDataset(gt, feats, feat_stride=4, window_frames=8, fps=8, input_dim=3)
    ds[0]
    with pytest.raises(ValueError, match=r"c\.npy: features are 5 wide, expected 3"):
        ds[2]
    np.save(feats / "c.npy", np.zeros(9, dtype=np.float32))
    with pytest.raises(ValueError, match=r"c\.npy: expected features of shape \(T, D\)"):
        ds[2]


def test_resize_and_training_crop(folder):
    gt, feats = folder
    ds = FeatureSequenceDataset(gt, feats, feat_stride=4, window_frames=8, fps=8, resize_to=10)
    item = ds[0]
    assert item["feats"].shape == (10, 3) and item["timing"].stride == 8  # 20 x 4 frames over 10 features
    assert item["segments"].tolist() == [[0.5, 2.5]]
    rng = np.random.default_rng(0)
    f = np.arange(100, dtype=np.float32)[:, None]
    segs = np.array([[10.0, 20.0], [50.0, 90.0]], dtype=np.float32)
    for _ in range(20):
        cf, cs, cl = crop_sequence(f, segs, np.array([0, 1]), 30, rng)
        start = int(cf[0, 0])
        assert cf.shape == (30, 1) and len(cs) >= 1
        for (s, e), label in zip(cs, cl):
            orig = segs[label]
            # kept segments are clipped into the crop and keep at least half of their length
            assert 0 <= s <= e <= 30 and (e - s) >= 0.5 * (orig[1] - orig[0])
            assert s + start == pytest.approx(max(orig[0], start))


def test_thumos14_import(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    (val / "BaseballPitch_val.txt").write_text("video_validation_0000051 67.5 75.9\nvideo_validation_0000051 "
                                              "85.9 90.6\n")
    (val / "Ambiguous_val.txt").write_text("video_validation_0000051 1.0 2.0\n")
    (val / "CliffDiving_val.txt").write_text("video_validation_0000052  4.2 8.0 \n\n")
    db = read_thumos14({"validation": val}, durations={"video_validation_0000051": 120.0}, fps=30)
    v = db["video_validation_0000051"]
    assert (v.duration, v.subset, v.fps) == (120.0, "validation", 30.0)
    assert [(s.start, s.end, s.label) for s in v.segments] == [(67.5, 75.9, "BaseballPitch"),
                                                               (85.9, 90.6, "BaseballPitch")]
    assert db["video_validation_0000052"].duration == 8.0  # no duration given: last segment end
    out = write_activitynet(db, tmp_path / "thumos14.json")
    from internvideo.data import read_activitynet
    assert read_activitynet(out)["video_validation_0000052"].segments[0].label == "CliffDiving"
    (val / "Bad_val.txt").write_text("video_validation_0000053 4.2\n")
    with pytest.raises(AnnotationError, match=r"Bad_val.txt:1: expected 'video start end'"):
        read_thumos14({"validation": val})
