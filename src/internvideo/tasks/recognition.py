"""Action recognition: multi-view testing of a classifier, and linear probing of frozen features.

Multi-view testing follows the official VideoMAE / InternVideo test scripts:
every video is seen as ``num_clips`` dense clips (placed as the official test
loader places them, ``layout="videomae"``; ``"mmaction"`` and ``"centred"`` on
request) times ``num_crops`` spatial crops (Kinetics 5 x 3, Something-Something 2 x 3), each
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
from ..data.sampling import TestLayout
from ..errors import UsageError
from ..models.protocols import saved_class_names
from . import common
from .common import Precision, SamplingOverride
from .metrics import average_views, check_finite, classification_metrics
from .. import argtypes

ClassificationData = str | os.PathLike | Sequence[ClassificationSample] | VideoClassificationDataset

__all__ = ["align_labels", "drop_duplicates", "recognition_scores", "evaluate_recognition", "linear_probe", "results_table",
           "add_arguments", "main", "add_linear_probe_arguments", "linear_probe_main", "classification_dataset"]


def classification_dataset(model: nn.Module, data: ClassificationData, *, root: str | os.PathLike | None = None,
                           num_clips: int = 1, num_crops: int = 1, sampling: SamplingOverride = "auto",
                           frame_interval: int | None = None, short_side: int | None = None,
                           layout: TestLayout = "videomae") -> VideoClassificationDataset:
    """A strict (unreadable video = error) test dataset with ``model``'s views; a given dataset passes through."""
    if isinstance(data, VideoClassificationDataset):
        return data
    view = common.eval_view(model, num_clips=num_clips, num_crops=num_crops, sampling=sampling,
                            frame_interval=frame_interval, short_side=short_side, layout=layout)
    dataset = VideoClassificationDataset(data, view, root=root, training=False, strict=True)
    drop_duplicates(dataset, data if isinstance(data, (str, os.PathLike)) else "the test samples")
    return align_labels(dataset, saved_class_names(model), source=data)


def drop_duplicates(dataset: VideoClassificationDataset, source: object) -> int:
    """Keep the first of repeated ``(video, label)`` lines (they would re-weight the metric); returns how many went.

    One video listed with two different labels is an error: which one is true cannot be decided here.
    """
    seen: dict[str, int] = {}
    kept = []
    for s in dataset.samples:
        key = os.path.normpath(s.path)
        if key in seen:
            if seen[key] != s.label:
                raise UsageError(f"{source}: {s.path} is listed with labels {seen[key]} and {s.label}")
            continue
        seen[key] = s.label
        kept.append(s)
    removed = len(dataset.samples) - len(kept)
    if removed:
        common.log.warning("%s: %d duplicate line(s) of the same (video, label) counted once", source, removed)
        dataset.samples, dataset.videos = kept, [s.path for s in kept]
    dataset.num_duplicates = removed
    return removed


def align_labels(dataset: VideoClassificationDataset, class_names: Sequence[str] | None, *,
                 source: object = "the test list") -> VideoClassificationDataset:
    """Relabel ``dataset`` into the model's classes by name when both name their classes and the orders differ.

    A checkpoint trained by ``internvideo train`` stores its head's class
    names; a test list whose ``classes.txt`` orders them differently is mapped
    by name rather than scored against the wrong rows. A test class the model
    does not know is an error.
    """
    if not class_names or not dataset.classes or list(dataset.classes) == list(class_names):
        return dataset
    index = {name: i for i, name in enumerate(class_names)}
    used = sorted({dataset.classes[s.label] for s in dataset.samples if 0 <= s.label < len(dataset.classes)})
    missing = [n for n in used if n not in index]
    if missing:
        raise UsageError(f"{source}: class(es) {missing[:5]} of the test list are not among the model's "
                         f"{len(class_names)} classes (saved in its config.json)")
    dataset.samples = [type(s)(s.path, index[dataset.classes[s.label]] if s.label >= 0 else s.label)
                       for s in dataset.samples]
    dataset.classes = list(class_names)
    common.log.info("%s: labels mapped into the model's class order by name", source)
    return dataset


