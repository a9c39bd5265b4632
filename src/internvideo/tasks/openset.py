"""Open-set action recognition with the protocol of DEAR (as the paper reports it).

Train on the known classes; test on videos of known and unknown classes.
Reported, in percent, for each unknown-score (the evidential uncertainty
``u = K / S`` and, as baselines on the same frozen features, maximum softmax
probability, energy and max-logit; see :mod:`internvideo.models.openset`):

* **closed-set accuracy**: top-1 over the known test videos only;
* **AUROC**: known vs unknown test videos ranked by the score, unknown being
  the positive class (scikit-learn's ``roc_auc_score``; chance = 50);
* **open-set macro-F1** over K + 1 classes (the K known ones and "unknown"):
  a video whose score exceeds a threshold is called unknown, the others get
  the head's top class. The threshold comes from the validation split, never
  from the test split: the one maximising validation macro-F1 when validation
  holds unknown videos, otherwise the score below which ``1 - reject_rate`` of
  the known validation videos fall (95 % kept by default).

Lists are Kinetics-style classification lists; in test (and validation)
lists label ``-1`` marks an unknown video (the synthetic world's
``openset_*.txt``). Class names can also mark unknowns: ``unknown=[names]``
with ``classes`` (``classes.txt``); a name both known and unknown is an error.

Two ways to get the scores (:func:`evaluate_openset`, ``--head``):

* the model's **own head**, for a classifier trained on the known classes
  (the ``openset`` objective, which fine-tunes the backbone with the EDL loss
  as DEAR does, or any classifier of the known classes): the four scores come
  from its logits;
* **fitted heads** on frozen features (one centre view per video,
  :func:`~internvideo.tasks.common.dataset_features`): an evidential and a
  softmax head trained in seconds by the ``fit`` passed in
  (:func:`internvideo.train.heads.fit_openset_head`: tasks never train);
  :func:`evaluate_openset_features` takes cached features directly.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..data import ClassificationSample, openset_test_samples, read_classes, read_classification_list
from ..errors import UsageError
from ..models.openset import SCORES, EvidenceFn, unknown_scores
from ..models.protocols import VideoClassifier, saved_class_names
from . import common
from .common import Precision, SamplingOverride
from .. import argtypes
from .metrics import NonFiniteError

__all__ = ["HeadFitter", "resolve_unknown", "openset_metrics", "evaluate_openset_features", "evaluate_openset",
           "score_logits", "model_head_rows", "dear_threshold",
           "results_table", "add_arguments", "main"]

UNKNOWN = -1
ThresholdFrom = Literal["val", "train"]
#: Trains one head on frozen features, ``fit(x, y, num_classes, *, loss="edl" | "ce", kind, steps,
#: annealing_steps, lr, hidden, seed) -> module``: :func:`internvideo.train.heads.fit_openset_head`.
HeadFitter = Callable[..., nn.Module]


def resolve_unknown(classes: Sequence[str], unknown: Sequence[str], known: Sequence[str] | None = None) -> set[int]:
    """Label indices of the ``unknown`` class names; errors name classes both known and unknown, or not listed."""
    overlap = sorted(set(unknown) & set(known or ()))
    if overlap:
        raise UsageError(f"classes listed as both known and unknown: {', '.join(overlap)}")
    missing = sorted(set(unknown) - set(classes))
    if missing:
        raise UsageError(f"unknown classes not in the class list: {', '.join(missing)}")
    return {classes.index(name) for name in unknown}


def dear_threshold(train_scores: np.ndarray, keep: float = 0.95) -> float:
    """DEAR's rejection threshold from the known-class **training** videos' scores.

    Official Open-Set-Action-Recognition ``experiments/get_threshold.py``: sort descending,
    ``topK = N - int(N * 0.95)``, threshold = the ``topK``-th largest score, so about 95 % of the training
    videos score at or below it. (InternVideo's ``get_threshold_dist.py``, which its MAE script calls, sorts
    ascending instead and so picks the 5th percentile; we follow DEAR, see docs/recipes.md.)
    """
    scores = np.sort(np.asarray(train_scores, dtype=np.float64).ravel())[::-1]
    if scores.size == 0:
        raise UsageError("no training scores to derive the threshold from")
    top_k = scores.size - int(scores.size * keep)
    return float(scores[max(top_k, 1) - 1])


def _threshold(scores: np.ndarray, predictions: np.ndarray, labels: np.ndarray, num_classes: int,
               reject_rate: float, source: str = "val") -> float:
    """The rejection threshold from validation (see the module docstring), or DEAR's from training scores."""
    if source == "train":
        return dear_threshold(scores, 1.0 - reject_rate)
    if (labels == UNKNOWN).any() and (labels != UNKNOWN).any():
        candidates = np.unique(scores)
        f1s = [_macro_f1(scores, predictions, labels, num_classes, t) for t in candidates]
        return float(candidates[int(np.argmax(f1s))])
    return float(np.quantile(scores[labels != UNKNOWN], 1.0 - reject_rate))


