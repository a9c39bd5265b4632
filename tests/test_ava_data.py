"""AVA data: boxes follow the pixels through every spatial transform; keyframe clips and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from internvideo.data import make_world, read_frames
from internvideo.data.ava import (
    AVABox, AVADataset, BoxTransform, at_keyframes, collate_ava, extend_boxes, group_keyframes, jitter_boxes,
    keyframes_from_proposals, read_ava_groundtruth,
)


@pytest.fixture(scope="module")
def ava_world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("ava_world"), num_videos=10, seed=1, size=32, num_frames=8,
                      num_long=1, num_ava=3, num_images=2)


def _painted(h, w, box):
    frame = np.zeros((3, h, w, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    frame[:, round(y1 * h):round(y2 * h), round(x1 * w):round(x2 * w)] = 255
    return frame


@pytest.mark.parametrize("seed", range(8))
def test_box_stays_on_its_pixels(seed):
    h, w = 40, 56  # not square: the resize changes the aspect ratio, the box must follow
    box = (0.25, 0.2, 0.75, 0.7)  # lands on whole pixels in the source frame
    tf = BoxTransform(32, training=True, scale=(1.0, 1.6), flip=0.5, mean=(0, 0, 0), std=(1, 1, 1))
    video, boxes, kept = tf(_painted(h, w, box), np.array([box]), np.random.default_rng(seed))
    assert video.shape == (3, 3, 32, 32) and kept.tolist() == [True]
    x1, y1, x2, y2 = boxes[0] * 32
    centres = np.arange(32) + 0.5
    inside_y = (centres > y1 + 1.5) & (centres < y2 - 1.5)
    inside_x = (centres > x1 + 1.5) & (centres < x2 - 1.5)
    outside_y = (centres < y1 - 1.5) | (centres > y2 + 1.5)
    outside_x = (centres < x1 - 1.5) | (centres > x2 + 1.5)
    img = video[0, 0].numpy()
    assert inside_y.any() and inside_x.any()
    assert (img[np.ix_(inside_y, inside_x)] > 0.95).all()
    assert (img[outside_y, :] < 0.05).all() and (img[:, outside_x] < 0.05).all()


def test_cropped_away_boxes_are_dropped_and_eval_keeps_boxes():
    tf = BoxTransform(16, training=True, scale=(2.0, 2.0))
    boxes = np.array([[0.0, 0.0, 0.05, 0.05], [0.9, 0.9, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    seen = set()
    for seed in range(20):
        _, out, kept = tf(np.zeros((1, 20, 20, 3), np.uint8), boxes, np.random.default_rng(seed))
        assert kept[2] and not (kept[0] and kept[1])  # a half-size window never holds both corners
        assert np.all(out[kept] >= 0) and np.all(out[kept] <= 1)
        seen.add(tuple(kept))
    assert len(seen) > 1
    video, out, kept = BoxTransform(16)(np.zeros((2, 30, 20, 3), np.uint8), boxes)
    assert kept.all() and np.allclose(out, boxes) and video.shape == (3, 2, 16, 16)


def test_jitter_and_extend():
    rng = np.random.default_rng(0)
    boxes = np.array([[0.2, 0.2, 0.6, 0.4]])
    j = jitter_boxes(boxes, rng, 0.1)
    assert np.all(np.abs(j - boxes) <= 0.1 * np.array([0.4, 0.2, 0.4, 0.2]) + 1e-6)
    np.testing.assert_allclose(extend_boxes(boxes, (0.1, 0.05)), [[0.18, 0.195, 0.62, 0.405]], rtol=1e-5)
    np.testing.assert_allclose(extend_boxes(np.array([[0.0, 0.0, 1.0, 1.0]])), [[0, 0, 1, 1]])


def test_keyframe_clips_labels_and_skips(ava_world, tmp_path):
    folder = ava_world.root / "ava"
    rows = at_keyframes(read_ava_groundtruth(folder / "ava_train.csv"))
    assert rows and all(float(r.timestamp).is_integer() for r in rows)
    extra = [AVABox("ava_00000", 99.0, (0.1, 0.1, 0.2, 0.2), 1, 0), AVABox("missing", 1.0, (0.1, 0.1, 0.2, 0.2), 1, 0)]
    keyframes = group_keyframes(rows + extra)
    ds = AVADataset(keyframes, folder, 10, BoxTransform(32), clip_len=4, frame_interval=2)
    assert ds.skipped == {"no frame at the timestamp": 1, "video not found": 1}
    assert len(ds) == len(keyframes) - 2
    first = next(i for i, it in enumerate(ds.items) if len(it[0].boxes) == 2)
    kf, path, frame, num_frames = ds.items[first]
    np.testing.assert_array_equal(ds.frame_indices(frame, num_frames),
                                  np.clip(frame + np.array([-4, -2, 0, 2]), 0, num_frames - 1))
    item = ds[first]
    want = BoxTransform(32)(read_frames(path, ds.frame_indices(frame, num_frames)), np.zeros((0, 4)))[0]
    torch.testing.assert_close(item["video"], want)
    # two people acting at once, each with its own action: one positive label per box, different ones
    assert item["labels"].shape == (2, 10) and item["labels"].sum(1).tolist() == [1.0, 1.0]
    assert not torch.equal(item["labels"][0], item["labels"][1])
    batch = collate_ava([ds[first], None, ds[first], {"skipped": ("x.mp4", "broken")}])
    assert batch["video"].shape[0] == 2 and batch["rois"][:, 0].tolist() == [0, 0, 1, 1]
    assert batch["skipped"] == [("x.mp4", "broken")]
    with pytest.raises(ValueError, match="unknown action id 11"):
        AVADataset(group_keyframes([AVABox("ava_00000", 1.0, (0.1, 0.1, 0.2, 0.2), 11, 0)]), folder, 10,
                   BoxTransform(32))


def test_proposal_keyframes_threshold():
    props = {("v", 1.0): np.array([[0.1, 0.1, 0.3, 0.3, 0.9], [0.5, 0.5, 0.6, 0.6, 0.2]], np.float32),
             ("v", 2.0): np.array([[0.1, 0.1, 0.3, 0.3, 0.1]], np.float32)}
    kfs = keyframes_from_proposals(props, [("v", 1.0), ("v", 2.0), ("w", 1.0)], threshold=0.8)
    assert len(kfs) == 1 and len(kfs[0].boxes) == 1 and kfs[0].scores == (pytest.approx(0.9),)
