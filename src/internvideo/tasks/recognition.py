"""Action recognition: multi-view testing of a classifier, and linear probing of frozen features.

Multi-view testing follows the official VideoMAE / InternVideo test scripts:
every video is seen as ``num_clips`` evenly spaced dense clips times
``num_crops`` spatial crops (Kinetics 5 x 3, Something-Something 2 x 3), each
view's logits go through a softmax, and the probabilities are averaged
(:func:`~internvideo.tasks.metrics.average_views`). Reported: top-1, top-5 and
mean per-class accuracy, in percent.

The linear probe freezes the model, takes one feature vector per video
(:func:`~internvideo.tasks.common.clip_embedding`), standardises the
features and fits scikit-learn's multinomial logistic regression on the
training list, then reports the same metrics on the test list.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ClassificationSample, VideoClassificationDataset
from . import common
from .common import Precision, Sampling
from .metrics import average_views, classification_metrics

ClassificationData = str | os.PathLike | Sequence[ClassificationSample] | VideoClassificationDataset

__all__ = ["recognition_scores", "evaluate_recognition", "linear_probe", "results_table",
           "add_arguments", "main", "add_linear_probe_arguments", "linear_probe_main", "classification_dataset"]


def classification_dataset(model: nn.Module, data: ClassificationData, *, root: str | os.PathLike | None = None,
                           num_clips: int = 1, num_crops: int = 1, sampling: Sampling = "auto",
                           frame_interval: int | None = None, short_side: int | None = None) -> VideoClassificationDataset:
    """A strict (unreadable video = error) test dataset with ``model``'s views; a given dataset passes through."""
    if isinstance(data, VideoClassificationDataset):
        return data
    view = common.eval_view(model, num_clips=num_clips, num_crops=num_crops, sampling=sampling,
                            frame_interval=frame_interval, short_side=short_side)
    return VideoClassificationDataset(data, view, root=root, training=False, strict=True)


def recognition_scores(model: nn.Module, data: ClassificationData, *, root: str | os.PathLike | None = None,
                       num_clips: int = 1, num_crops: int = 1, sampling: Sampling = "auto", frame_interval: int | None = None,
                       short_side: int | None = None, batch_size: int = 8, num_workers: int = 0,
                       device: str | torch.device | None = None, precision: Precision = "fp32",
                       progress: bool = True, forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       input_key: str = "video") -> tuple[np.ndarray, np.ndarray]:
    """Logits of every view: ``(N, V, num_classes)`` and the labels ``(N,)``.

    ``data`` is a classification list (``path label`` lines), its parsed
    samples, or a ready dataset whose items carry ``input_key`` clips (then the
    view options are not used). ``forward(clips) -> logits`` defaults to
    ``model(clips)``; pass another for models with other inputs.
    ``batch_size`` counts clips (views), not videos.
    """
    dataset = classification_dataset(model, data, root=root, num_clips=num_clips, num_crops=num_crops,
                                     sampling=sampling, frame_interval=frame_interval, short_side=short_side)
    logits, fields = common.map_views(
        model, forward or model, dataset, views=num_clips * num_crops, batch_size=batch_size, num_workers=num_workers,
        device=common.resolve_device(device), precision=precision, progress=progress, desc="recognition",
        input_key=input_key, collect=("label",))
    return logits.numpy(), fields["label"].numpy()


def evaluate_recognition(model: nn.Module, data: ClassificationData, *, num_clips: int = 1, num_crops: int = 1,
                         **kwargs: Any) -> dict[str, Any]:
    """Multi-view recognition accuracy: ``{"top1", "top5", "mean_class_acc", "chance", ...}`` in percent.

    Keyword arguments are those of :func:`recognition_scores`.
    """
    view_logits, labels = recognition_scores(model, data, num_clips=num_clips, num_crops=num_crops, **kwargs)
    probs = average_views(view_logits)
    num_classes = probs.shape[1]
    return {
        "task": "recognition",
        "views": f"{num_clips}x{num_crops}",
        "num_views": int(view_logits.shape[1]),  # per video, as the data delivered them
        "view_averaging": "softmax",
        **classification_metrics(probs, labels),
        "num_classes": num_classes,
        "chance": 100.0 / num_classes,
    }


