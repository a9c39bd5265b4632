"""InternVideo's localization recipes (configs/localization/internvideo_*.yaml) train a few steps on stand-ins in
their own data layout (file prefix, .npy/.pkl/.csv features, several feature folders, fixed-length features);
feature-folder mismatches are errors naming the files."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from internvideo.data.localization import FeatureSequenceDataset, read_feature_file
from internvideo.errors import UserError
from internvideo.train import train
from internvideo.train.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "localization"


def _write_features(path: Path, feats: np.ndarray) -> None:
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(feats, protocol=2))
    elif path.suffix == ".csv":
        path.write_text(",".join(f"f{i}" for i in range(feats.shape[1])) + "\n"
                        + "\n".join(",".join(f"{v:.5f}" for v in row) for row in feats) + "\n")
    else:
        np.save(path, feats)


def stand_in(cfg, root: Path, widths: list[int], num_videos: int = 6, length: int = 40) -> None:
    """The recipe's layout under ``root``: its JSON (train/val subsets), its feature folders, prefix and format."""
    loc = cfg.localize
    folders = [loc.features] if isinstance(loc.features, str) else list(loc.features)
    assert len(folders) == len(widths)
    rng = np.random.default_rng(0)
    database = {}
    for folder in folders:
        (root / folder).mkdir(parents=True)
    for i in range(num_videos):
        vid = f"vid{i}"
        for folder, width in zip(folders, widths):
            _write_features(root / folder / f"{loc.prefix}{vid}{loc.file_ext}",
                            rng.normal(size=(length, width)).astype(np.float32))
        subset = loc.val_subset if i % 3 == 2 else loc.train_subset
        database[vid] = {"subset": subset, "duration": 30.0, "fps": 30.0,
                         "annotations": [{"segment": [3.0, 9.0], "label": "jump"},
                                         {"segment": [15.0, 24.0], "label": "run"}]}
    ann = root / cfg.data.train
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps({"version": "1.3", "database": database}))


@pytest.mark.parametrize("name, widths", [("internvideo_thumos14", [1408]), ("internvideo_activitynet", [1280]),
                                          ("internvideo_hacs", [2048, 512]), ("internvideo_fineaction", [1408])])
def test_internvideo_localization_recipe_trains(tmp_path, name, widths):
    torch.set_num_threads(1)
    small = ["model.overrides.embed_dim=16", "model.overrides.head_dim=16", "model.overrides.num_heads=2",
             "data.num_workers=0", "run.max_steps=2", "run.batch_size=2", "run.progress=false", "run.log_every=1", "optim.warmup_epochs=0",
             f"run.out_dir={tmp_path / 'run'}", f"data.root={tmp_path / 'data'}"]
    cfg = load_config(CONFIGS / f"{name}.yaml", small)
    if name == "internvideo_hacs":  # two feature sets concatenated per time step, 2048 + 512 = the recipe's 2560
        cfg = load_config(CONFIGS / f"{name}.yaml", small + ["localize.features=[slowfast, internvideo]"])
    stand_in(cfg, tmp_path / "data", widths)
    result = train(cfg)
    assert result.model.config.input_dim == sum(widths) == cfg.model.overrides["input_dim"]
    # ActionFormer's pyramid: every block's attention has its depthwise q/k/v convolutions, strided in the levels
    assert result.model.config.downsample == "attention"
    assert [blk.stride for blk in result.model.branch] == [2] * 5 and all(blk.stride == 1 for blk in result.model.stem)
    assert len([r for r in result.history if r["kind"] == "train"]) == 2
    assert [r for r in result.history if r["kind"] == "eval"]


def test_fixed_length_features_span_the_video(tmp_path):
    """FineAction's feat_stride -1: stride = duration x fps / length (after up-sampling), window = 16 strides."""
    cfg = load_config(CONFIGS / "internvideo_fineaction.yaml", [f"data.root={tmp_path}"])
    stand_in(cfg, tmp_path, [8], num_videos=1, length=50)
    ds = FeatureSequenceDataset(tmp_path / cfg.data.train, tmp_path / cfg.localize.features, prefix="v_",
                                file_ext=".csv", feat_stride=-1, window_frames=16, fps=15, resize_to=192)
    item = ds[0]
    assert item["feats"].shape == (192, 8)
    stride = 30.0 * 15 / 192
    assert item["timing"].stride == pytest.approx(stride) and item["timing"].window == pytest.approx(16 * stride)
    # the segment 3-9 s on the grid: (s * fps - window / 2) / stride
    np.testing.assert_allclose(item["segments"][0].numpy(), [(3 * 15 - 8 * stride) / stride,
                                                             (9 * 15 - 8 * stride) / stride], rtol=1e-5)