def _macro_f1(scores: np.ndarray, predictions: np.ndarray, labels: np.ndarray, num_classes: int,
              threshold: float) -> float:
    from sklearn.metrics import f1_score

    called = np.where(scores > threshold, num_classes, predictions)
    truth = np.where(labels == UNKNOWN, num_classes, labels)
    return 100.0 * float(f1_score(truth, called, labels=list(range(num_classes + 1)), average="macro",
                                  zero_division=0))


def openset_metrics(test_scores: np.ndarray, test_predictions: np.ndarray, test_labels: np.ndarray,
                    threshold: float, num_classes: int) -> dict[str, float]:
    """Closed-set accuracy, AUROC and open-set macro-F1 (percent) of one score; labels ``-1`` = unknown."""
    from sklearn.metrics import roc_auc_score

    known = test_labels != UNKNOWN
    if known.all() or not known.any():
        raise UsageError("the open-set test split needs both known and unknown videos (label -1 or unknown classes)")
    return {
        "closed_set_accuracy": 100.0 * float((test_predictions[known] == test_labels[known]).mean()),
        "auroc": 100.0 * float(roc_auc_score(~known, test_scores)),
        "macro_f1": _macro_f1(test_scores, test_predictions, test_labels, num_classes, threshold),
        "threshold": float(threshold),
    }


def _check_finite(name: str, x: np.ndarray | torch.Tensor) -> None:
    bad = ~np.isfinite(np.asarray(x))
    if bad.any():
        raise NonFiniteError(f"{name}: {int(bad.any(axis=tuple(range(1, bad.ndim))).sum())} videos have non-finite "
                             "features or scores")


def _known_index(train_labels: np.ndarray) -> dict[int, int]:
    """Known label -> head row (increasing label order); the training labels must all be known."""
    classes = np.unique(train_labels)
    if (classes == UNKNOWN).any():
        raise UsageError("the open-set training list holds unknown videos (label -1); train on known classes only")
    if len(classes) < 2:
        raise UsageError(f"open-set training needs at least two known classes, got {len(classes)}")
    return {int(c): i for i, c in enumerate(classes)}


def _remap(labels: np.ndarray, index: dict[int, int], split: str) -> np.ndarray:
    stray = sorted({int(v) for v in labels if v != UNKNOWN and int(v) not in index})
    if stray:
        raise UsageError(f"{split} labels {stray} are neither training classes nor marked unknown (-1)")
    return np.asarray([UNKNOWN if v == UNKNOWN else index[int(v)] for v in labels], dtype=np.int64)


def evaluate_openset_features(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                              test: tuple[np.ndarray, np.ndarray], *, fit: HeadFitter, kind: EvidenceFn = "exp",
                              reject_rate: float = 0.05, steps: int = 300, annealing_steps: int = 100,
                              lr: float = 1e-2, hidden: int = 0, seed: int = 0,
                              threshold_from: ThresholdFrom = "val") -> dict[str, Any]:
    """The protocol on cached ``(features, labels)`` splits; known labels may be any subset of integers.

    ``threshold_from="train"``: DEAR's threshold from the training features' scores (``val`` is then unused).
    ``fit`` trains the two heads (:func:`internvideo.train.heads.fit_openset_head`;
    tasks never train). Returns ``{"scores": {score: metrics}, "num_known_classes", "num_train", "num_test_known",
    "num_test_unknown", ...}``; ``uncertainty`` comes from the evidential head, the others from the
    softmax head.
    """
    for name, (x, _) in (("train", train), ("val", val), ("test", test)):
        _check_finite(name, x)
    index = _known_index(train[1])
    k = len(index)
    x_train = torch.as_tensor(train[0], dtype=torch.float32)
    y_train = torch.as_tensor(_remap(train[1], index, "train"))
    opts = dict(steps=steps, annealing_steps=annealing_steps, lr=lr, hidden=hidden, seed=seed)
    heads = {"edl": fit(x_train, y_train, k, loss="edl", kind=kind, **opts),
             "ce": fit(x_train, y_train, k, loss="ce", **opts)}
    thr = (train[0], y_train.numpy()) if threshold_from == "train" else (val[0], _remap(val[1], index, "val"))
    splits = {"val": thr, "test": (test[0], _remap(test[1], index, "test"))}
    with torch.no_grad():
        logits = {(h, s): heads[h](torch.as_tensor(x, dtype=torch.float32)) for h in heads for s, (x, _) in
                  splits.items()}
    out = score_logits({score: tuple(logits[("edl" if score == "uncertainty" else "ce", s)] for s in splits)
                        for score in SCORES}, splits["val"][1], splits["test"][1], k, kind=kind,
                       reject_rate=reject_rate, threshold_from=threshold_from)
    out.update(num_train=int(len(y_train)), head="fit")
    return out


