"""``internvideo predict``: what is in these videos?

A classifier gives its top-k classes (names from its checkpoint) with their
softmax probabilities; a video-language model does zero-shot recognition over
the given labels with the protocol of ``eval zeroshot``
(:func:`~internvideo.tasks.zeroshot.zeroshot_classifier`: prompt ensembling,
``logit_scale * cosine``, softmax). ``every`` slides back-to-back windows of
that many seconds over each video and labels each window (a timeline); without
it the whole video is one window. Inside a window frames are picked with the
model's own input recipe, as in evaluation. Unreadable videos are listed and
skipped, never fatal.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data import VideoError, probe, read_classes, read_frames
from ..errors import UsageError
from ..models.protocols import VideoClassifier, VideoLanguageModel
from . import common, zeroshot
from .extract import window_starts

__all__ = ["Prediction", "predict_videos", "add_arguments", "main"]


@dataclass
class Prediction:
    """One window of one video: ``[start, end)`` seconds and its top-k ``(label, percent)``."""

    start: float
    end: float
    top: list[tuple[str, float]]


@dataclass
class PredictResult:
    videos: dict[str, list[Prediction]] = field(default_factory=dict)  # in the order given
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)


def _class_scorer(model: nn.Module, labels: Sequence[str] | None, templates: Sequence[str] | None,
                  device: torch.device, precision: str) -> tuple[Any, list[str]]:
    """``clips -> logits`` and the class names: the classifier's head, or zero-shot over ``labels``."""
    if isinstance(model, VideoLanguageModel) and not isinstance(model, VideoClassifier):
        if not labels:
            raise UsageError("a video-language model predicts zero-shot over labels you give: pass --labels "
                             "'a,b,c' or --classes FILE")
        weights = zeroshot.zeroshot_classifier(model, list(labels), templates or zeroshot.DEFAULT_TEMPLATES,
                                               device=device, precision=precision, progress=False)
        scale = common.logit_scale(model)

        def zero_shot(clips: torch.Tensor) -> torch.Tensor:  # as zeroshot.zeroshot_scores scores a clip
            emb = F.normalize(model.encode_video(clips).float(), dim=-1)
            return scale * emb @ weights.to(emb.device).t()

        return zero_shot, list(labels)
    common.require_classifier(model, "predict")
    head = getattr(model, "head", None)
    num_classes = head.out_features if isinstance(head, nn.Linear) else 0
    if not num_classes:  # a pretraining model, or a classifier built with num_classes=0 (features only)
        raise common.WrongModelError(f"{type(model).__name__} has no classification head (num_classes=0): "
                                     "predict needs a classifier or a video-language model")
    names = list(labels) if labels else list(getattr(model.config, "class_names", None) or [])
    if labels and len(names) != num_classes:
        raise UsageError(f"--labels/--classes gives {len(names)} names; the classifier has {num_classes} classes")
    if not names:
        names = [f"class {i}" for i in range(num_classes)]  # the checkpoint records no names
    return model, names


def _windows(path: str, every: float | None) -> tuple[list[tuple[int, int]], float]:
    """``(first frame, length)`` of each window, and the frame rate."""
    info = probe(path)
    if info.num_frames < 1:
        raise VideoError(path, "no frames")
    if every is None:
        return [(0, info.num_frames)], info.fps
    length = max(1, round(every * info.fps))
    return [(int(s), min(length, info.num_frames)) for s in window_starts(info.num_frames, length, length)], info.fps


