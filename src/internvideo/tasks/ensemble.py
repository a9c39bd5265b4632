"""Score-level ensembling of recognition results: ``internvideo eval ensemble A.npz B.npz ... [--weights ...]``.

Each input is a per-video scores file written by ``--save-scores`` (``eval
recognition``, ``eval zeroshot``, ``eval fusion``; format in
:func:`~internvideo.tasks.common.save_scores`): the softmax probabilities of one
model, averaged over its views. The ensemble is their weighted mean (equal
weights unless ``--weights``), the way VideoMAE's test merge averages softmax
scores over views, one level up: over models. Reported: top-1/top-5/mean class
accuracy (percent) of every input and of the ensemble, on the same videos.

The inputs must describe the same videos (any order: they are matched by path)
with the same labels, and the same class list in the same order; anything else
is an error naming the first difference.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import argtypes
from . import common
from .common import ScoresError, VideoScores, load_scores
from .metrics import classification_metrics

__all__ = ["align_scores", "ensemble_scores", "evaluate_ensemble", "results_table", "add_arguments", "main"]


def _check_classes(first: VideoScores, first_name: str, other: VideoScores, name: str) -> None:
    a, b = first.class_names, other.class_names
    if a == b:
        return
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    what_a = repr(a[i]) if i < len(a) else "no class"
    what_b = repr(b[i]) if i < len(b) else "no class"
    raise ScoresError(f"{name}: class lists differ from {first_name}'s at position {i} ({what_b} vs {what_a}; "
                      f"{len(b)} vs {len(a)} classes)")


def align_scores(inputs: Sequence[tuple[str, VideoScores]]) -> list[VideoScores]:
    """The inputs with rows in the first input's video order, after checking videos, labels and classes."""
    first_name, first = inputs[0]
    for name, s in inputs:
        seen: set[str] = set()
        for v in s.videos:
            if v in seen:
                raise ScoresError(f"{name}: video {v} is listed twice")
            seen.add(v)
    index = {v: i for i, v in enumerate(first.videos)}
    out = [first]
    for name, s in inputs[1:]:
        _check_classes(first, first_name, s, name)
        other = {v: i for i, v in enumerate(s.videos)}
        missing = next((v for v in first.videos if v not in other), None)
        if missing is not None:
            raise ScoresError(f"{name}: no scores for video {missing} (in {first_name})")
        extra = next((v for v in s.videos if v not in index), None)
        if extra is not None:
            raise ScoresError(f"{name}: video {extra} is not in {first_name}")
        order = np.array([other[v] for v in first.videos], dtype=np.int64)
        labels = s.labels[order]
        bad = np.flatnonzero(labels != first.labels)
        if bad.size:
            v = first.videos[bad[0]]
            raise ScoresError(f"{name}: video {v} has label {labels[bad[0]]}, {first_name} says {first.labels[bad[0]]}")
        out.append(VideoScores(s.scores[order], labels, list(first.videos), s.class_names, s.model, s.task))
    return out


def ensemble_scores(scores: Sequence[VideoScores], weights: Sequence[float] | None = None) -> np.ndarray:
    """The weighted mean ``sum_i w_i s_i / sum_i w_i`` of aligned score matrices ``(N, C)``."""
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(scores),):
        raise ScoresError(f"--weights: {len(scores)} inputs need {len(scores)} weights, got {len(w)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ScoresError(f"--weights must be finite, >= 0 and not all 0, got {list(w)}")
    total = sum(wi * s.scores.astype(np.float64) for wi, s in zip(w, scores))
    return (total / w.sum()).astype(np.float32)


def _metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    known = labels >= 0  # "unknown" (-1) videos of open-set lists cannot be scored
    out = classification_metrics(scores[known], labels[known])
    out["num_nonfinite"] = int((~np.isfinite(scores[known]).all(axis=1)).sum())  # scored wrong by the metrics
    return out


def evaluate_ensemble(files: Sequence[str | os.PathLike], weights: Sequence[float] | None = None, *,
                      save_scores: str | os.PathLike | None = None) -> dict[str, Any]:
    """Top-1/top-5/mean class accuracy (percent) of each scores file and of their weighted mean."""
    if len(files) < 2:
        raise ScoresError("an ensemble needs at least two scores files")
    loaded = [(str(f), load_scores(f)) for f in files]
    aligned = align_scores(loaded)
    combined = ensemble_scores(aligned, weights)
    labels = aligned[0].labels
    results: dict[str, Any] = {
        "task": "ensemble",
        "inputs": [{"file": name, "model": s.model, "task": s.task, **_metrics(s.scores, labels)}
                   for (name, _), s in zip(loaded, aligned)],
        "weights": [1.0] * len(files) if weights is None else [float(w) for w in weights],
        "ensemble": _metrics(combined, labels),
        "num_classes": len(aligned[0].class_names),
        "num_unlabelled": int((labels < 0).sum()),
    }
    if save_scores is not None:
        models = "+".join(s.model for s in aligned)
        out = VideoScores(combined, labels, aligned[0].videos, aligned[0].class_names, models, "ensemble")
        results["scores_file"] = str(common.save_scores(save_scores, out))
    return results


def results_table(results: dict[str, Any]) -> str:
    rows = []
    for i, r in enumerate(results["inputs"]):
        rows.append((f"[{i + 1}] {os.path.basename(r['file'])} (w={results['weights'][i]:g}) top-1 / top-5 (%)",
                     f"{r['top1']:.1f} / {r['top5']:.1f}"))
    e = results["ensemble"]
    rows += [("ensemble top-1 / top-5 (%)", f"{e['top1']:.1f} / {e['top5']:.1f}"),
             ("ensemble mean class acc. (%)", e["mean_class_acc"]), ("videos", e["num_samples"])]
    if results.get("num_unlabelled"):
        rows.append(("unlabelled videos (not scored)", results["num_unlabelled"]))
    if e.get("num_nonfinite"):
        rows.append(("non-finite scores (scored wrong)", e["num_nonfinite"]))
    return common.format_table("Score ensemble (weighted mean of per-video probabilities)", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval ensemble``."""
    parser.add_argument("scores", nargs="+", metavar="SCORES.npz", help="files written by --save-scores")
    parser.add_argument("--weights", nargs="+", type=argtypes.nonnegative_float, default=None,
                        help="one weight per file (default: equal); the ensemble is the weighted mean")
    parser.add_argument("--out", default=None, help="write the results JSON here")
    common.add_save_scores_argument(parser)


def main(args: argparse.Namespace) -> int:
    results = evaluate_ensemble(args.scores, args.weights, save_scores=args.save_scores)
    return common.finish(results, results_table(results), args.out)