def score_logits(logits: dict[str, tuple[torch.Tensor, torch.Tensor]], val_labels: np.ndarray,
                 test_labels: np.ndarray, num_classes: int, *, kind: EvidenceFn = "exp",
                 reject_rate: float = 0.05, threshold_from: ThresholdFrom = "val") -> dict[str, Any]:
    """The protocol's metrics from head outputs: ``{score: (val logits, test logits)}`` over the K known classes.

    Labels are head rows ``0..K-1`` or ``-1`` (unknown); each score's threshold comes from the validation split,
    or with ``threshold_from="train"`` the first logits are the training videos' and the threshold is
    :func:`dear_threshold` of their scores (keeping ``1 - reject_rate``).
    """
    out: dict[str, Any] = {"scores": {}}
    for score, (val_logits, test_logits) in logits.items():
        per = {}
        for split, lg in (("val", val_logits), ("test", test_logits)):
            _check_finite(f"{split} logits", lg)
            per[split] = (unknown_scores(lg, score, kind).numpy(), lg.argmax(dim=-1).numpy())
            _check_finite(f"{split} {score}", per[split][0])
        threshold = _threshold(*per["val"], val_labels, num_classes, reject_rate, threshold_from)
        out["scores"][score] = openset_metrics(*per["test"], test_labels, threshold, num_classes)
    out.update(task="openset", num_known_classes=num_classes, num_test_known=int((test_labels != UNKNOWN).sum()),
               num_test_unknown=int((test_labels == UNKNOWN).sum()), reject_rate=reject_rate, evidence=kind,
               threshold_from=threshold_from)
    return out


ListData = str | os.PathLike | Sequence[ClassificationSample]


def _labels(samples: Sequence[ClassificationSample], unknown: set[int]) -> np.ndarray:
    return np.asarray([UNKNOWN if s.label in unknown else s.label for s in samples], dtype=np.int64)


Head = Literal["auto", "model", "fit"]


def model_head_rows(model: nn.Module, known: Sequence[int], names: Sequence[str] | None = None) -> list[int] | None:
    """Which known label each row of the model's own classifier head predicts, or None if it has no such head.

    The ``openset`` objective saves the known labels as ``class_names`` (``"0"``, ``"1"``, ...); a classifier
    trained on class names maps through ``names`` (classes.txt); a head without names is read as the known
    labels in increasing order when it has one row per known class.
    """
    if not isinstance(model, VideoClassifier) or common.is_multimodal(model):
        return None
    rows = getattr(model.config, "num_classes", 0) or 0  # a stand-in's config may not say
    if not rows:
        return None
    saved = saved_class_names(model)
    if not saved:
        return sorted(known) if rows == len(known) else None
    if all(str(n).lstrip("-").isdigit() for n in saved):
        return [int(n) for n in saved]
    if names is None:
        raise UsageError("the model's head is labelled by class name: give the class list (classes.txt) to map it")
    missing = [n for n in saved if n not in names]
    if missing:
        raise UsageError(f"the model's head classes {', '.join(missing)} are not in the class list")
    return [list(names).index(n) for n in saved]


