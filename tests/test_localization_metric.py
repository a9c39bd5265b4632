"""The ActivityNet detection mAP: hand-computed cases, a slow explicit reference, result files, the CLI."""
from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from internvideo.data import AnnotationError, LocalizationVideo, Segment, read_activitynet
from internvideo.tasks.localization import (
    ACTIVITYNET_TIOUS, THUMOS_TIOUS, Detection, detection_map, evaluate_detections, interpolated_ap, read_detections,
    remove_duplicate_segments, write_detections,
)
from internvideo.errors import UsageError


def video(vid, segments, subset="validation", duration=100.0):
    return LocalizationVideo(vid, duration, subset, tuple(Segment(s, e, c) for s, e, c in segments))


def gt_of(*videos):
    return {v.video_id: v for v in videos}


# ----------------------------------------------------------------------------- hand-computed


def test_two_ground_truths_one_duplicate_prediction():
    # A [0,10] s=.9 hits GT1 (tIoU 1); B [1,11] s=.8 overlaps GT1 by 9/11 but GT1 is taken and GT2 is
    # disjoint -> FP; C [20,29] s=.7 hits GT2 with tIoU .9.
    gt = gt_of(video("v", [(0, 10, "a"), (20, 30, "a")]))
    dets = [Detection("v", "a", .9, 0, 10), Detection("v", "a", .8, 1, 11), Detection("v", "a", .7, 20, 29)]
    r = detection_map(gt, dets, tiou_thresholds=[0.5, 0.95])
    # tIoU .5: hits 1,0,1 -> precision 1, 1/2, 2/3 at recall .5, .5, 1 -> AP = .5 * 1 + .5 * 2/3
    assert r["mAP"]["0.5"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))
    # tIoU .95: only A hits -> AP = .5
    assert r["mAP"]["0.95"] == pytest.approx(50.0)
    assert r["average_mAP"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3 + 0.5) / 2)
    assert (r["num_classes"], r["num_ground_truth"], r["num_predictions"]) == (1, 2, 3)


def test_prediction_takes_the_highest_tiou_free_ground_truth():
    # P1 overlaps G1 [0,10] (tIoU 6/14) and G2 [8,18] (tIoU 8/10): it takes G2; P2 [0,9] then takes G1.
    gt = gt_of(video("v", [(0, 10, "a"), (8, 18, "a")]))
    dets = [Detection("v", "a", .9, 4, 16), Detection("v", "a", .8, 0, 9)]
    assert detection_map(gt, dets, tiou_thresholds=[0.5])["average_mAP"] == pytest.approx(100.0)
    # At tIoU .85 P1 reaches neither (.8 < .85): a FP; P2 hits G1 (.9) -> precision 1/2 at recall 1/2.
    assert detection_map(gt, dets, tiou_thresholds=[0.85])["average_mAP"] == pytest.approx(25.0)


def test_ties_later_listed_goes_first():
    gt = gt_of(video("v", [(0, 10, "a")]))
    hit, miss = Detection("v", "a", .5, 0, 10), Detection("v", "a", .5, 50, 60)
    # Equal scores: the later-listed prediction is ranked first (the reference's reversed argsort).
    assert detection_map(gt, [miss, hit], tiou_thresholds=[0.5])["average_mAP"] == pytest.approx(100.0)
    assert detection_map(gt, [hit, miss], tiou_thresholds=[0.5])["average_mAP"] == pytest.approx(50.0)


def test_classes_without_predictions_score_zero_and_only_gt_classes_count():
    gt = gt_of(video("v1", [(0, 10, "a")]), video("v2", [(5, 8, "b")]))
    dets = [Detection("v1", "a", .9, 0, 10), Detection("v1", "zzz", .99, 0, 10)]
    r = detection_map(gt, dets, tiou_thresholds=[0.5])
    assert r["per_class"] == {"a": [100.0], "b": [0.0]}
    assert r["average_mAP"] == pytest.approx(50.0)
    assert r["num_ignored_predictions"] == 1


def test_predictions_on_videos_without_that_class_or_outside_the_subset_are_false_positives():
    gt = gt_of(video("v1", [(0, 10, "a")]), video("v2", [(0, 10, "b")]),
               video("t1", [(0, 10, "a")], subset="training"))
    dets = [Detection("v2", "a", .9, 0, 10),  # v2 has no "a": FP
            Detection("t1", "a", .8, 0, 10),  # training video, not evaluated: FP
            Detection("v1", "a", .7, 0, 10), Detection("v2", "b", .5, 0, 10)]
    r = detection_map(gt, dets, subset="Validation", tiou_thresholds=[0.5])
    assert r["per_class"]["a"] == [pytest.approx(100 / 3)]  # first hit at rank 3: precision 1/3, recall 1
    assert r["per_class"]["b"] == [100.0]
    assert (r["num_videos"], r["num_ground_truth"]) == (2, 2)


