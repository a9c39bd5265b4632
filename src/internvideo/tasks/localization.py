"""Temporal action localization: the ActivityNet detection mAP, result files, and the ``eval localization`` CLI.

The metric is computed as the evaluation behind InternVideo's reported numbers
(ActionFormer's copy of the ActivityNet detection evaluation,
``libs/utils/metrics.py`` of ``happyharrycn/actionformer_release``, itself
adapted from ``Evaluation/eval_detection.py`` of ``activitynet/ActivityNet``):

* ground truth comes only from videos of the requested ``subset`` (all videos
  when it is None; compared case-insensitively);
* per video, ground-truth segments shorter than 1e-3 s and duplicates (same
  label, both boundaries within 1e-3 s of an earlier kept one) are dropped;
* classes are the labels that have ground truth; each is scored on its own and
  the mean over them is the mAP (a class with ground truth and no predictions
  scores AP 0); predicted labels without ground truth are ignored (counted);
* a class's predictions are taken in descending score order; each takes the
  still-unmatched ground truth of its video with the highest tIoU, if that tIoU
  reaches the threshold (a true positive), else it is a false positive; so are
  predictions on videos without ground truth of their class (other subsets too);
* AP is the VOC 2011 interpolated area: precision made monotone from the right,
  summed over the recall steps (recall 0 -> 1 with precision 0 past the last hit).

Ties: equal scores are taken in the order of the reference's reversed ascending
``argsort`` with equal keys kept in order, i.e. the prediction listed *later*
in the result file goes first (numpy's default sort keeps equal keys in order
for small arrays, so this is what the reference does there; for large tied
groups the reference's order is whatever numpy's sort gives). Ground truths of
equal tIoU are tried later-listed first, for the same reason.

Non-finite scores or boundaries never count as hits: such predictions are
ranked after all others as false positives (which cannot change an AP), and
counted in the result.

Results are percentages. ``{"mAP": {"0.5": ..., ...}, "average_mAP": ...}``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import fileio
from ..data.datasets import AnnotationError, LocalizationVideo, json_number, load_json, read_activitynet, read_segment
from .. import argtypes
from ..errors import UsageError, run_command
from ..models.protocols import Localizer, saved_class_names

log = logging.getLogger("internvideo.localization")

#: tIoU thresholds of the two protocols, spelled as ActionFormer's evaluation builds them.
THUMOS_TIOUS = tuple(float(t) for t in np.linspace(0.3, 0.7, 5))
ACTIVITYNET_TIOUS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
DUPLICATE_TOL = 1e-3

__all__ = [
    "Detection", "THUMOS_TIOUS", "ACTIVITYNET_TIOUS", "segment_iou", "interpolated_ap", "remove_duplicate_segments",
    "average_precision_detection", "detection_map", "read_detections", "write_detections", "evaluate_detections",
    "results_table", "add_arguments", "main", "localize", "random_detections", "chance_map", "evaluate_localization",
    "timeline_figure",
]


class Detection:
    """One predicted segment: ``video_id``, ``label``, ``score``, ``start``, ``end`` (seconds)."""

    __slots__ = ("video_id", "label", "score", "start", "end")

    def __init__(self, video_id: str, label: str, score: float, start: float, end: float) -> None:
        self.video_id, self.label, self.score, self.start, self.end = video_id, label, score, start, end

    def __repr__(self) -> str:
        return (f"Detection({self.video_id!r}, {self.label!r}, score={self.score:.4g}, "
                f"segment=[{self.start:.3f}, {self.end:.3f}])")

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "score": float(self.score), "segment": [float(self.start), float(self.end)]}


# ----------------------------------------------------------------------------- the metric


def segment_iou(segment: Sequence[float], candidates: np.ndarray) -> np.ndarray:
    """tIoU of one ``[start, end]`` against candidates ``(N, 2)``: intersection over union of lengths."""
    c = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    inter = (np.minimum(segment[1], c[:, 1]) - np.maximum(segment[0], c[:, 0])).clip(0)
    union = (c[:, 1] - c[:, 0]) + (segment[1] - segment[0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC 2011 interpolated AP of each row of ``precision``/``recall`` ``(K, N)`` (or one ``(N,)`` curve)."""
    p, r = np.atleast_2d(precision).astype(np.float64), np.atleast_2d(recall).astype(np.float64)
    k = p.shape[0]
    mprec = np.hstack([np.zeros((k, 1)), p, np.zeros((k, 1))])
    mrec = np.hstack([np.zeros((k, 1)), r, np.ones((k, 1))])
    # Precision at recall r becomes the best precision at any recall >= r.
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    steps = mrec[:, 1:] - mrec[:, :-1]
    ap = (steps * mprec[:, 1:]).sum(axis=1)
    return ap if np.ndim(precision) == 2 else ap[0]