def evaluate_openset(model: nn.Module, train: ListData, val: ListData | None, test: ListData, *,
                     root: str | os.PathLike | None = None, classes: str | os.PathLike | Sequence[str] | None = None,
                     unknown: Sequence[str] = (), known: Sequence[str] | None = None, head: Head = "auto",
                     pool: str = "auto", sampling: SamplingOverride = "auto", frame_interval: int | None = None,
                     num_crops: int = 1, batch_size: int = 8, num_workers: int = 0,
                     device: str | torch.device | None = None, precision: Precision = "fp32", progress: bool = True,
                     fit: HeadFitter | None = None, threshold_from: ThresholdFrom = "val",
                     **protocol: Any) -> dict[str, Any]:
    """The protocol on a model: its own classifier head, or heads fitted on its frozen features.

    ``num_crops=3``: DEAR's ThreeCrop test, the crops' logits (or features) averaged (``average_clips='score'``).
    ``threshold_from="train"`` derives the rejection threshold from the training list as DEAR does
    (:func:`dear_threshold`); ``val`` may then be None.

    ``head="model"`` scores the model's own outputs (a classifier trained on
    the known classes, e.g. by the ``openset`` objective): all four scores
    come from the same logits, and the training list only names the known
    classes. ``head="fit"`` trains the evidential and softmax heads on the
    frozen features (:func:`evaluate_openset_features`; ``protocol`` goes to
    it), with ``fit`` (:func:`internvideo.train.heads.fit_openset_head`). ``"auto"``: the model's head
    when it has one row per known class, else fitted heads. ``results["head"]`` says which.
    """
    from .recognition import classification_dataset

    if head not in ("auto", "model", "fit"):
        raise UsageError(f"head must be 'auto', 'model' or 'fit', not {head!r}")
    names = None if classes is None else (read_classes(classes) if isinstance(classes, (str, os.PathLike))
                                          else list(classes))
    unknown_ids: set[int] = set()
    if unknown or known:
        if names is None:
            raise UsageError("naming known/unknown classes needs the class list (classes.txt)")
        unknown_ids = resolve_unknown(names, unknown, known)
    if threshold_from not in ("val", "train"):
        raise UsageError(f"threshold_from must be 'val' or 'train', not {threshold_from!r}")
    if val is None and threshold_from == "val":
        raise UsageError("the validation list is needed for its threshold (or derive it from the training list)")
    lists = {}
    thr_split = "train" if threshold_from == "train" else "val"
    for name, data in (("train", train), ("val", val), ("test", test)):
        if data is None:
            continue
        samples = read_classification_list(data, root) if isinstance(data, (str, os.PathLike)) else list(data)
        if not samples:
            raise UsageError(f"the open-set {name} list is empty")
        labels = _labels(samples, unknown_ids)
        if name == "train" and (labels == UNKNOWN).any():
            bad = sorted({s.label for s in samples if s.label in unknown_ids or s.label == UNKNOWN})
            raise UsageError(f"the open-set training list holds unknown classes {bad}; train on known classes only")
        lists[name] = (samples, labels)
    index = _known_index(lists["train"][1])
    rows = model_head_rows(model, list(index), names) if head != "fit" else None
    if rows is not None and sorted(rows) != sorted(index):
        if head == "model":
            raise common.WrongModelError(f"the model's head predicts labels {sorted(rows)}, not the known "
                                         f"training classes {sorted(index)}")
        rows = None
    if head == "model" and rows is None:
        raise common.WrongModelError(f"{type(model).__name__} has no classifier head over the known classes; "
                                     "use head='fit'")

    def outputs(name: str, fn: Any) -> np.ndarray:
        samples = lists[name][0]
        dataset = classification_dataset(model, samples, root=root, sampling=sampling, frame_interval=frame_interval,
                                         num_crops=num_crops)
        if fn is None:
            return common.dataset_features(model, dataset, pool=pool, batch_size=batch_size, num_workers=num_workers,
                                           device=device, precision=precision, progress=progress,
                                           desc=f"features ({name})")
        out, _ = common.map_views(model, fn, dataset, views=num_crops, batch_size=batch_size, num_workers=num_workers,
                                  device=common.resolve_device(device), precision=precision, progress=progress,
                                  desc=f"logits ({name})")
        return out.float().mean(dim=1).numpy()

    if rows is None:
        if fit is None:
            raise TypeError("heads fitted on frozen features need fit= (internvideo.train.heads.fit_openset_head)")
        splits = {name: (outputs(name, None), lists[name][1]) for name in ("train", thr_split, "test")}
        return evaluate_openset_features(splits["train"], splits[thr_split], splits["test"], fit=fit,
                                         threshold_from=threshold_from, **protocol)
    # Head rows reordered to the known labels' increasing order, the row order the metrics use.
    order = [rows.index(label) for label in sorted(index)]
    logits = {name: torch.as_tensor(outputs(name, lambda x: model(x).float()))[:, order]
              for name in (thr_split, "test")}
    y = {name: _remap(lists[name][1], index, name) for name in (thr_split, "test")}
    opts = {k: protocol[k] for k in ("kind", "reject_rate") if k in protocol}
    out = score_logits({score: (logits[thr_split], logits["test"]) for score in SCORES}, y[thr_split], y["test"],
                       len(index), threshold_from=threshold_from, **opts)
    out.update(num_train=len(lists["train"][0]), head="model")
    return out


