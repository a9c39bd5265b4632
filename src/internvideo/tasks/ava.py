"""Spatiotemporal action localization (AVA): frame-mAP, detection, and ``internvideo eval ava``.

**frame-mAP@0.5, as the official AVA evaluation computes it** (``get_ava_performance.py``
of the ActivityNet challenge, v2.1/v2.2 with excluded timestamps, built on the
TF object-detection PASCAL evaluator):

* Only action ids of the label map count; rows of other ids (AVA's CSVs hold
  80 classes, 60 are evaluated) are left out of ground truth and detections.
* Keyframes listed as excluded are dropped from both.
* At most ``capacity`` (50) detections per keyframe, the highest-scoring ones.
* Per keyframe and class, detections in decreasing score each look at the
  ground-truth box of that class they overlap most (IoU, no +1 pixel); a hit
  if that IoU is >= 0.5 and the box is not yet taken, else a false positive
  (no fall-back to the second-best box). Detections at keyframes without
  ground truth are false positives; detection boxes with no area are dropped.
* Per class, all detections sorted by score give precision/recall; AP is the
  VOC area under the precision envelope (every recall step, not 11 points).
* Classes without ground truth are skipped; a class with ground truth and no
  detection scores 0. The mean runs over the remaining classes of the label
  map (unlike mmaction2's evaluation since 2023, which drops classes without detections).

Where the official code leaves something to chance this module fixes it:
equal scores are ordered false positives first (``ties="pessimistic"``, the
project's rule; ``"optimistic"`` gives the other bound), and detections with a
non-finite score are dropped, so they never count as hits.
Outputs are percentages.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..data.ava import (
    AVABox, AVADataset, AVADetection, Key, collate_ava, key_of, read_ava_groundtruth, read_ava_keyframes,
    read_ava_results,
    read_excluded_timestamps, read_label_map,
)
from .. import fileio
from ..data.datasets import AnnotationError
from .metrics import check_finite
from .. import argtypes
from ..errors import MissingFile, UsageError

__all__ = ["box_iou", "voc_average_precision", "frame_map", "evaluate_files", "detect",
           "results_table", "add_arguments", "main"]

Ties = Literal["pessimistic", "optimistic"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` x1, y1, x2, y2 boxes in continuous coordinates (no +1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.maximum(0.0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]))
    ih = np.maximum(0.0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]))
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def voc_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the monotone precision envelope, summed at every change of recall (0-1 scale)."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.size == 0:
        return 0.0
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def _match_keyframe(det_boxes: np.ndarray, gt_boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Hits of one class's detections (already in decreasing score) against that class's ground truth."""
    hits = np.zeros(len(det_boxes), dtype=bool)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return hits
    iou = box_iou(det_boxes, gt_boxes)
    best = iou.argmax(axis=1)  # first of equal overlaps, as numpy's argmax in the official code
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i, g in enumerate(best):
        if iou[i, g] >= threshold and not taken[g]:
            hits[i] = taken[g] = True
    return hits


def _top_detections(dets: list[AVADetection], capacity: int) -> list[AVADetection]:
    """The ``capacity`` best (``<= 0``: all) in decreasing score; on equal scores the earlier row first."""
    order = sorted(range(len(dets)), key=lambda i: (-dets[i].score, i))
    if capacity > 0:
        order = order[:capacity]
    return [dets[i] for i in order]