def test_feature_folders_must_agree(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": {"a": {"subset": "training", "duration": 10.0,
                                                 "annotations": [{"segment": [1, 2], "label": "x"}]}}}))
    for folder, length in (("f1", 10), ("f2", 12)):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "a.npy", np.zeros((length, 3), np.float32))
    ds = FeatureSequenceDataset(gt, [tmp_path / "f1", tmp_path / "f2"], feat_stride=4, window_frames=16, fps=30)
    with pytest.raises(UserError, match=r"video a: the feature folders disagree on its length: .*f1/a.npy has 10 "
                                         r"steps, .*f2/a.npy has 12 steps"):
        ds[0]
    np.save(tmp_path / "f2" / "a.npy", np.zeros((10, 5), np.float32))
    assert ds[0]["feats"].shape == (10, 8)
    (tmp_path / "f2" / "index.jsonl").write_text(json.dumps({"features": "a.npy", "stride_frames": 8,
                                                              "window_frames": 16, "fps": 30}) + "\n")
    with pytest.raises(UserError, match=r"video a: the feature folders disagree on stride/window/fps.*f1: stride 4"
                                         r".*f2: stride 8"):
        FeatureSequenceDataset(gt, [tmp_path / "f1", tmp_path / "f2"], feat_stride=4, window_frames=16, fps=30)
    with pytest.raises(UserError, match="feature files must be one of .npy, .pkl, .csv"):
        FeatureSequenceDataset(gt, tmp_path / "f1", file_ext=".h5", feat_stride=4, window_frames=16, fps=30)


def test_feature_file_formats(tmp_path):
    feats = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    for ext in (".npy", ".pkl", ".csv"):
        _write_features(tmp_path / f"x{ext}", feats)
        np.testing.assert_allclose(read_feature_file(tmp_path / f"x{ext}"), feats, atol=1e-5)
    (tmp_path / "noheader.csv").write_text("1,2\n3,4\n")
    np.testing.assert_array_equal(read_feature_file(tmp_path / "noheader.csv"), [[1, 2], [3, 4]])
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"flat.npy: expected features of shape \(T, D\)"):
        read_feature_file(tmp_path / "flat.npy")


def test_af_annotation_json_read_as_the_official_loader_reads_it(tmp_path):
    """HACS_segments_v1.1.1_af.json / FineAction annotations_gt_af.json: ActivityNet layout plus ``label_id``; the
    official libs/datasets/anet.py lower-cases ``subset``, takes ``fps`` from default_fps (else the entry) and reads
    only ``segment``/``label``; test videos carry no annotations. A broken entry is an error naming it."""
    from internvideo.data import AnnotationError

    database = {
        "vid0": {"subset": "Training", "duration": 20.0, "url": "https://youtube.com/watch?v=vid0",
                 "annotations": [{"label": "Archery", "label_id": 3, "segment": [1.5, 6.0]}]},
        "vid1": {"subset": "validation", "duration": 12.0, "annotations": [
            {"label": "Archery", "label_id": 3, "segment": [0.0, 4.0]},
            {"label": "Archery", "label_id": 3, "segment": [0.0, 4.0]}]},  # HACS repeats some instances
        "vid2": {"subset": "testing", "duration": 9.0, "annotations": []},
    }
    gt = tmp_path / "HACS_segments_v1.1.1_af.json"
    gt.write_text(json.dumps({"database": database}))
    (tmp_path / "f").mkdir()
    for vid in database:
        np.save(tmp_path / "f" / f"v_{vid}.npy", np.zeros((20, 4), np.float32))
    train_set = FeatureSequenceDataset(gt, tmp_path / "f", subset="training", prefix="v_", feat_stride=16,
                                       window_frames=16, fps=30)
    assert [v.video_id for v in train_set.videos] == ["vid0"] and train_set.classes == ["Archery"]
    test_set = FeatureSequenceDataset(gt, tmp_path / "f", subset="testing", prefix="v_", feat_stride=16,
                                      window_frames=16, fps=30, classes=["Archery"])
    assert len(test_set) == 1 and test_set[0]["segments"].shape == (0, 2)
    val_set = FeatureSequenceDataset(gt, tmp_path / "f", subset="validation", prefix="v_", feat_stride=16,
                                     window_frames=16, fps=30, classes=["Archery"])
    assert val_set[0]["segments"].shape == (1, 2)  # the repeated instance counted once, as anet.py does
    database["vid1"]["annotations"][1] = {"label": "Archery", "label_id": 3}
    gt.write_text(json.dumps({"database": database}))
    with pytest.raises(AnnotationError, match=r"HACS_segments_v1.1.1_af.json: database/vid1/annotations\[1\]: "
                                              r"missing key \"segment\""):
        FeatureSequenceDataset(gt, tmp_path / "f", prefix="v_", feat_stride=16, window_frames=16, fps=30)