def remove_duplicate_segments(segments: Iterable[tuple[float, float, str]], tol: float = DUPLICATE_TOL
                              ) -> list[tuple[float, float, str]]:
    """Drop segments shorter than ``tol`` and repeats (same label, both ends within ``tol`` of a kept one)."""
    kept: list[tuple[float, float, str]] = []
    for s, e, label in segments:
        if e - s < tol:
            continue
        if any(label == kl and abs(s - ks) <= tol and abs(e - ke) <= tol for ks, ke, kl in kept):
            continue
        kept.append((s, e, label))
    return kept


def _descending(scores: np.ndarray) -> np.ndarray:
    """Order of the reference: reversed stable ascending sort (equal scores: later-listed first)."""
    return np.argsort(scores, kind="stable")[::-1]


def average_precision_detection(ground_truth: Mapping[str, np.ndarray], pred_videos: Sequence[str],
                                pred_segments: np.ndarray, pred_scores: np.ndarray,
                                tiou_thresholds: Sequence[float]) -> np.ndarray:
    """AP (fractions, one per threshold) of one class.

    ``ground_truth`` maps video id -> ``(G, 2)`` segments of this class;
    predictions are parallel sequences (listed order matters only for ties).
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    npos = sum(len(g) for g in ground_truth.values())
    num_pred = len(pred_scores)
    if num_pred == 0 or npos == 0:
        return np.zeros(len(thresholds))
    scores = np.asarray(pred_scores, dtype=np.float64)
    segments = np.asarray(pred_segments, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(scores) & np.isfinite(segments).all(axis=1)
    # Non-finite predictions go after every finite one and are never matched.
    order = np.concatenate([np.flatnonzero(finite)[_descending(scores[finite])], np.flatnonzero(~finite)])
    tp = np.zeros((len(thresholds), num_pred), dtype=bool)
    by_video: dict[str, list[int]] = defaultdict(list)
    for rank, i in enumerate(order):
        if finite[i]:
            by_video[pred_videos[i]].append(rank)
    for video, ranks in by_video.items():
        gt = ground_truth.get(video)
        if gt is None or len(gt) == 0:
            continue
        locked = np.zeros((len(thresholds), len(gt)), dtype=bool)
        for rank in ranks:
            iou = segment_iou(segments[order[rank]], gt)
            if not (iou >= thresholds.min()).any():
                continue
            # Free ground truths at or above each threshold; the highest tIoU wins, ties to the later one.
            cand = np.where(~locked & (iou[None, :] >= thresholds[:, None]), iou[None, :], -1.0)
            best = len(gt) - 1 - np.argmax(cand[:, ::-1], axis=1)
            hit = cand[np.arange(len(thresholds)), best] >= 0
            tp[hit, rank] = True
            locked[np.flatnonzero(hit), best[hit]] = True
    tp_cum = np.cumsum(tp, axis=1, dtype=np.float64)
    fp_cum = np.cumsum(~tp, axis=1, dtype=np.float64)
    return interpolated_ap(tp_cum / (tp_cum + fp_cum), tp_cum / npos)


def _tiou_key(t: float) -> str:
    return f"{round(float(t), 6):g}"


def detection_map(ground_truth: Mapping[str, LocalizationVideo], detections: Iterable[Detection], *,
                  subset: str | None = None, tiou_thresholds: Sequence[float] = ACTIVITYNET_TIOUS) -> dict[str, Any]:
    """ActivityNet detection mAP (percent) of ``detections`` against ``ground_truth`` (see the module doc).

    Returns ``mAP`` (tIoU key -> percent), ``average_mAP``, ``per_class`` (label
    -> AP per threshold, percent) and counts: ``num_videos``, ``num_classes``,
    ``num_ground_truth``, ``num_duplicates_removed``, ``num_predictions``,
    ``num_ignored_predictions`` (labels without ground truth), ``num_nonfinite`` (never hits),
    ``num_predictions_unknown_videos`` (videos not in the ground truth or subset: false positives).
    """
    thresholds = [float(t) for t in tiou_thresholds]
    if not thresholds:
        raise UsageError("at least one tIoU threshold is needed")
    if any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise UsageError(f"tIoU thresholds must lie in [0, 1], got {thresholds}")
    want = None if subset is None else subset.lower()
    gt: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(dict)
    num_videos = num_gt = removed = 0
    for vid, video in ground_truth.items():
        if want is not None and video.subset.lower() != want:
            continue
        num_videos += 1
        raw = [(s.start, s.end, s.label) for s in video.segments]
        kept = remove_duplicate_segments(raw)
        removed += len(raw) - len(kept)
        for s, e, label in kept:
            gt[label].setdefault(vid, []).append((s, e))
            num_gt += 1
    if not gt:
        where = f" in subset {subset!r}" if subset is not None else ""
        raise UsageError(f"no ground-truth segments{where}: nothing to evaluate")
    preds: dict[str, tuple[list[str], list[tuple[float, float]], list[float]]] = {c: ([], [], []) for c in gt}
    num_pred = ignored = nonfinite = unknown_video = 0
    gt_videos = {vid for per_video in gt.values() for vid in per_video} | {
        vid for vid, video in ground_truth.items() if want is None or video.subset.lower() == want}
    for d in detections:
        num_pred += 1
        if not (np.isfinite(d.score) and np.isfinite(d.start) and np.isfinite(d.end)):
            nonfinite += 1
        if d.video_id not in gt_videos:
            unknown_video += 1  # scored as a false positive, as the official evaluation does
        bucket = preds.get(d.label)
        if bucket is None:
            ignored += 1
            continue
        bucket[0].append(d.video_id)
        bucket[1].append((d.start, d.end))
        bucket[2].append(d.score)
    classes = sorted(gt)
    ap = np.zeros((len(thresholds), len(classes)))
    for j, label in enumerate(classes):
        videos, segs, scores = preds[label]
        if not videos:
            log.warning("no predictions of label %r", label)
        gt_arrays = {v: np.asarray(s, dtype=np.float64) for v, s in gt[label].items()}
        ap[:, j] = average_precision_detection(gt_arrays, videos, np.asarray(segs, dtype=np.float64).reshape(-1, 2),
                                               np.asarray(scores, dtype=np.float64), thresholds)
    mean = ap.mean(axis=1)
    return {
        "task": "localization",
        "subset": subset,
        "mAP": {_tiou_key(t): 100.0 * float(m) for t, m in zip(thresholds, mean)},
        "average_mAP": 100.0 * float(mean.mean()),
        "per_class": {c: [100.0 * float(x) for x in ap[:, j]] for j, c in enumerate(classes)},
        "num_videos": num_videos,
        "num_classes": len(classes),
        "num_ground_truth": num_gt,
        "num_duplicates_removed": removed,
        "num_predictions": num_pred,
        "num_ignored_predictions": ignored,
        "num_nonfinite": nonfinite,
        "num_predictions_unknown_videos": unknown_video,
    }


# ----------------------------------------------------------------------------- result files


def read_detections(path: str | os.PathLike) -> list[Detection]:
    """An ActivityNet detection result file: ``{"results": {video_id: [{"label", "score", "segment"}]}}``.

    Errors name the offending field (``results/v_1[3]/segment``). ``NaN``
    scores are accepted (they never count as hits, and are counted). A video
    key given twice is an error: a JSON reader would silently keep only the
    last list.
    """
    path = os.fspath(path)
    data = load_json(path)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise AnnotationError(path, 'expected a top-level object with a "results" object (ActivityNet result format)')
    out = []
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise AnnotationError(path, "must be a list of detections", field=f"results/{vid}")
        for i, entry in enumerate(entries):
            where = f"results/{vid}[{i}]"
            if not isinstance(entry, dict):
                raise AnnotationError(path, "must be an object", field=where)
            for key in ("label", "score", "segment"):
                if key not in entry:
                    raise AnnotationError(path, f'missing "{key}"', field=where)
            start, end = read_segment(entry["segment"], path, f"{where}/segment")
            label = entry["label"]
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                raise AnnotationError(path, f"label must be a string, got {label!r}", field=f"{where}/label")
            out.append(Detection(str(vid), str(label), json_number(entry["score"], path, f"{where}/score"), start, end))
    return out


def write_detections(detections: Iterable[Detection], path: str | os.PathLike, *,
                     videos: Iterable[str] = (), external_data: Mapping[str, Any] | None = None) -> str:
    """Write an ActivityNet result file (every id in ``videos`` gets an entry, empty if nothing was found)."""
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in videos}
    for d in detections:
        results.setdefault(d.video_id, []).append(d.as_json())
    payload = {"version": "VERSION 1.3", "results": results,
               "external_data": dict(external_data or {"used": False, "details": ""})}
    path = os.fspath(path)
    fileio.write_json(path, payload, indent=None)
    return path


def evaluate_detections(gt: str | os.PathLike | Mapping[str, LocalizationVideo],
                        pred: str | os.PathLike | Iterable[Detection], *, subset: str | None = None,
                        tiou_thresholds: Sequence[float] = ACTIVITYNET_TIOUS) -> dict[str, Any]:
    """Score a result file (or detections) against an ActivityNet-style ground truth (file or parsed)."""
    database = read_activitynet(gt, clip=False) if isinstance(gt, (str, os.PathLike)) else gt
    detections = read_detections(pred) if isinstance(pred, (str, os.PathLike)) else pred
    results = detection_map(database, detections, subset=subset, tiou_thresholds=tiou_thresholds)
    if isinstance(gt, (str, os.PathLike)):
        results["gt"] = os.fspath(gt)
    if isinstance(pred, (str, os.PathLike)):
        results["pred"] = os.fspath(pred)
    return results


def results_table(results: Mapping[str, Any]) -> str:
    """mAP per tIoU and the average, as a plain-text table (two decimals, as localization papers print)."""
    title = "Temporal action localization" + (f" ({results['subset']})" if results.get("subset") else "")
    rows = [(f"mAP@{t} (%)", f"{v:.2f}") for t, v in results["mAP"].items()]
    rows += [("average mAP (%)", f"{results['average_mAP']:.2f}"), ("classes", results["num_classes"]),
             ("videos with ground truth", results["num_videos"]), ("ground-truth segments", results["num_ground_truth"]),
             ("predictions", results["num_predictions"])]
    if results.get("num_ignored_predictions"):
        rows.append(("ignored (label without GT)", results["num_ignored_predictions"]))
    if results.get("num_nonfinite"):
        rows.append(("non-finite (never hits)", results["num_nonfinite"]))
    if results.get("num_predictions_unknown_videos"):
        rows.append(("of videos without GT (false positives)", results["num_predictions_unknown_videos"]))
    if results.get("num_duplicates_removed"):
        rows.append(("duplicate GT segments (counted once)", results["num_duplicates_removed"]))
    if "chance_average_mAP" in results:
        rows.append(("random segments: average mAP (%)", f"{results['chance_average_mAP']:.2f}"))
    width = max(len(n) for n, _ in rows)
    lines = [title, "-" * (width + 12)] + [f"{n:<{width}}   {v!s:>8}" for n, v in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- running a model


def localize(model: Any, dataset: Any, *, class_scores: Mapping[str, Sequence[float]] | None = None,
             score_classes: Sequence[str] | None = None, top_k_classes: int = 2,
             device: str | None = None) -> list[Detection]:
    """Detections (seconds, clipped to each video's duration) of an :class:`ActionLocalizer` on a feature dataset.

    ``dataset`` is a :class:`~internvideo.data.localization.FeatureSequenceDataset`
    (its ``classes`` name the labels). ``class_scores`` maps video id to an
    external classifier's scores over ``score_classes`` (the ActivityNet
    protocol: the model's segments become class-agnostic proposals fused with
    each video's ``top_k_classes`` classes).
    """
    if class_scores is not None and not score_classes:
        raise UsageError("external class scores need the names of their classes")
    names = list(score_classes) if class_scores is not None else list(dataset.classes)
    import torch

    from .metrics import check_finite

    was_training = model.training
    dev = torch.device(device) if device else next(model.parameters()).device
    model.eval()
    out: list[Detection] = []
    try:
        with torch.no_grad():
            for i in range(len(dataset)):
                item = dataset[i]
                feats, mask = model.pad([item["feats"].to(dev)])
                ext = None
                if class_scores is not None:
                    if item["video_id"] not in class_scores:
                        raise UsageError(f"no external class scores for video {item['video_id']}")
                    ext = torch.as_tensor(class_scores[item["video_id"]], dtype=torch.float32)
                segs, scores, labels = model.predict(model(feats, mask), 0, class_scores=ext,
                                                     top_k_classes=top_k_classes)
                check_finite(torch.cat([segs.reshape(len(segs), -1).float(), scores.reshape(-1, 1).float()], 1),
                             f"detections of video {item['video_id']}")
                sec = item["timing"].to_seconds(segs.double().cpu()).clamp(0.0, item["duration"])
                out += [Detection(item["video_id"], names[int(c)], float(sc), float(a), float(b))
                        for (a, b), sc, c in zip(sec.tolist(), scores.tolist(), labels.tolist())]
    finally:
        model.train(was_training)
    return out


def random_detections(videos: Mapping[str, LocalizationVideo] | Sequence[LocalizationVideo], classes: Sequence[str],
                      *, per_video: int = 50, seed: int = 0) -> list[Detection]:
    """The chance reference: ``per_video`` segments per video, uniform ends, random class and score."""
    rng = np.random.default_rng(seed)
    items = videos.values() if isinstance(videos, Mapping) else videos
    out = []
    for v in items:
        ends = np.sort(rng.uniform(0, v.duration, (per_video, 2)), axis=1)
        labels = rng.integers(len(classes), size=per_video)
        for (a, b), c, sc in zip(ends, labels, rng.random(per_video)):
            out.append(Detection(v.video_id, classes[int(c)], float(sc), float(a), float(b)))
    return out


def chance_map(videos: Mapping[str, LocalizationVideo], classes: Sequence[str], *,
               tiou_thresholds: Sequence[float] = ACTIVITYNET_TIOUS, seeds: Sequence[int] = (0, 1, 2),
               per_video: int = 50) -> float:
    """Average mAP (percent) of :func:`random_detections`, averaged over ``seeds``."""
    return float(np.mean([detection_map(videos, random_detections(videos, classes, per_video=per_video, seed=s),
                                        tiou_thresholds=tiou_thresholds)["average_mAP"] for s in seeds]))


def evaluate_localization(model: Any, dataset: Any, *, tiou_thresholds: Sequence[float] = ACTIVITYNET_TIOUS,
                          pred_out: str | os.PathLike | None = None,
                          class_scores: Mapping[str, Sequence[float]] | None = None,
                          score_classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``model`` on ``dataset``, score it (percent), optionally write the ActivityNet result file.

    The results also give ``chance_average_mAP``: random segments
    (:func:`chance_map`) scored the same way, and ``num_missing_features``.
    """
    detections = localize(model, dataset, class_scores=class_scores, score_classes=score_classes)
    gt = {v.video_id: v for v in dataset.videos}
    results = detection_map(gt, detections, tiou_thresholds=tiou_thresholds)
    labels = sorted({s.label for v in gt.values() for s in v.segments})
    results["chance_average_mAP"] = chance_map(gt, labels, tiou_thresholds=tiou_thresholds)
    results["num_missing_features"] = len(dataset.missing)
    if pred_out is not None:
        results["pred"] = write_detections(detections, pred_out, videos=gt)
    return results


def timeline_figure(videos: Mapping[str, LocalizationVideo], detections: Iterable[Detection],
                    path: str | os.PathLike, *, video_ids: Sequence[str] | None = None, num_videos: int = 4,
                    top: int = 5) -> str:
    """PNG timelines: per video, ground truth (top row) and its ``top`` best predictions with labels and scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_video: dict[str, list[Detection]] = defaultdict(list)
    for d in detections:
        by_video[d.video_id].append(d)
    ids = list(video_ids) if video_ids is not None else [v for v in videos if videos[v].segments][:num_videos]
    labels = sorted({s.label for v in ids for s in videos[v].segments} |
                    {d.label for v in ids for d in by_video[v]})
    colours = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(labels)}
    fig, axes = plt.subplots(len(ids), 1, figsize=(10, 1.0 + 1.1 * (top + 1) * len(ids) / 3), squeeze=False)
    for ax, vid in zip(axes[:, 0], ids):
        video = videos[vid]
        for s in video.segments:
            ax.barh(top, s.end - s.start, left=s.start, height=0.8, color=colours[s.label])
            ax.text(s.start, top, s.label, va="center", fontsize=7)
        best = sorted(by_video[vid], key=lambda d: -d.score)[:top]
        for row, d in enumerate(best):
            y = top - 1 - row
            ax.barh(y, d.end - d.start, left=d.start, height=0.8, color=colours[d.label], alpha=0.55)
            ax.text(d.start, y, f"{d.label} {d.score:.2f}", va="center", fontsize=7)
        ax.set_yticks([top] + [top - 1 - r for r in range(len(best))],
                      ["ground truth"] + [f"pred {r + 1}" for r in range(len(best))], fontsize=7)
        ax.set_xlim(0, video.duration)
        ax.set_title(vid, fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval localization``: score a result file, or run a model on features first."""
    parser.add_argument("--gt", required=True, help="ActivityNet-style ground truth JSON ({\"database\": ...})")
    parser.add_argument("--pred", default=None, help="ActivityNet result JSON ({\"results\": ...}) to score; with "
                                                     "--model, where the model's results are written")
    parser.add_argument("--model", default=None, help="a trained localizer checkpoint directory: run it on --features")
    parser.add_argument("--features", default=None, help="folder of per-video .npy features (internvideo extract "
                                                         "--window output, or your own with --feat-stride ...)")
    parser.add_argument("--feat-stride", type=argtypes.positive_float, default=None, help="frames between feature windows")
    parser.add_argument("--window-frames", type=argtypes.positive_float, default=None, help="frames per feature window")
    parser.add_argument("--fps", type=argtypes.positive_float, default=None, help="frame rate of the videos")
    parser.add_argument("--class-scores", default=None, help="JSON {\"class\": [names], \"results\": {video_id: "
                                                             "[score per class]}} of an external video classifier to "
                                                             "fuse with class-agnostic proposals (ActivityNet protocol)")
    parser.add_argument("--subset", default=None, help="only videos of this subset give ground truth "
                                                       "(e.g. validation, test); default: all")
    parser.add_argument("--tiou", type=argtypes.unit_interval, nargs="+", default=None, metavar="T",
                        help="tIoU thresholds (default ActivityNet 0.5:0.95:0.05; THUMOS14: 0.3 0.4 0.5 0.6 0.7)")
    parser.add_argument("--protocol", choices=["activitynet", "thumos"], default="activitynet",
                        help="default thresholds when --tiou is not given")
    parser.add_argument("--figure", default=None, help="also draw a PNG timeline of a few videos here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--out", default=None, help="also write the results JSON here")


def _thresholds(args: argparse.Namespace) -> tuple[float, ...]:
    if args.tiou:
        return tuple(args.tiou)
    return THUMOS_TIOUS if args.protocol == "thumos" else ACTIVITYNET_TIOUS


def _run_model(args: argparse.Namespace, thresholds: Sequence[float]) -> dict[str, Any]:
    from ..data.localization import FeatureSequenceDataset
    from ..factory import load_model
    from .common import WrongModelError

    if not args.features:
        raise UsageError("--model needs --features (the folder of per-video .npy features)")
    model = load_model(args.model)
    if not isinstance(model, Localizer):
        raise WrongModelError(f"{args.model}: localization needs a temporal localizer (ActionFormer-style, reading "
                              f"feature sequences); this is a {type(model).__name__}")
    classes = list(saved_class_names(model) or ())
    if not classes:
        raise WrongModelError(f"{args.model}: the model has no class_names; it cannot name its predictions")
    dataset = FeatureSequenceDataset(args.gt, args.features, subset=args.subset, classes=classes,
                                     input_dim=model.config.input_dim, feat_stride=args.feat_stride,
                                     window_frames=args.window_frames, fps=args.fps)
    scores = names = None
    if args.class_scores:
        data = load_json(args.class_scores)
        if not isinstance(data, dict) or "class" not in data or "results" not in data:
            raise UsageError(f'{args.class_scores}: expected {{"class": [names], "results": {{video_id: [scores]}}}}')
        scores, names = data["results"], data["class"]
    pred = args.pred or "results.json"
    results = evaluate_localization(model, dataset, tiou_thresholds=thresholds, pred_out=pred, class_scores=scores,
                                    score_classes=names)
    results["model"] = str(args.model)
    return results


def main(args: argparse.Namespace) -> int:
    thresholds = _thresholds(args)
    if args.model:
        results = _run_model(args, thresholds)
    elif args.pred:
        results = evaluate_detections(args.gt, args.pred, subset=args.subset, tiou_thresholds=thresholds)
    else:
        raise UsageError("give --pred RESULTS.json to score, or --model and --features to run a model")
    if args.figure:
        gt = read_activitynet(args.gt, clip=False)
        results["figure"] = timeline_figure(gt, read_detections(results["pred"]), args.figure,
                                            video_ids=[v for v in gt if gt[v].segments and (
                                                args.subset is None or gt[v].subset.lower() == args.subset.lower())
                                            ][:4])
    if args.out:
        fileio.write_json(args.out, results)
    if args.json:
        print(fileio.json_text(results, indent=None))
    else:
        print(results_table(results))
        if args.model:
            print(f"results written to {results['pred']}")
    return 0


if __name__ == "__main__":  # scoring without the full CLI: python -m internvideo.tasks.localization --gt ... --pred ...
    _parser = argparse.ArgumentParser(prog="internvideo eval localization",
                                      description="ActivityNet detection mAP of a result file")
    add_arguments(_parser)
    sys.exit(run_command(main, _parser.parse_args()))