def recognition_scores(model: nn.Module, data: ClassificationData, *, root: str | os.PathLike | None = None,
                       num_clips: int = 1, num_crops: int = 1, sampling: SamplingOverride = "auto", frame_interval: int | None = None,
                       short_side: int | None = None, layout: TestLayout = "videomae", batch_size: int = 8,
                       num_workers: int = 0,
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
    if forward is None:
        common.require_classifier(model, "recognition")
    dataset = classification_dataset(model, data, root=root, num_clips=num_clips, num_crops=num_crops,
                                     sampling=sampling, frame_interval=frame_interval, short_side=short_side,
                                     layout=layout)
    logits, fields = common.map_views(
        model, forward or model, dataset, views=num_clips * num_crops, batch_size=batch_size, num_workers=num_workers,
        device=common.resolve_device(device), precision=precision, progress=progress, desc="recognition",
        input_key=input_key, collect=("label",))
    return logits.numpy(), fields["label"].numpy()


def evaluate_recognition(model: nn.Module, data: ClassificationData, *, num_clips: int = 1, num_crops: int = 1,
                         allow_nonfinite: bool = False, save_scores: str | os.PathLike | None = None,
                         model_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Multi-view recognition accuracy: ``{"top1", "top5", "mean_class_acc", "chance", ...}`` in percent.

    Keyword arguments are those of :func:`recognition_scores`. Videos with a
    NaN/inf logit fail the evaluation (:class:`~.metrics.NonFiniteError`)
    unless ``allow_nonfinite``; then they count as wrong (``num_nonfinite``).
    ``save_scores``: write the per-video probabilities (:func:`~.common.save_scores`, ``model_id`` naming the model).
    """
    dataset = classification_dataset(model, data, num_clips=num_clips, num_crops=num_crops, **_view_options(kwargs))
    view_logits, labels = recognition_scores(model, dataset, num_clips=num_clips, num_crops=num_crops, **kwargs)
    nonfinite = check_finite(view_logits, "test videos", allow=allow_nonfinite)
    probs = average_views(view_logits)
    num_classes = probs.shape[1]
    extra = {}
    if save_scores is not None:
        scores = common.dataset_scores(dataset, probs, labels, model_id or model, "recognition")
        extra["scores_file"] = str(common.save_scores(save_scores, scores))
    return {**extra,
        "task": "recognition",
        "views": f"{num_clips}x{num_crops}",
        "num_views": int(view_logits.shape[1]),  # per video, as the data delivered them
        "view_averaging": "softmax",
        **classification_metrics(probs, labels),
        "num_classes": num_classes,
        "chance": 100.0 / num_classes,
        "num_nonfinite": nonfinite,
        "num_duplicates": getattr(dataset, "num_duplicates", 0),
    }


def _view_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the options that build the test dataset (the rest go to the forward passes)."""
    return {k: kwargs.pop(k) for k in ("root", "sampling", "frame_interval", "short_side") if k in kwargs}


def linear_probe(model: nn.Module, train: ClassificationData, test: ClassificationData, *,
                 root: str | os.PathLike | None = None, C: float = 1.0, max_iter: int = 1000, pool: str = "auto",
                 sampling: SamplingOverride = "auto", frame_interval: int | None = None, batch_size: int = 8, num_workers: int = 0,
                 device: str | torch.device | None = None, precision: Precision = "fp32",
                 progress: bool = True, allow_nonfinite: bool = False) -> dict[str, Any]:
    """Fit a logistic-regression classifier on frozen features of ``train``; accuracy on ``test`` (percent).

    Videos whose features are NaN/inf fail the probe unless ``allow_nonfinite``:
    then training videos with such features are left out and test videos count as wrong.

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
    bad_train = ~np.isfinite(x_train).all(axis=1)
    nonfinite = check_finite(x_train, "training videos", allow=allow_nonfinite) + \
        check_finite(x_test, "test videos", allow=allow_nonfinite)
    x_train, y_train = x_train[~bad_train], y_train[~bad_train]
    bad_test = ~np.isfinite(x_test).all(axis=1)
    x_test = np.where(bad_test[:, None], 0.0, x_test)
    if len(np.unique(y_train)) < 2:
        raise UsageError("the linear probe needs at least two classes in the training list")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    classifier.fit(x_train, y_train)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    # Classes absent from training cannot be predicted: they score below every trained class.
    scores = np.full((len(x_test), num_classes), -np.inf)
    scores[:, classifier.classes_] = classifier.predict_proba(x_test)
    scores[bad_test] = np.nan  # the worst score: never a hit
    return {
        "task": "linear_probe",
        **classification_metrics(scores, y_test),
        "num_train": int(len(y_train)),
        "feature_dim": int(x_train.shape[1]),
        "C": C,
        "num_classes": num_classes,
        "chance": 100.0 / num_classes,
        "num_nonfinite": nonfinite,
    }


def results_table(results: dict[str, Any]) -> str:
    """A recognition or linear-probe results dict as a plain-text table."""
    probe = results.get("task") == "linear_probe"
    title = "Linear probe" if probe else f"Action recognition ({results['views']} views, softmax-averaged)"
    rows = [("top-1 (%)", results["top1"]), ("top-5 (%)", results["top5"]),
            ("mean class acc. (%)", results["mean_class_acc"]), ("chance top-1 (%)", results["chance"]),
            ("test videos", results["num_samples"])]
    if results.get("num_duplicates"):
        rows.append(("duplicate lines dropped", results["num_duplicates"]))
    if results.get("num_nonfinite"):
        rows.append(("non-finite outputs (scored wrong)", results["num_nonfinite"]))
    if probe:
        rows.append(("train videos", results["num_train"]))
    return common.format_table(title, rows)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval recognition``."""
    common.add_common_arguments(parser, data_help="classification list: '<video path> <label>' per line")
    parser.add_argument("--num-clips", type=argtypes.positive_int, default=1, help="temporal views per video (Kinetics: 5)")
    parser.add_argument("--num-crops", type=int, choices=[1, 3], default=1, help="spatial views (1 centre, 3 crops)")
    common.add_sampling_arguments(parser)
    parser.add_argument("--short-side", type=argtypes.positive_int, default=None, help="resize before cropping (default: img_size)")
    parser.add_argument("--clip-layout", choices=["videomae", "mmaction", "centred"], default="videomae",
                        help="where several test clips start: the official VideoMAE test loader (default), "
                             "mmaction2's SampleFrames, or each clip centred in its share of the video")
    common.add_save_scores_argument(parser)


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    results = evaluate_recognition(
        model, args.data, root=args.root, num_clips=args.num_clips, num_crops=args.num_crops, sampling=args.sampling,
        frame_interval=args.frame_interval, short_side=args.short_side, layout=args.clip_layout,
        batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device, precision=args.precision, progress=args.progress,
        allow_nonfinite=args.allow_nonfinite, save_scores=args.save_scores, model_id=str(args.model))
    results.update(model=str(args.model), data=str(args.data))
    return common.finish(results, results_table(results), args.out)


def add_linear_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval linear-probe`` (``--data`` is the test list)."""
    common.add_common_arguments(parser, data_help="test classification list")
    parser.add_argument("--train", required=True, help="training classification list")
    parser.add_argument("--C", type=argtypes.positive_float, default=1.0, help="inverse L2 regularisation of the logistic regression")
    parser.add_argument("--max-iter", type=argtypes.positive_int, default=1000)
    parser.add_argument("--pool", choices=["auto", "pre_logits", "mean"], default="auto",
                        help="VideoMAE features: fc_norm'd mean (pre_logits) or plain token mean")
    common.add_sampling_arguments(parser)


def linear_probe_main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    results = linear_probe(model, args.train, args.data, root=args.root, C=args.C, max_iter=args.max_iter,
                           pool=args.pool, sampling=args.sampling, frame_interval=args.frame_interval,
                           batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                           precision=args.precision, progress=args.progress, allow_nonfinite=args.allow_nonfinite)
    results.update(model=str(args.model), train=str(args.train), data=str(args.data))
    return common.finish(results, results_table(results), args.out)