def test_duplicate_and_tiny_ground_truth_removed():
    segs = [(0, 10, "a"), (0.0005, 10.0009, "a"), (0, 10, "b"), (3, 3.0005, "a")]
    assert remove_duplicate_segments(segs) == [(0, 10, "a"), (0, 10, "b")]
    gt = gt_of(video("v", segs))
    r = detection_map(gt, [Detection("v", "a", .9, 0, 10)], tiou_thresholds=[0.5])
    assert r["per_class"]["a"] == [100.0]  # recall 1, not 1/2: the repeat is gone
    assert r["num_duplicates_removed"] == 2


def test_empty_predictions_and_non_finite_scores():
    gt = gt_of(video("v", [(0, 10, "a")]), video("empty", []))
    r = detection_map(gt, [], tiou_thresholds=THUMOS_TIOUS)
    assert r["average_mAP"] == 0.0 and list(r["mAP"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    nan_first = [Detection("v", "a", math.nan, 0, 10), Detection("v", "a", math.inf, 0, 10),
                 Detection("v", "a", .1, 40, 50), Detection("v", "a", .05, 0, 10)]
    r = detection_map(gt, nan_first, tiou_thresholds=[0.5])
    # NaN/inf never hit; the FP at .1 comes first, then the hit: precision 1/2 at recall 1.
    assert r["average_mAP"] == pytest.approx(50.0) and r["num_nonfinite"] == 2


def test_interpolated_ap_is_voc2011():
    # precision 1, .5, .667 at recall .5, .5, 1: the dip is filled from the right.
    assert interpolated_ap(np.array([1, .5, 2 / 3]), np.array([.5, .5, 1])) == pytest.approx(.5 + .5 * 2 / 3)
    # recall never reaching 1 leaves the rest at precision 0
    assert interpolated_ap(np.array([1.0]), np.array([.25])) == pytest.approx(.25)


def test_no_ground_truth_is_an_error():
    with pytest.raises(UsageError, match="no ground-truth segments in subset 'test'"):
        detection_map(gt_of(video("v", [(0, 1, "a")])), [], subset="test")


# ----------------------------------------------------------------------------- against a slow explicit version


def slow_map(gt, dets, thresholds, subset=None):
    """A literal loop version of the evaluation (one prediction, one threshold, one GT at a time)."""
    gts = []  # (video, start, end, label)
    for vid, v in gt.items():
        if subset is not None and v.subset.lower() != subset:
            continue
        kept = []
        for s in v.segments:
            if s.end - s.start < 1e-3:
                continue
            if any(s.label == k.label and abs(s.start - k.start) <= 1e-3 and abs(s.end - k.end) <= 1e-3 for k in kept):
                continue
            kept.append(s)
        gts += [(vid, s.start, s.end, s.label) for s in kept]
    classes = sorted({g[3] for g in gts})
    aps = []
    for c in classes:
        cg = [g for g in gts if g[3] == c]
        cp = [d for d in dets if d.label == c]
        # ascending stable sort reversed
        order = sorted(range(len(cp)), key=lambda i: cp[i].score)[::-1]
        row = []
        for t in thresholds:
            locked = [False] * len(cg)
            tp = []
            for i in order:
                d = cp[i]
                best, best_iou = None, -1.0
                for j, g in enumerate(cg):
                    if g[0] != d.video_id or locked[j]:
                        continue
                    inter = max(0.0, min(d.end, g[2]) - max(d.start, g[1]))
                    iou = inter / ((d.end - d.start) + (g[2] - g[1]) - inter)
                    if iou >= t and iou >= best_iou:  # ">=": equal tIoU goes to the later GT
                        best, best_iou = j, iou
                if best is not None:
                    locked[best] = True
                tp.append(best is not None)
            # VOC 2011 area
            hits, ap, prec = 0, 0.0, []
            recs = []
            for k, h in enumerate(tp):
                hits += h
                prec.append(hits / (k + 1))
                recs.append(hits / len(cg))
            for k in range(len(tp)):
                if tp[k]:
                    ap += max(prec[k:]) / len(cg)
            row.append(ap)
        aps.append(row)
    return 100 * np.asarray(aps).mean(axis=0)


def test_matches_slow_reference_on_random_data():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    videos = []
    for i in range(12):
        segs = []
        for _ in range(rng.integers(0, 5)):
            s = float(rng.uniform(0, 90))
            segs.append((s, s + float(rng.uniform(0.5, 10)), labels[rng.integers(3)]))
        if segs and rng.random() < .3:
            segs.append(segs[0])  # a duplicate
        videos.append(video(f"v{i}", segs, subset="validation" if i % 3 else "training"))
    gt = gt_of(*videos)
    dets = []
    for i in range(12):
        for _ in range(rng.integers(0, 15)):
            s = float(rng.uniform(0, 90))
            # coarse scores make ties common
            dets.append(Detection(f"v{i}", labels[rng.integers(3)], float(rng.integers(0, 6)) / 5, s,
                                  s + float(rng.uniform(0.5, 12))))
    for subset in (None, "validation"):
        ours = detection_map(gt, dets, subset=subset, tiou_thresholds=ACTIVITYNET_TIOUS)
        expect = slow_map(gt, dets, ACTIVITYNET_TIOUS, subset)
        np.testing.assert_allclose(list(ours["mAP"].values()), expect, atol=1e-9)
        assert ours["average_mAP"] == pytest.approx(expect.mean())


# ----------------------------------------------------------------------------- files and CLI


def test_result_file_round_trip_and_errors(tmp_path):
    dets = [Detection("v1", "a", .9, 0.0, 10.0), Detection("v2", "b", .1, 1.5, 2.5)]
    path = write_detections(dets, tmp_path / "res.json", videos=["v1", "v2", "v3"])
    data = json.loads(open(path).read())
    assert data["results"]["v3"] == [] and data["results"]["v1"] == [{"label": "a", "score": .9,
                                                                       "segment": [0.0, 10.0]}]
    back = read_detections(path)
    assert [(d.video_id, d.label, d.score, d.start, d.end) for d in back] == \
        [(d.video_id, d.label, d.score, d.start, d.end) for d in dets]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"v1": [{"label": "a", "segment": [0, 1]}]}}))
    with pytest.raises(AnnotationError, match=r'results/v1\[0\]: missing "score"'):
        read_detections(bad)
    bad.write_text(json.dumps({"database": {}}))
    with pytest.raises(AnnotationError, match='"results"'):
        read_detections(bad)
    bad.write_text(json.dumps({"results": {"v1": [{"label": "a", "score": 1, "segment": [3, 1]}]}}))
    with pytest.raises(AnnotationError, match=r"results/v1\[0\]/segment.*start <= end"):
        read_detections(bad)