def frame_map(groundtruth: Iterable[AVABox], detections: Iterable[AVADetection],
              label_map: Mapping[int, str] | None = None, excluded: Iterable[Key] = (), *,
              iou_threshold: float = 0.5, capacity: int = 50, ties: Ties = "pessimistic",
              keyframes: Iterable[Key] | None = None) -> dict[str, Any]:
    """Frame-mAP of AVA detections (see the module docstring), in percent.

    Args:
        groundtruth: rows of :func:`~internvideo.data.ava.read_ava_groundtruth`.
        detections: rows of :func:`~internvideo.data.ava.read_ava_results`.
        label_map: ``{action_id: name}`` of the evaluated classes; ``None``: every id in the ground truth.
        excluded: keyframe keys (:func:`~internvideo.data.ava.key_of`) to drop.
        capacity: detections kept per keyframe (official: 50); ``0`` keeps all.
        keyframes: every annotated keyframe (:func:`~internvideo.data.ava.read_ava_keyframes`, those without
            boxes included); default: the keyframes with ground-truth boxes.

    Returns ``{"mAP", "per_class": {name: AP or None (no ground truth)}, "num_classes"
    (evaluated), "num_gt", "num_detections", "ignored": {reason: count}, "false_positives_off_ground_truth":
    {reason: count}}``: detections of videos the ground truth does not have, or at timestamps that are not
    annotated keyframes, are scored as false positives, as the official evaluation does, and counted.
    Ground truth with no box of an evaluated class is an error (its mAP would be NaN).
    """
    if ties not in ("pessimistic", "optimistic"):
        raise UsageError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    gt_rows, det_rows = list(groundtruth), list(detections)
    if label_map is None:
        label_map = {a: str(a) for a in sorted({r.action_id for r in gt_rows})}
    classes = set(label_map)
    excluded = {key_of(*k) for k in excluded}
    ignored = collections.Counter()

    gt: dict[Key, dict[int, list[tuple[float, ...]]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in gt_rows:
        key = key_of(r.video_id, r.timestamp)
        if r.action_id not in classes:
            ignored["gt rows of classes not in the label map"] += 1
        elif key in excluded:
            ignored["gt rows at excluded timestamps"] += 1
        else:
            gt[key][r.action_id].append(r.box)
    known_keys = {key_of(r.video_id, r.timestamp) for r in gt_rows} if keyframes is None else \
        {key_of(*k) for k in keyframes}
    known_videos = {k[0] for k in known_keys}
    off_gt = collections.Counter()
    per_key: dict[Key, list[AVADetection]] = collections.defaultdict(list)
    for d in det_rows:
        key = key_of(d.video_id, d.timestamp)
        if d.video_id not in known_videos:
            off_gt["detections of videos not in the ground truth"] += 1
        elif key not in known_keys:
            off_gt["detections at timestamps that are not annotated keyframes"] += 1
        if d.action_id not in classes:
            ignored["detections of classes not in the label map"] += 1
        elif key in excluded:
            ignored["detections at excluded timestamps"] += 1
        elif not math.isfinite(d.score):
            ignored["detections with a non-finite score"] += 1
        else:
            per_key[key].append(d)

    scores: dict[int, list[float]] = collections.defaultdict(list)
    hits: dict[int, list[bool]] = collections.defaultdict(list)
    num_kept = 0
    for key, dets in per_key.items():
        kept = _top_detections(dets, capacity)
        ignored["detections beyond the per-keyframe capacity"] += len(dets) - len(kept)
        by_class: dict[int, list[AVADetection]] = collections.defaultdict(list)
        for d in kept:
            x1, y1, x2, y2 = d.box
            if x2 > x1 and y2 > y1:
                by_class[d.action_id].append(d)
            else:
                ignored["detection boxes without area"] += 1
        for c, cdets in by_class.items():
            boxes = np.asarray([d.box for d in cdets], dtype=np.float64)
            truth = np.asarray(gt.get(key, {}).get(c, []), dtype=np.float64).reshape(-1, 4)
            scores[c].extend(d.score for d in cdets)
            hits[c].extend(_match_keyframe(boxes, truth, iou_threshold).tolist())
            num_kept += len(cdets)

    num_gt = collections.Counter()
    for classes_at_key in gt.values():
        for c, boxes in classes_at_key.items():
            num_gt[c] += len(boxes)
    per_class: dict[str, float | None] = {}
    aps = []
    for c, name in label_map.items():
        if num_gt[c] == 0:
            per_class[name] = None
            continue
        s = np.asarray(scores.get(c, []), dtype=np.float64)
        h = np.asarray(hits.get(c, []), dtype=bool)
        # Sort by score; among equal scores misses first (pessimistic) or hits first (optimistic).
        secondary = h if ties == "pessimistic" else ~h
        order = np.lexsort((secondary, -s))
        tp = np.cumsum(h[order])
        fp = np.cumsum(~h[order])
        ap = voc_average_precision(tp / np.maximum(tp + fp, 1), tp / num_gt[c]) * 100.0
        per_class[name] = ap
        aps.append(ap)
    if not aps:
        detail = "; ".join(f"{v} {k}" for k, v in ignored.items() if v)
        raise ValueError(f"no ground-truth box of an evaluated class ({len(gt_rows)} rows read"
                         f"{', ignored: ' + detail if detail else ''}): there is nothing to score")
    return {
        "task": "ava",
        "mAP": float(np.mean(aps)),
        "iou_threshold": iou_threshold,
        "per_class": per_class,
        "num_classes": len(aps),
        "num_gt": int(sum(num_gt.values())),
        "num_detections": num_kept,
        "ties": ties,
        "ignored": {k: v for k, v in ignored.items() if v},
        "false_positives_off_ground_truth": {k: v for k, v in off_gt.items() if v},
    }


def evaluate_files(gt: str | os.PathLike, pred: str | os.PathLike, labels: str | os.PathLike | None = None,
                   exclude: str | os.PathLike | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`frame_map` of an AVA ground-truth CSV and result CSV (label map ``.pbtxt``, excluded timestamps)."""
    label_map = read_label_map(labels) if labels is not None else None
    excluded = read_excluded_timestamps(exclude) if exclude is not None else set()
    try:
        results = frame_map(read_ava_groundtruth(gt), read_ava_results(pred), label_map, excluded,
                            keyframes=read_ava_keyframes(gt), **kwargs)
    except AnnotationError:
        raise
    except ValueError as e:  # nothing to score: say which file
        raise AnnotationError(gt, str(e)) from None
    results.update(gt=str(gt), pred=str(pred), labels=None if labels is None else str(labels),
                   exclude=None if exclude is None else str(exclude))
    return results


@torch.no_grad()
def detect(model: nn.Module, dataset: AVADataset, *, batch_size: int = 8, num_workers: int = 0,
           device: str | torch.device = "cpu", action_ids: Sequence[int] | None = None,
           min_score: float = 0.0, clip_level: bool = False, box_score: bool = False) -> list[AVADetection]:
    """Run ``model(video, rois) -> logits`` over the dataset's keyframes; one detection per (box, action).

    Scores are sigmoids (multi-label). Boxes are written as the dataset got
    them (before any test-time extension). ``action_ids``: the classes to
    report (default every output column ``j`` as id ``j + 1``).

    ``box_score=True`` multiplies each action score by the person box's detector score (1 for ground-truth
    boxes), as the official evaluation does (``PostProcessor`` in InternVideo's
    ``Spatial-Temporal-Action-Localization/engine_for_finetuning.py``, after AlphAction).

    ``clip_level=True`` is the box-agnostic baseline: ``model(video) -> logits``
    is a clip classifier, and every person of a clip gets its softmax scores.
    """
    model.eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=collate_ava)
    out: list[AVADetection] = []
    for batch in loader:
        if batch["video"] is None or len(batch["rois"]) == 0:
            continue
        video, rois = batch["video"].to(device), batch["rois"].to(device)
        clip = batch["rois"][:, 0].long()
        if clip_level:
            probs = model(video).float().softmax(-1).cpu()[clip]
        else:
            probs = torch.sigmoid(model(video, rois).float()).cpu()
        if box_score:
            probs = probs * batch["scores"].float()[:, None]
        check_finite(probs, "person boxes")  # 'p >= min_score' would drop a NaN silently
        ids = list(range(1, probs.shape[1] + 1)) if action_ids is None else list(action_ids)
        for k, row in enumerate(probs.tolist()):
            video_id, timestamp = batch["video_id"][clip[k]], batch["timestamp"][clip[k]]
            box = tuple(float(v) for v in batch["source_boxes"][k])
            out.extend(AVADetection(video_id, timestamp, box, a, p)  # type: ignore[arg-type]
                       for a, p in zip(ids, row) if p >= min_score)
    return out


def results_table(results: Mapping[str, Any], max_classes: int | None = None) -> str:
    """frame-mAP and per-class AP as a plain-text table."""
    lines = [f"AVA frame-mAP@{results['iou_threshold']}: {results['mAP']:.2f} % "
             f"({results['num_classes']} classes with ground truth, {results['num_gt']} boxes, "
             f"{results['num_detections']} detections, ties {results['ties']})"]
    rows = [(name, ap) for name, ap in results["per_class"].items()]
    if max_classes is not None:
        rows = rows[:max_classes]
    width = max([len(n) for n, _ in rows] + [5])
    for name, ap in rows:
        lines.append(f"  {name:<{width}}  {'   -  ' if ap is None else f'{ap:6.2f}'}")
    for reason, count in results.get("ignored", {}).items():
        lines.append(f"  ignored: {count} {reason}")
    for reason, count in results.get("false_positives_off_ground_truth", {}).items():
        lines.append(f"  scored as false positives: {count} {reason}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval ava`` (scoring a result file; no model)."""
    parser.add_argument("--gt", required=True, help="ground-truth CSV: video_id, timestamp, x1, y1, x2, y2, "
                                                    "action_id, person_id")
    parser.add_argument("--pred", required=True, help="results CSV: video_id, timestamp, x1, y1, x2, y2, "
                                                      "action_id, score")
    parser.add_argument("--labels", default=None, help="label map .pbtxt of the evaluated classes "
                                                       "(default: every action id in the ground truth)")
    parser.add_argument("--exclude", default=None, help="excluded timestamps CSV: video_id, timestamp")
    parser.add_argument("--iou", type=argtypes.fraction, default=0.5, help="IoU threshold of a hit (official: 0.5)")
    parser.add_argument("--capacity", type=argtypes.nonnegative_int, default=50, help="detections kept per keyframe (official: 50; 0 = all)")
    parser.add_argument("--ties", choices=["pessimistic", "optimistic"], default="pessimistic",
                        help="order of detections with equal scores")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", default=None, help="also write the results JSON here")


def main(args: argparse.Namespace) -> int:
    for name in ("gt", "pred", "labels", "exclude"):
        value = getattr(args, name)
        if value is not None and not Path(value).is_file():
            raise MissingFile(f"--{name}: no such file: {value}")
    if not 0 < args.iou <= 1:
        raise UsageError(f"--iou must be in (0, 1], got {args.iou}")
    results = evaluate_files(args.gt, args.pred, args.labels, args.exclude, iou_threshold=args.iou,
                             capacity=args.capacity, ties=args.ties)
    if args.out:
        fileio.write_json(args.out, results, indent=1)
    print(fileio.json_text(results, indent=1) if args.json else results_table(results))
    return 0
