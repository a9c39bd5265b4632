"""Zero-shot action recognition with a video-language model.

Each class name is put into every prompt template ("a video of a person {}."),
the prompts are embedded and L2-normalised, averaged per class and normalised
again (prompt ensembling, as CLIP and the InternVideo zero-shot evaluation
do). A video's class scores are ``logit_scale * cosine`` between its
normalised embedding and each class embedding; with several views per video
the per-view softmax probabilities are averaged as in supervised testing.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import read_classes
from ..errors import UsageError
from . import common
from .common import Precision, SamplingOverride
from .metrics import average_views, check_finite, classification_metrics
from .recognition import ClassificationData, classification_dataset

#: Prompt templates used when none are given; ``{}`` is replaced by the class name.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a video of a person {}.",
    "a video of {}.",
    "a person is {}.",
    "a clip of someone {}.",
    "a video showing {}.",
    "{}.",
)

__all__ = ["DEFAULT_TEMPLATES", "read_templates", "zeroshot_classifier", "zeroshot_scores", "evaluate_zeroshot",
           "results_table", "add_arguments", "main"]


def read_templates(path: str | os.PathLike) -> list[str]:
    """A template file: one prompt per line, each containing ``{}`` where the class name goes."""
    with open(path, encoding="utf-8") as f:
        templates = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise UsageError(f"{path}: every template needs a '{{}}' for the class name; these have none: {bad[:3]}")
    if not templates:
        raise UsageError(f"{path}: no templates")
    return templates


def zeroshot_classifier(model: nn.Module, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                        *, batch_size: int = 256, device: str | torch.device | None = None,
                        precision: Precision = "fp32", progress: bool = True, trim_padding: bool = False
                        ) -> torch.Tensor:
    """Class embeddings ``(num_classes, D)``: prompts embedded, normalised, averaged per class, renormalised."""
    if not classnames or not templates:
        raise UsageError("zero-shot classification needs class names and at least one template")
    missing = [t for t in templates if "{}" not in t]
    if missing:
        raise UsageError(f"templates need a '{{}}' for the class name: {missing[:3]}")
    dev = common.resolve_device(device)
    prompts = [t.replace("{}", name) for name in classnames for t in templates]
    with common.inference(model, dev, precision):
        emb = common.encode_texts(model, prompts, batch_size=batch_size, device=dev, progress=progress,
                                  desc="class prompts", trim_padding=trim_padding)
    per_class = emb.reshape(len(classnames), len(templates), -1).mean(dim=1)
    return F.normalize(per_class, dim=-1)


def _classnames(classnames: str | os.PathLike | Sequence[str] | None, dataset: Any) -> list[str]:
    if isinstance(classnames, (str, os.PathLike)):
        return read_classes(classnames)
    if classnames is not None:
        return list(classnames)
    if getattr(dataset, "classes", None):
        return list(dataset.classes)
    raise UsageError("zero-shot needs class names: pass classnames (or a classes.txt next to the list file)")


def zeroshot_scores(model: nn.Module, data: ClassificationData, classnames: str | os.PathLike | Sequence[str] | None
                    = None, templates: Sequence[str] | str | os.PathLike | None = None, *,
                    root: str | os.PathLike | None = None, num_clips: int = 1, num_crops: int = 1,
                    sampling: SamplingOverride = "auto", frame_interval: int | None = None, batch_size: int = 8, num_workers: int = 0,
                    device: str | torch.device | None = None, precision: Precision = "fp32",
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-view logits ``(N, V, num_classes)``, labels ``(N,)`` and the class names used.

    ``templates``: a sequence, a template file (:func:`read_templates`) or
    ``None`` for :data:`DEFAULT_TEMPLATES`.
    """
    common.require_multimodal(model, "zero-shot recognition")
    dataset = classification_dataset(model, data, root=root, num_clips=num_clips, num_crops=num_crops,
                                     sampling=sampling, frame_interval=frame_interval)
    names = _classnames(classnames, dataset)
    if isinstance(templates, (str, os.PathLike)):
        templates = read_templates(templates)
    dev = common.resolve_device(device)
    weights = zeroshot_classifier(model, names, templates or DEFAULT_TEMPLATES, device=dev, precision=precision,
                                  progress=progress)
    scale = common.logit_scale(model)

    def class_logits(clips: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(model.encode_video(clips).float(), dim=-1)
        return scale * emb @ weights.to(emb.device).t()

    logits, fields = common.map_views(
        model, class_logits, dataset, views=num_clips * num_crops, batch_size=batch_size, num_workers=num_workers,
        device=dev, precision=precision, progress=progress, desc="zero-shot", collect=("label",))
    return logits.numpy(), fields["label"].numpy(), names


def evaluate_zeroshot(model: nn.Module, data: ClassificationData, classnames: str | os.PathLike | Sequence[str] | None
                      = None, templates: Sequence[str] | str | os.PathLike | None = None, *, num_clips: int = 1,
                      num_crops: int = 1, allow_nonfinite: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Zero-shot top-1/top-5/mean-class accuracy (percent); keyword arguments as :func:`zeroshot_scores`.

    Non-finite scores fail the evaluation unless ``allow_nonfinite`` (then they count as wrong).
    """
    dataset = classification_dataset(model, data, num_clips=num_clips, num_crops=num_crops,
                                     **{k: kwargs.pop(k) for k in ("root", "sampling", "frame_interval") if k in kwargs})
    view_logits, labels, names = zeroshot_scores(model, dataset, classnames, templates, num_clips=num_clips,
                                                 num_crops=num_crops, **kwargs)
    nonfinite = check_finite(view_logits, "test videos", allow=allow_nonfinite)
    if isinstance(templates, (str, os.PathLike)):
        templates = read_templates(templates)
    return {
        "task": "zeroshot",
        "views": f"{num_clips}x{num_crops}",
        "num_views": int(view_logits.shape[1]),  # per video, as the data delivered them
        **classification_metrics(average_views(view_logits), labels),
        "num_classes": len(names),
        "num_templates": len(templates or DEFAULT_TEMPLATES),
        "chance": 100.0 / len(names),
        "num_nonfinite": nonfinite,
        "num_duplicates": getattr(dataset, "num_duplicates", 0),
    }


def results_table(results: dict[str, Any]) -> str:
    rows = [("top-1 (%)", results["top1"]), ("top-5 (%)", results["top5"]),
            ("mean class acc. (%)", results["mean_class_acc"]), ("chance top-1 (%)", results["chance"]),
            ("classes x templates", f"{results['num_classes']} x {results['num_templates']}"),
            ("test videos", results["num_samples"])]
    if results.get("num_duplicates"):
        rows.append(("duplicate lines dropped", results["num_duplicates"]))
    return common.format_table(f"Zero-shot recognition ({results['views']} views)", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval zeroshot``."""
    common.add_common_arguments(parser, data_help="classification list: '<video path> <label>' per line")
    parser.add_argument("--classes", default=None, help="class names, one per line (default: classes.txt next to "
                                                        "the list)")
    parser.add_argument("--templates", default=None, help="prompt templates, one per line with {} for the class "
                                                          "name (default: 'a video of a person {}.' and others)")
    parser.add_argument("--num-clips", type=int, default=1)
    parser.add_argument("--num-crops", type=int, choices=[1, 3], default=1)
    common.add_sampling_arguments(parser)


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    results = evaluate_zeroshot(
        model, args.data, args.classes, args.templates, root=args.root, num_clips=args.num_clips,
        num_crops=args.num_crops, sampling=args.sampling, frame_interval=args.frame_interval,
        batch_size=args.batch_size, num_workers=args.num_workers, device=args.device, precision=args.precision,
        progress=args.progress, allow_nonfinite=args.allow_nonfinite)
    results.update(model=str(args.model), data=str(args.data))
    return common.finish(results, results_table(results), args.out)