def test_activitynet_reader_clips_and_names_missing_keys(tmp_path, caplog):
    f = tmp_path / "gt.json"
    f.write_text(json.dumps({"database": {"v": {"duration": 10, "subset": "validation", "annotations": [
        {"segment": [-1, 4], "label": "a"}, {"segment": [8, 12], "label": "b"}, {"segment": [11, 12], "label": "c"}],
        "fps": 30}, "e": {"duration": 5, "subset": "validation", "annotations": []}}}))
    clipped = read_activitynet(f)
    assert [(s.start, s.end, s.label) for s in clipped["v"].segments] == [(0, 4, "a"), (8, 10, "b")]
    assert clipped["v"].fps == 30 and clipped["e"].segments == ()
    assert "3 segment(s) outside [0, duration] clipped (1 left empty" in caplog.text
    raw = read_activitynet(f, clip=False)
    assert [(s.start, s.end) for s in raw["v"].segments] == [(-1, 4), (8, 12), (11, 12)]
    f.write_text(json.dumps({"videos": {}}))
    with pytest.raises(AnnotationError, match='missing key "database"'):
        read_activitynet(f)
    f.write_text(json.dumps({"database": {"v": {"subset": "x"}}}))
    with pytest.raises(AnnotationError, match='database/v: missing key "duration"'):
        read_activitynet(f)
    f.write_text(json.dumps({"database": {"v": {"duration": 3, "annotations": [{"segment": [0, 1]}]}}}))
    with pytest.raises(AnnotationError, match=r'database/v/annotations\[0\]: missing key "label"'):
        read_activitynet(f)


def _cli(capsys, *args):
    from internvideo.cli import main

    code = main(["eval", "localization", *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_eval_cli_scores_a_result_file(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": {
        "v": {"duration": 40, "subset": "validation", "annotations": [{"segment": [0, 10], "label": "a"},
                                                                      {"segment": [20, 30], "label": "a"}]},
        "t": {"duration": 40, "subset": "training", "annotations": [{"segment": [0, 10], "label": "b"}]}}}))
    pred = write_detections([Detection("v", "a", .9, 0, 10), Detection("v", "a", .8, 1, 11),
                             Detection("v", "a", .7, 20, 29)], tmp_path / "pred.json")
    res = evaluate_detections(gt, pred, subset="validation", tiou_thresholds=[0.5, 0.95])
    assert res["average_mAP"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3 + 0.5) / 2)
    out = _cli(capsys, "--gt", str(gt), "--pred", pred, "--subset", "validation", "--tiou", "0.5", "0.95", "--json")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["mAP"] == {"0.5": pytest.approx(100 * (0.5 + 0.5 * 2 / 3)), "0.95": pytest.approx(50.0)}
    assert printed["average_mAP"] == pytest.approx(res["average_mAP"])
    table = _cli(capsys, "--gt", str(gt), "--pred", pred, "--protocol", "thumos")
    assert table.returncode == 0 and "mAP@0.3 (%)" in table.stdout and "average mAP (%)" in table.stdout
    bad = _cli(capsys, "--gt", str(pred), "--pred", pred)
    assert bad.returncode == 2 and bad.stderr.startswith("internvideo: error: ") and 'database' in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
