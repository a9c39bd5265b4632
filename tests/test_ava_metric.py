"""AVA frame-mAP against hand-computed values, the AVA file readers, and ``internvideo eval ava``."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from internvideo.data.ava import (
    AVABox, AVADetection, key_of, read_ava_groundtruth, read_ava_results, read_excluded_timestamps, read_label_map,
    read_proposals, safe_unpickle, write_ava_results, check_proposals_cover,
)
from internvideo.data.datasets import AnnotationError
from internvideo.errors import MissingFile
from internvideo.tasks.ava import box_iou, frame_map, voc_average_precision

A = (0.0, 0.0, 0.5, 0.5)
B = (0.05, 0.0, 0.55, 0.5)  # overlaps A heavily: two people side by side
FAR = (0.6, 0.6, 1.0, 1.0)
LABELS = {1: "stand", 2: "sit", 3: "talk", 4: "run"}


def gt(v, t, box, a, p=0):
    return AVABox(v, t, box, a, p)


def det(v, t, box, a, s):
    return AVADetection(v, t, box, a, s)


GT = [
    gt("v1", 902, A, 1), gt("v1", 902, B, 1, 1), gt("v1", 902, A, 2),
    gt("v1", 903, A, 1), gt("v1", 903, A, 3),
    gt("v2", 902, A, 1),  # excluded keyframe
    gt("v1", 902, A, 7),  # class not in the label map
]
DETS = [
    det("v1", 902, A, 1, 0.9),                    # hit on A
    det("v1", 902, (0.02, 0.0, 0.52, 0.5), 1, 0.8),  # best overlap is A (taken): a miss, although B has IoU 0.89
    det("v2", 902, A, 1, 0.95),                   # excluded keyframe: ignored
    det("v1", 903, A, 1, 0.7),                    # hit
    det("v1", 904, A, 1, 0.85),                   # keyframe without ground truth: a miss
    det("v1", 902, FAR, 1, 0.6),                  # overlaps nothing: a miss
    det("v1", 902, B, 1, 0.5),                    # hit on B
    det("v1", 902, A, 2, 0.4),                    # hit
    det("v1", 902, A, 2, 0.4),                    # duplicate with an equal score: a miss
    det("v1", 903, A, 4, 0.3),                    # class without ground truth: not evaluated
    det("v1", 902, A, 7, 0.99),                   # class not in the label map: ignored
]


def test_frame_map_hand_computed():
    # class 1 ranked: .9 hit, .85 miss, .8 miss, .7 hit, .6 miss, .5 hit with 3 ground-truth boxes:
    # precision envelope 1 up to recall 1/3, then 1/2 up to 2/3 and 1/2 up to 1 -> AP = 1/3 + 1/6 + 1/6 = 2/3
    # class 2: a miss and a hit at the same score, ties pessimistic: AP = 1 * 1/2
    # class 3: ground truth, no detections -> 0; class 4: no ground truth -> skipped
    r = frame_map(GT, DETS, LABELS, excluded=[("v2", 902)])
    assert r["per_class"]["stand"] == pytest.approx(200 / 3)
    assert r["per_class"]["sit"] == pytest.approx(50.0)
    assert r["per_class"]["talk"] == 0.0
    assert r["per_class"]["run"] is None
    assert r["num_classes"] == 3
    assert r["mAP"] == pytest.approx((200 / 3 + 50 + 0) / 3)
    assert r["num_gt"] == 5
    assert r["ignored"]["detections at excluded timestamps"] == 1
    assert r["ignored"]["gt rows at excluded timestamps"] == 1
    assert r["ignored"]["gt rows of classes not in the label map"] == 1
    assert r["ignored"]["detections of classes not in the label map"] == 1
    optimistic = frame_map(GT, DETS, LABELS, excluded=[("v2", 902)], ties="optimistic")
    assert optimistic["per_class"]["sit"] == pytest.approx(100.0)


def test_frame_map_without_exclusions_counts_the_excluded_keyframe():
    # v2@902 now counts: class 1 has 4 gt; ranking .95 hit, .9 hit, .85 miss, .8 miss, .7 hit, .6 miss, .5 hit
    # precisions at hits: 1, 1, 3/5, 4/7; envelope 1 to recall 1/2, 3/5 to 3/4, 4/7 to 1
    r = frame_map(GT, DETS, LABELS)
    assert r["per_class"]["stand"] == pytest.approx(100 * (0.5 + 0.25 * 3 / 5 + 0.25 * 4 / 7))


def test_frame_map_capacity_zero_area_nonfinite_and_perfect():
    truth = [gt("v", 1, A, 1), gt("v", 1, FAR, 1)]
    dets = [det("v", 1, A, 1, 0.9), det("v", 1, A, 1, 0.8), det("v", 1, FAR, 1, 0.1)]
    assert frame_map(truth, dets, {1: "x"}, capacity=0)["mAP"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))
    # capacity 2 keeps the two best of the keyframe: the FAR hit is cut, recall stops at 1/2
    capped = frame_map(truth, dets, {1: "x"}, capacity=2)
    assert capped["mAP"] == pytest.approx(50.0)
    assert capped["ignored"]["detections beyond the per-keyframe capacity"] == 1
    flat = [det("v", 1, (0.2, 0.2, 0.2, 0.9), 1, 0.99), det("v", 1, A, 1, float("nan")), det("v", 1, FAR, 1, 0.5)]
    r = frame_map(truth, flat, {1: "x"})
    assert r["mAP"] == pytest.approx(50.0)  # only the FAR hit remains: precision 1 up to recall 1/2
    assert r["ignored"] == {"detection boxes without area": 1, "detections with a non-finite score": 1}
    assert frame_map(truth, [det("v", 1.0, b, 1, 1.0) for b in (A, FAR)], {1: "x"})["mAP"] == 100.0
    # a duplicated ground-truth row: both count, but every detection's best box is the first copy (argmax
    # takes the first of equal overlaps), so the second can never be hit -> recall stops at 1/2
    dup = frame_map([gt("v", 1, A, 1), gt("v", 1, A, 1)], [det("v", 1, A, 1, 0.9), det("v", 1, A, 1, 0.8)], {1: "x"})
    assert dup["mAP"] == pytest.approx(50.0) and dup["num_gt"] == 2
    # timestamps 1 and 1.0 (or "0001") are one keyframe
    assert key_of("v", 1) == key_of("v", 1.0000001) == ("v", 1.0)


def test_iou_and_voc_ap_by_hand():
    assert box_iou(np.array([A]), np.array([B]))[0, 0] == pytest.approx(0.225 / 0.275)
    assert box_iou(np.array([A]), np.array([FAR]))[0, 0] == 0.0
    assert box_iou(np.array([(0.1, 0.1, 0.1, 0.5)]), np.array([(0.1, 0.1, 0.1, 0.5)]))[0, 0] == 0.0
    # precisions 1, 1/2, 2/3 at recalls 1/2, 1/2, 1 -> envelope 1 then 2/3
    assert voc_average_precision(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(0.5 + 1 / 3)
    assert voc_average_precision(np.array([]), np.array([])) == 0.0


# ----------------------------------------------------------------------------- readers

PBTXT = """item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "crawl"
  label_id: 2
}
"""


def test_readers_and_bad_input(tmp_path):
    (tmp_path / "map.pbtxt").write_text(PBTXT)
    assert read_label_map(tmp_path / "map.pbtxt") == {1: "bend/bow (at the waist)", 2: "crawl"}
    (tmp_path / "gt.csv").write_text("vid,0902,0.1,0.2,0.3,0.4,1,0\nvid,0903\nvid,0903,0,0,1,1,2,5\n")
    rows = read_ava_groundtruth(tmp_path / "gt.csv")
    assert rows == [AVABox("vid", 902.0, (0.1, 0.2, 0.3, 0.4), 1, 0), AVABox("vid", 903.0, (0, 0, 1, 1), 2, 5)]
    (tmp_path / "ex.csv").write_text("vid,0902\n")
    assert read_excluded_timestamps(tmp_path / "ex.csv") == {("vid", 902.0)}
    write_ava_results(tmp_path / "res.csv", [det("vid", 902.0, (0.1, 0.2, 0.3, 0.4), 1, 0.5)])
    assert (tmp_path / "res.csv").read_text().strip() == "vid,0902,0.100,0.200,0.300,0.400,1,0.5"
    assert read_ava_results(tmp_path / "res.csv") == [det("vid", 902.0, (0.1, 0.2, 0.3, 0.4), 1, 0.5)]
    bad = {
        "vid,1,0.5,0.1,0.4,0.2,1,0\n": r"bad.csv:1: box .* x2 < x1",
        "ok,1,0,0,1,1,1,0\nvid,1,0.1,0.1,1.2,0.5,1,0\n": r"bad.csv:2: box .* outside \[0, 1\]",
        "vid,1,0.1,0.1,0.2,0.5,zero,0\n": r"bad.csv:1: action_id must be an integer",
        "vid,1,0.1,0.1,0.2,0.5,0,0\n": r"bad.csv:1: unknown action id 0",
        "vid,1,0.1,0.1,0.2,0.5\n": r"bad.csv:1: expected 8 columns",
    }
    for text, pattern in bad.items():
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(AnnotationError, match=pattern):
            read_ava_groundtruth(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("vid,1,0.1,0.1,0.2,0.5,81,0\n")
    with pytest.raises(AnnotationError, match=r"unknown action id 81 \(expected 1..80\)"):
        read_ava_groundtruth(tmp_path / "bad.csv", num_classes=80)
    (tmp_path / "bad.csv").write_text("vid,1,0.1,0.1,0.2,0.5,1,nan\n")
    with pytest.raises(AnnotationError, match="bad.csv:1: score must be finite"):
        read_ava_results(tmp_path / "bad.csv")


def test_proposals_csv_pickle_and_refusal(tmp_path):
    (tmp_path / "p.csv").write_text("vid,0902,0.1,0.1,0.5,0.5,0.95\nvid,0902,0.5,0.5,0.9,0.9,0.3\n")
    props = read_proposals(tmp_path / "p.csv")
    np.testing.assert_allclose(props[("vid", 902.0)][:, 4], [0.95, 0.3], rtol=1e-6)
    boxes = {"vid,0902": np.array([[0.1, 0.1, 0.5, 0.5, 0.9]], np.float32),
             "vid,0903": np.array([[0.2, 0.1, 0.6, 0.7]], np.float64), "other,0902": np.zeros((0, 5), np.float32)}
    for protocol in (2, 4, 5):
        (tmp_path / "p.pkl").write_bytes(pickle.dumps(boxes, protocol=protocol))
        got = read_proposals(tmp_path / "p.pkl")
        np.testing.assert_array_equal(got[("vid", 902.0)], boxes["vid,0902"])
        np.testing.assert_allclose(got[("vid", 903.0)], [[0.2, 0.1, 0.6, 0.7, 1.0]], rtol=1e-6)
        assert got[("other", 902.0)].shape == (0, 5)
    # big-endian and Fortran-ordered arrays survive the conversion too
    arr = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))
    got = safe_unpickle(pickle.dumps({"a": arr, "b": [1, 2.5, "x", None, True, (3,)]}))
    np.testing.assert_array_equal(got["a"], arr)
    # numpy's own unpickling (which reads the array now) gives the values in native byte order
    assert got["a"].dtype == pickle.loads(pickle.dumps(arr)).dtype == np.float64
    assert got["b"] == [1, 2.5, "x", None, True, (3,)]

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"vid,0902": Evil()}))
    with pytest.raises(AnnotationError, match=r"evil.pkl: cannot convert pickle safely: refusing to load builtins.print"):
        read_proposals(tmp_path / "evil.pkl")
    # protocol 0 names its globals as text; a persistent id would hand the object to the caller: both refused
    for stream, refused in ((b"cos\nsystem\n(S'echo hostile'\ntR.", "refusing to load os.system"),
                            (b"cnumpy\nload\n(S'x.npy'\ntR.", "refusing to load numpy.load"),
                            (b"Pfile\n.", "refusing a persistent id")):
        with pytest.raises(AnnotationError, match=f"hostile: cannot convert pickle safely: {refused}"):
            safe_unpickle(stream, "hostile")
    with pytest.raises(AnnotationError, match=r"no proposals for 2 video\(s\) of the annotations: a, b"):
        check_proposals_cover(props, [("a", 1.0), ("b", 2.0), ("vid", 902.0)], "p.csv")


# ----------------------------------------------------------------------------- CLI


def _write_case(tmp_path):
    write_ava_results(tmp_path / "pred.csv", DETS)
    with open(tmp_path / "gt.csv", "w") as f:
        for r in GT:
            f.write(f"{r.video_id},{int(r.timestamp):04d},{','.join(map(str, r.box))},{r.action_id},{r.person_id}\n")
    (tmp_path / "map.pbtxt").write_text("".join(f'item {{\n  name: "{n}"\n  id: {i}\n}}\n' for i, n in LABELS.items()))
    (tmp_path / "ex.csv").write_text("v2,0902\n")


def test_eval_ava_scores_a_result_file(tmp_path):
    from internvideo.tasks import ava

    _write_case(tmp_path)
    import argparse

    parser = argparse.ArgumentParser()
    ava.add_arguments(parser)
    args = parser.parse_args(["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv"), "--labels",
                              str(tmp_path / "map.pbtxt"), "--exclude", str(tmp_path / "ex.csv"), "--json",
                              "--out", str(tmp_path / "r.json")])
    assert ava.main(args) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["mAP"] == pytest.approx((200 / 3 + 50) / 3)
    assert result["per_class"] == {"stand": pytest.approx(200 / 3), "sit": 50.0, "talk": 0.0, "run": None}
    (tmp_path / "bad.csv").write_text("v1,0902,0.5,0.1,0.4,0.2,1,0.3\n")
    bad = parser.parse_args(["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "bad.csv")])
    with pytest.raises(AnnotationError, match=r"bad.csv:1: box"):  # cli.main prints it (one line, exit 2)
        ava.main(bad)
    missing = parser.parse_args(["--gt", str(tmp_path / "nope.csv"), "--pred", str(tmp_path / "bad.csv")])
    with pytest.raises(MissingFile, match="--gt: no such file"):
        ava.main(missing)
    assert not math.isnan(result["mAP"])


def test_cli_eval_ava_json_and_user_errors(tmp_path):
    import subprocess
    import sys

    _write_case(tmp_path)
    base = [sys.executable, "-m", "internvideo.cli", "eval", "ava", "--gt", str(tmp_path / "gt.csv"),
            "--labels", str(tmp_path / "map.pbtxt"), "--exclude", str(tmp_path / "ex.csv")]
    done = subprocess.run(base + ["--pred", str(tmp_path / "pred.csv"), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["mAP"] == pytest.approx((200 / 3 + 50) / 3) and result["per_class"]["run"] is None
    table = subprocess.run(base + ["--pred", str(tmp_path / "pred.csv")], capture_output=True, text=True)
    assert "frame-mAP@0.5: 38.89 %" in table.stdout
    (tmp_path / "bad.csv").write_text("v1,0902,0.5,0.1,0.4,0.2,1,0.3\n")
    bad = subprocess.run(base + ["--pred", str(tmp_path / "bad.csv")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"internvideo: error: {tmp_path / 'bad.csv'}:1: box (0.5, 0.1, 0.4, 0.2) "
                                               "has x2 < x1 or y2 < y1"]
