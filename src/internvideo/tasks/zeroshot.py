"""Zero-shot action recognition with a video-language model, under two protocols.

``protocol="ours"``: each class name is put into every prompt template ("a
video of a person {}."), the prompts are embedded and L2-normalised, averaged
per class and normalised again (CLIP's prompt ensembling); a video's class
scores are ``logit_scale * cosine`` with each class embedding, one softmax.

``protocol="internvideo"`` (the official evaluation, ``InternVideo1/Downstream/
multi-modalities-downstream/CoTrain``): the 16 ActionCLIP templates
(``modules/text_prompt.py``, ``prompt_type='all'``) are scored separately:
``logit_scale * cosine`` between the normalised video embedding and each
normalised prompt embedding, a softmax over the classes **per template**, then
the probabilities averaged over the templates (``objectives.compute_zs_classify``).
The official script also merges the weights with CLIP first (``clip_wiseft_coef
0.5``; ``--clip`` here, see :mod:`.merge`).

With several views per video the per-view softmax probabilities are averaged as
in supervised testing. Under ``internvideo`` a view's scores are the logarithm
of its template-averaged probabilities, so that softmax gives back exactly those
probabilities and every consumer of per-view scores treats both protocols alike.
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
from ..data.datasets import text_lines
from ..errors import UsageError
from . import common, merge
from .common import EvalProtocol, Precision, SamplingOverride
from .metrics import average_views, check_finite, classification_metrics
from .recognition import ClassificationData, classification_dataset
from .. import argtypes

#: Our prompt templates (protocol ``ours``); ``{}`` is replaced by the class name.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a video of a person {}.",
    "a video of {}.",
    "a person is {}.",
    "a clip of someone {}.",
    "a video showing {}.",
    "{}.",
)

#: The official templates (protocol ``internvideo``): ActionCLIP's 16, as InternVideo's ``text_prompt.py`` lists them.
ACTIONCLIP_TEMPLATES: tuple[str, ...] = (
    "a photo of action {}", "a picture of action {}", "Human action of {}", "{}, an action",
    "{} this is an action", "{}, a video of action", "Playing action of {}", "{}",
    "Playing a kind of action, {}", "Doing a kind of action, {}", "Look, the human is {}",
    "Can you recognize the action of {}?", "Video classification of {}", "A video of {}",
    "The man is {}", "The woman is {}",
)

#: Template sets selectable by name (``--templates actionclip``).
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"ours": DEFAULT_TEMPLATES, "actionclip": ACTIONCLIP_TEMPLATES}
PROTOCOL_TEMPLATES: dict[str, str] = {"ours": "ours", "internvideo": "actionclip"}

__all__ = ["DEFAULT_TEMPLATES", "ACTIONCLIP_TEMPLATES", "TEMPLATE_SETS", "TemplateError", "read_templates",
           "resolve_templates", "zeroshot_classifier", "zeroshot_scores", "evaluate_zeroshot", "results_table",
           "add_arguments", "main"]


class TemplateError(UsageError, ValueError):
    """A template file or class list that cannot be used; the message names the file and line."""


def read_templates(path: str | os.PathLike) -> list[str]:
    """A template file: one prompt per line, each containing ``{}`` where the class name goes (``#`` comments)."""
    templates = []
    for number, line in text_lines(path):  # UTF-8 (a BOM dropped); other bytes name the file and line
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if "{}" not in text:
            raise TemplateError(f"{path}, line {number}: a template needs a '{{}}' where the class name goes; "
                                f"got {text!r}")
        templates.append(text)
    if not templates:
        raise TemplateError(f"{path}: no templates")
    return templates


def resolve_templates(templates: Sequence[str] | str | os.PathLike | None, protocol: EvalProtocol = "ours"
                      ) -> tuple[list[str], str]:
    """The templates and what to call them: ``None`` is the protocol's set, a name one of :data:`TEMPLATE_SETS`,
    another string or path a template file (:func:`read_templates`), a sequence the templates themselves."""
    if templates is None:
        templates = PROTOCOL_TEMPLATES[protocol]
    if isinstance(templates, str) and templates in TEMPLATE_SETS:
        return list(TEMPLATE_SETS[templates]), templates
    if isinstance(templates, (str, os.PathLike)):
        return read_templates(templates), str(templates)
    return list(templates), "given"


def _check_classnames(names: Sequence[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise TemplateError(f"class name {name!r} appears twice (labels {seen[name]} and {i}): zero-shot "
                                "cannot tell those classes apart")
        seen[name] = i


def zeroshot_classifier(model: nn.Module, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                        *, batch_size: int = 256, device: str | torch.device | None = None,
                        precision: Precision = "fp32", progress: bool = True, trim_padding: bool = False,
                        per_template: bool = False) -> torch.Tensor:
    """Class embeddings ``(num_classes, D)``: prompts embedded, normalised, averaged per class, renormalised.

    ``per_template``: no averaging, ``(num_templates, num_classes, D)`` normalised prompt embeddings.
    """
    if not classnames or not templates:
        raise UsageError("zero-shot classification needs class names and at least one template")
    missing = [t for t in templates if "{}" not in t]
    if missing:
        raise TemplateError(f"templates need a '{{}}' for the class name: {missing[:3]}")
    _check_classnames(classnames)
    dev = common.resolve_device(device)
    prompts = [t.replace("{}", name) for t in templates for name in classnames]
    with common.inference(model, dev, precision):
        emb = common.encode_texts(model, prompts, batch_size=batch_size, device=dev, progress=progress,
                                  desc="class prompts", trim_padding=trim_padding)
    emb = emb.reshape(len(templates), len(classnames), -1)
    if per_template:
        return emb
    return F.normalize(emb.mean(dim=0), dim=-1)


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
                    protocol: EvalProtocol = "ours", root: str | os.PathLike | None = None, num_clips: int = 1,
                    num_crops: int = 1, sampling: SamplingOverride = "auto", frame_interval: int | None = None,
                    batch_size: int = 8, num_workers: int = 0, device: str | torch.device | None = None,
                    precision: Precision = "fp32", progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-view scores ``(N, V, num_classes)``, labels ``(N,)`` and the class names used.

    ``ours``: logits; ``internvideo``: log template-averaged probabilities (see
    the module docstring); a softmax per view turns either into probabilities.
    ``templates``: a sequence, a set name, a template file or ``None`` for the
    protocol's own set (:func:`resolve_templates`).
    """
    common.require_multimodal(model, "zero-shot recognition")
    common.check_protocol(protocol)
    dataset = classification_dataset(model, data, root=root, num_clips=num_clips, num_crops=num_crops,
                                     sampling=sampling, frame_interval=frame_interval)
    names = _classnames(classnames, dataset)
    prompts, _ = resolve_templates(templates, protocol)
    dev = common.resolve_device(device)
    official = protocol == "internvideo"
    weights = zeroshot_classifier(model, names, prompts, device=dev, precision=precision, progress=progress,
                                  per_template=official)
    scale = common.logit_scale(model)

    def class_scores(clips: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(model.encode_video(clips).float(), dim=-1)
        if not official:
            return scale * emb @ weights.to(emb.device).t()
        # (B, templates, classes): a softmax over the classes per template, then the mean over the templates.
        # In float64, where exp(-2 * 100) is still above zero, so the logarithm stays finite.
        logits = scale * torch.einsum("bd,tcd->btc", emb.double(), weights.to(emb.device, torch.float64))
        return logits.softmax(dim=-1).mean(dim=1).log()

    scores, fields = common.map_views(
        model, class_scores, dataset, views=num_clips * num_crops, batch_size=batch_size, num_workers=num_workers,
        device=dev, precision=precision, progress=progress, desc="zero-shot", collect=("label",))
    return scores.numpy(), fields["label"].numpy(), names


def evaluate_zeroshot(model: nn.Module, data: ClassificationData, classnames: str | os.PathLike | Sequence[str] | None
                      = None, templates: Sequence[str] | str | os.PathLike | None = None, *,
                      protocol: EvalProtocol = "ours", num_clips: int = 1, num_crops: int = 1,
                      allow_nonfinite: bool = False, save_scores: str | os.PathLike | None = None,
                      model_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Zero-shot top-1/top-5/mean-class accuracy (percent); keyword arguments as :func:`zeroshot_scores`.

    Non-finite scores fail the evaluation unless ``allow_nonfinite`` (then they count as wrong).
    ``save_scores``: write the per-video probabilities (:func:`~.common.save_scores`, ``model_id`` naming the model).
    """
    dataset = classification_dataset(model, data, num_clips=num_clips, num_crops=num_crops,
                                     **{k: kwargs.pop(k) for k in ("root", "sampling", "frame_interval") if k in kwargs})
    view_scores, labels, names = zeroshot_scores(model, dataset, classnames, templates, protocol=protocol,
                                                 num_clips=num_clips, num_crops=num_crops, **kwargs)
    nonfinite = check_finite(view_scores, "test videos", allow=allow_nonfinite)
    prompts, template_name = resolve_templates(templates, protocol)
    probs = average_views(view_scores)
    extra = {}
    if save_scores is not None:
        scores = common.dataset_scores(dataset, probs, labels, model_id or model, "zeroshot", names)
        extra["scores_file"] = str(common.save_scores(save_scores, scores))
    return {
        **extra,
        "task": "zeroshot",
        "protocol": protocol,
        "templates": template_name,
        "views": f"{num_clips}x{num_crops}",
        "num_views": int(view_scores.shape[1]),  # per video, as the data delivered them
        **classification_metrics(probs, labels),
        "num_classes": len(names),
        "num_templates": len(prompts),
        "chance": 100.0 / len(names),
        "num_nonfinite": nonfinite,
        "num_duplicates": getattr(dataset, "num_duplicates", 0),
    }


def results_table(results: dict[str, Any]) -> str:
    rows = [("top-1 (%)", results["top1"]), ("top-5 (%)", results["top5"]),
            ("mean class acc. (%)", results["mean_class_acc"]), ("chance top-1 (%)", results["chance"]),
            ("classes x templates", f"{results['num_classes']} x {results['num_templates']}"),
            ("test videos", results["num_samples"])]
    if results.get("merge"):
        rows.append(("merged with CLIP (tensors)", results["merge"]["num_merged"]))
    if results.get("num_duplicates"):
        rows.append(("duplicate lines dropped", results["num_duplicates"]))
    return common.format_table(f"Zero-shot recognition, protocol {results.get('protocol', 'ours')} "
                               f"({results['views']} views)", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval zeroshot``."""
    common.add_common_arguments(parser, data_help="classification list: '<video path> <label>' per line")
    common.add_protocol_argument(parser, ours="our templates, prompt embeddings averaged per class, one softmax",
                                 internvideo="the 16 ActionCLIP templates, a softmax per template, probabilities "
                                             "averaged (official CoTrain compute_zs_classify)")
    parser.add_argument("--classes", default=None, help="class names, one per line (default: classes.txt next to "
                                                        "the list)")
    parser.add_argument("--templates", default=None,
                        help="prompt templates: a set name (ours, actionclip) or a file, one per line with {} for "
                             "the class name (default: the protocol's set)")
    parser.add_argument("--num-clips", type=argtypes.positive_int, default=1)
    parser.add_argument("--num-crops", type=int, choices=[1, 3], default=1)
    merge.add_merge_arguments(parser)
    common.add_sampling_arguments(parser)
    common.add_save_scores_argument(parser)


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    merged = merge.merge_from_args(model, args, "clip_param_keys")
    results = evaluate_zeroshot(
        model, args.data, args.classes, args.templates, protocol=args.protocol, root=args.root,
        num_clips=args.num_clips, num_crops=args.num_crops, sampling=args.sampling,
        frame_interval=args.frame_interval, batch_size=args.batch_size, num_workers=args.num_workers,
        device=args.device, precision=args.precision, progress=args.progress, allow_nonfinite=args.allow_nonfinite,
        save_scores=args.save_scores, model_id=str(args.model))
    results.update(model=str(args.model), data=str(args.data), merge=merged)
    return common.finish(results, results_table(results), args.out)