def linear_probe(model: nn.Module, train: ClassificationData, test: ClassificationData, *,
                 root: str | os.PathLike | None = None, C: float = 1.0, max_iter: int = 1000, pool: str = "auto",
                 sampling: Sampling = "auto", frame_interval: int | None = None, batch_size: int = 8, num_workers: int = 0,
                 device: str | torch.device | None = None, precision: Precision = "fp32",
                 progress: bool = True) -> dict[str, Any]:
    """Fit a logistic-regression classifier on frozen features of ``train``; accuracy on ``test`` (percent).

    One centre view per video. ``C`` is the inverse L2 regularisation
    strength of :class:`sklearn.linear_model.LogisticRegression`; features are
    standardised first so one ``C`` suits models of any width.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    opts = dict(pool=pool, batch_size=batch_size, num_workers=num_workers, device=device, precision=precision,
                progress=progress)
    splits = {}
    for name, data in (("train", train), ("test", test)):
        dataset = classification_dataset(model, data, root=root, sampling=sampling, frame_interval=frame_interval)
        feats = common.dataset_features(model, dataset, desc=f"features ({name})", **opts)
        splits[name] = (feats, np.asarray([s.label for s in dataset.samples], dtype=np.int64))
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    if len(np.unique(y_train)) < 2:
        raise ValueError("the linear probe needs at least two classes in the training list")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    classifier.fit(x_train, y_train)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    # Classes absent from training cannot be predicted: they score below every trained class.
    scores = np.full((len(x_test), num_classes), -np.inf)
    scores[:, classifier.classes_] = classifier.predict_proba(x_test)
    return {
        "task": "linear_probe",
        **classification_metrics(scores, y_test),
        "num_train": int(len(y_train)),
        "feature_dim": int(x_train.shape[1]),
        "C": C,
        "num_classes": num_classes,
        "chance": 100.0 / num_classes,
    }


def results_table(results: dict[str, Any]) -> str:
    """A recognition or linear-probe results dict as a plain-text table."""
    probe = results.get("task") == "linear_probe"
    title = "Linear probe" if probe else f"Action recognition ({results['views']} views, softmax-averaged)"
    rows = [("top-1 (%)", results["top1"]), ("top-5 (%)", results["top5"]),
            ("mean class acc. (%)", results["mean_class_acc"]), ("chance top-1 (%)", results["chance"]),
            ("test videos", results["num_samples"])]
    if probe:
        rows.append(("train videos", results["num_train"]))
    return common.format_table(title, rows)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval recognition``."""
    common.add_common_arguments(parser, data_help="classification list: '<video path> <label>' per line")
    parser.add_argument("--num-clips", type=int, default=1, help="temporal views per video (Kinetics: 5)")
    parser.add_argument("--num-crops", type=int, choices=[1, 3], default=1, help="spatial views (1 centre, 3 crops)")
    common.add_sampling_arguments(parser)
    parser.add_argument("--short-side", type=int, default=None, help="resize before cropping (default: img_size)")


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    results = evaluate_recognition(
        model, args.data, root=args.root, num_clips=args.num_clips, num_crops=args.num_crops, sampling=args.sampling,
        frame_interval=args.frame_interval, short_side=args.short_side, batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device, precision=args.precision, progress=args.progress)
    results.update(model=str(args.model), data=str(args.data))
    return common.finish(results, results_table(results), args.out)


def add_linear_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval linear-probe`` (``--data`` is the test list)."""
    common.add_common_arguments(parser, data_help="test classification list")
    parser.add_argument("--train", required=True, help="training classification list")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation of the logistic regression")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--pool", choices=["auto", "pre_logits", "mean"], default="auto",
                        help="VideoMAE features: fc_norm'd mean (pre_logits) or plain token mean")
    common.add_sampling_arguments(parser)


def linear_probe_main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    results = linear_probe(model, args.train, args.data, root=args.root, C=args.C, max_iter=args.max_iter,
                           pool=args.pool, sampling=args.sampling, frame_interval=args.frame_interval,
                           batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                           precision=args.precision, progress=args.progress)
    results.update(model=str(args.model), train=str(args.train), data=str(args.data))
    return common.finish(results, results_table(results), args.out)