def results_table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = []
    for score, m in results["scores"].items():
        rows += [(f"{score}: AUROC (%)", m["auroc"]), (f"{score}: open-set macro-F1 (%)", m["macro_f1"]),
                 (f"{score}: closed-set accuracy (%)", m["closed_set_accuracy"])]
    rows += [("known classes", results["num_known_classes"]),
             ("test videos known / unknown", f"{results['num_test_known']} / {results['num_test_unknown']}")]
    return common.format_table("Open-set recognition (AUROC chance = 50)", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval openset``."""
    common.add_common_arguments(parser, data_help="test list 'path label' with known and unknown (-1) videos")
    parser.add_argument("--train", required=True, help="training list of known classes only")
    parser.add_argument("--val", default=None, help="validation list (threshold selection; not needed with "
                                                     "--threshold-from train)")
    parser.add_argument("--threshold-from", choices=["val", "train"], default="val",
                        help="derive the rejection threshold from the validation list, or from the training list "
                             "as DEAR does (95 %% of training videos kept, --reject-rate 0.05)")
    parser.add_argument("--ood", nargs="+", default=None, metavar="LIST",
                        help="unknown sets in DEAR's format (e.g. hmdb51_val_split_1_videos.txt, "
                             "mit_val_list_videos.txt): every video is unknown, paths relative to <list folder>/videos;"
                             " --data is then the known test list (e.g. ucf101_val_split_1_videos.txt)")
    parser.add_argument("--classes", default=None, help="classes.txt, needed with --unknown/--known")
    parser.add_argument("--unknown", nargs="*", default=[], metavar="NAME", help="class names treated as unknown")
    parser.add_argument("--known", nargs="*", default=None, metavar="NAME",
                        help="class names declared known (checked against --unknown)")
    parser.add_argument("--evidence", choices=["exp", "relu", "softplus"], default="exp")
    parser.add_argument("--reject-rate", type=argtypes.number(float, low=0, high=1, low_open=True, high_open=True), default=0.05,
                        help="share of known validation videos rejected by the threshold (no unknowns in val)")
    parser.add_argument("--head", choices=["auto", "model", "fit"], default="auto",
                        help="score the model's own classifier head (model), heads fitted on its frozen features "
                             "(fit), or the model's head when it has one row per known class (auto)")
    parser.add_argument("--steps", type=argtypes.positive_int, default=300,
                        help="full-batch optimiser steps for each fitted head (a model's own head is scored as trained)")
    parser.add_argument("--pool", choices=["auto", "pre_logits", "mean", "embed"], default="auto")
    parser.add_argument("--crops", type=int, choices=[1, 3], default=1,
                        help="spatial crops per video, averaged (3: DEAR's / InternVideo's ThreeCrop test)")


def main(args: argparse.Namespace, fit: HeadFitter | None = None) -> int:
    """``internvideo eval openset``; the CLI passes ``fit`` (tasks never train, :mod:`internvideo.train` does)."""
    if not 0.0 <= args.reject_rate < 1.0:
        raise UsageError(f"--reject-rate must be in [0, 1), got {args.reject_rate}")
    model = common.load_model_arg(args.model)
    test = args.data if not args.ood else openset_test_samples(args.data, args.ood, known_root=args.root)
    results = evaluate_openset(model, args.train, args.val, test, root=args.root, classes=args.classes,
                               unknown=args.unknown, known=args.known, head=args.head, pool=args.pool,
                               batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                               precision=args.precision, progress=args.progress, kind=args.evidence,
                               reject_rate=args.reject_rate, steps=args.steps, fit=fit,
                               threshold_from=args.threshold_from, num_crops=args.crops)
    results.update(model=str(args.model), train=str(args.train), val=str(args.val), data=str(args.data))
    return common.finish(results, results_table(results), args.out)