def predict_videos(model: nn.Module, videos: Sequence[str], *, labels: Sequence[str] | None = None,
                   templates: Sequence[str] | None = None, top_k: int = 5, every: float | None = None,
                   batch_size: int = 8, device: str | torch.device | None = None,
                   precision: common.Precision = "fp32", progress: bool = True) -> PredictResult:
    """Top-``top_k`` classes (percent) of each video, or of each ``every``-second window of it."""
    if top_k < 1:
        raise UsageError(f"top-k must be at least 1, got {top_k}")
    if every is not None and not every > 0:
        raise UsageError(f"--every must be a positive number of seconds, got {every}")
    dev = common.resolve_device(device)
    score, names = _class_scorer(model, labels, templates, dev, precision)
    view = common.eval_view(model)
    k = min(top_k, len(names))
    result = PredictResult()
    plans: list[tuple[str, list[tuple[int, int]], float]] = []
    for video in videos:
        try:
            windows, fps = _windows(video, every)
            plans.append((video, windows, fps))
        except FileNotFoundError:
            result.failed.append((video, "file not found"))
        except VideoError as e:
            result.failed.append((video, e.problem))
    total = sum(len(w) for _, w, _ in plans)
    bar = tqdm(total=total, desc="predict", unit="window", disable=not progress or total < 16, file=sys.stderr)
    with common.inference(model, dev, precision):
        for video, windows, fps in plans:
            try:
                probs = []
                for i in range(0, len(windows), max(1, batch_size)):
                    part = windows[i:i + max(1, batch_size)]
                    picks = [start + np.asarray(view.sampler(length, fps=fps), dtype=np.int64) for start, length in part]
                    frames = read_frames(video, np.concatenate(picks))
                    clips = torch.stack([view.transform(c, None) for c in np.split(frames, len(part))])
                    probs.append(score(clips.to(dev)).float().softmax(dim=-1).cpu())
                    bar.update(len(part))
            except VideoError as e:
                result.failed.append((video, e.problem))
                continue
            top = torch.cat(probs).topk(k, dim=-1)
            result.videos[video] = [
                Prediction(start / fps, (start + length) / fps,
                           [(names[j], 100.0 * float(p)) for p, j in zip(values.tolist(), index.tolist())])
                for (start, length), values, index in zip(windows, top.values, top.indices)]
    bar.close()
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", help="video files")
    parser.add_argument("--model", required=True, help="classifier or video-language model: a checkpoint "
                                                        "directory/file or a hub id hf:ORG/NAME")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per video (or window)")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--labels", default=None, help="comma-separated class names: the zero-shot classes of a "
                                                      "video-language model (or a classifier's names)")
    names.add_argument("--classes", default=None, help="class names, one per line (instead of --labels)")
    parser.add_argument("--templates", default=None, help="zero-shot prompt templates, one per line with {} "
                                                          "(default: those of eval zeroshot)")
    parser.add_argument("--every", type=float, default=None, metavar="SECONDS",
                        help="label back-to-back windows of this many seconds (a timeline) instead of whole videos")
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32", help=common.PRECISION_HELP)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def _labels(args: argparse.Namespace) -> list[str] | None:
    if args.classes:
        return read_classes(args.classes)
    if args.labels is not None:
        names = [n.strip() for n in args.labels.split(",") if n.strip()]
        if not names:
            raise UsageError(f"--labels {args.labels!r} holds no class name")
        return names
    return None


def _as_json(video: str, windows: list[Prediction], timeline: bool) -> dict[str, Any]:
    def top(p: Prediction) -> list[dict[str, Any]]:
        return [{"label": n, "percent": round(s, 4)} for n, s in p.top]

    if not timeline:
        return {"video": video, "top": top(windows[0])}
    return {"video": video, "timeline": [{"start": round(p.start, 3), "end": round(p.end, 3), "label": p.top[0][0],
                                          "percent": round(p.top[0][1], 4), "top": top(p)} for p in windows]}


def main(args: argparse.Namespace) -> int:
    """Print the predictions; the exit status is the number of videos that could not be read (0: all fine)."""
    model = common.load_model_arg(args.model)
    templates = zeroshot.read_templates(args.templates) if args.templates else None
    result = predict_videos(model, args.videos, labels=_labels(args), templates=templates, top_k=args.top_k,
                            every=args.every, batch_size=args.batch_size, device=args.device,
                            precision=args.precision, progress=args.progress)
    timeline = args.every is not None
    for video, windows in result.videos.items():
        if args.json:
            print(json.dumps(_as_json(video, windows, timeline)))
            continue
        print(video)
        for p in windows:
            if timeline:
                name, pct = p.top[0]
                print(f"  {p.start:7.2f}-{p.end:.2f} s".ljust(22) + f"{pct:5.1f}%  {name}")
            else:
                for name, pct in p.top:
                    print(f"  {pct:5.1f}%  {name}")
    for video, reason in result.failed:
        print(f"internvideo: skipped {video}: {reason}", file=sys.stderr)
    if result.failed:
        print(f"internvideo: {len(result.failed)} of {len(args.videos)} videos could not be read", file=sys.stderr)
    return min(len(result.failed), 100)
