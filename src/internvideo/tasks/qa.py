"""Open-ended video question answering: an answer classifier over the most frequent training answers.

Protocol (as the official MSRVTT-QA / MSVD-QA / TGIF-QA evaluations):

* answers are normalised (lower case, surrounding whitespace stripped) in
  training and test alike;
* the answer vocabulary is the ``top_k`` most frequent answers of the training
  split (ties: first seen first); training questions with other answers are
  left out of training;
* at test time every question counts: one whose answer is outside the
  vocabulary can never be answered right and counts as wrong;
* accuracy (percent) overall and per question type, when the data has types
  (the first word for MSRVTT-QA/MSVD-QA, FrameQA's object/number/color/location,
  the synthetic world's colour/shape/size/action/motion).

Videos that cannot be read are listed, skipped and counted (``skipped``); their
questions are not scored. The baseline beside the model's accuracy answers
every question with the most frequent training answer.

The model is :class:`~internvideo.models.qa.VideoQA`; its head is trained on a
frozen backbone from cached backbone outputs (:class:`QAFeatures`: the video
tokens of each distinct video are computed once) by
:func:`internvideo.train.heads.train_qa_head` (tasks never train).
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data import QASample, VideoDataset, read_qa
from ..errors import UsageError
from ..models.qa import VideoQA, answer_vocabulary, normalize_answer, question_padding
from ..tokenizer import get_tokenizer
from ..fileio import printable
from . import common
from .common import Precision
from .inputs import readable_videos
from .metrics import check_finite

__all__ = ["normalize_answer", "answer_vocabulary", "qa_accuracy", "most_frequent_answer", "QAFeatures",
           "qa_samples", "qa_features", "predict_answers", "evaluate_qa", "results_table", "add_arguments",
           "main"]

QAData = str | os.PathLike | Sequence[QASample]


def most_frequent_answer(samples: Sequence[QASample]) -> str:
    return answer_vocabulary([s.answer for s in samples], 1)[0]


def qa_accuracy(predictions: Sequence[str], samples: Sequence[QASample]) -> dict[str, Any]:
    """``{"accuracy", "per_type", "num_questions"}`` in percent; answers compared after normalisation."""
    if len(predictions) != len(samples):
        raise ValueError(f"{len(predictions)} predictions for {len(samples)} questions")
    if not samples:
        raise UsageError("no questions to score")
    hits = np.asarray([normalize_answer(p) == normalize_answer(s.answer) for p, s in zip(predictions, samples)])
    out: dict[str, Any] = {"accuracy": 100.0 * float(hits.mean()), "num_questions": len(samples)}
    types = [s.type for s in samples]
    if any(t is not None for t in types):
        per: dict[str, list[bool]] = collections.defaultdict(list)
        for t, h in zip(types, hits):
            per[t or "other"].append(bool(h))
        out["per_type"] = {t: 100.0 * float(np.mean(v)) for t, v in sorted(per.items())}
        out["type_counts"] = {t: len(v) for t, v in sorted(per.items())}
    return out


def qa_samples(data: QAData, root: str | os.PathLike | None) -> list[QASample]:
    """QA samples from a file or a sequence; an empty set is a user error."""
    samples = read_qa(data, root) if isinstance(data, (str, os.PathLike)) else list(data)
    if not samples:
        raise UsageError("no questions")
    return samples


# ----------------------------------------------------------------------------- backbone outputs


class QAFeatures:
    """Cached backbone outputs of a QA set: per-video tokens and per-question text tokens."""

    def __init__(self, video_tokens: torch.Tensor, video_index: torch.Tensor, question_tokens: torch.Tensor,
                 padding: torch.Tensor, video_features: torch.Tensor | None = None):
        self.video_tokens = video_tokens  # (V, T, N, D) of each distinct readable video
        self.video_index = video_index  # (Q,) question -> row of video_tokens
        self.question_tokens = question_tokens  # (Q, L, text_width)
        self.padding = padding  # (Q, L) True = padding
        self.video_features = video_features  # (V, vision_width) before the projection: the vtc_cap head's

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The inputs of ``VideoQA.forward_head`` for questions ``rows``."""
        videos = self.video_index[rows]
        out = (self.question_tokens[rows], self.padding[rows], self.video_tokens[videos])
        return out if self.video_features is None else out + (self.video_features[videos],)


def qa_features(model: VideoQA, samples: Sequence[QASample], *, batch_size: int = 8, num_workers: int = 0,
                device: str | torch.device | None = None, precision: Precision = "fp32",
                progress: bool = True) -> tuple[QAFeatures, list[int], list[tuple[str, str]]]:
    """Backbone outputs of the questions whose video is readable: ``(features, kept question indices, skipped)``."""
    keep, skipped = readable_videos([s.video for s in samples])
    kept = [samples[i] for i in keep]
    if not kept:
        first = skipped[0] if skipped else ("-", "no questions")
        raise UsageError(f"none of the videos could be read (first: {first[0]}: {first[1]})")
    videos = list(dict.fromkeys(s.video for s in kept))
    row = {v: i for i, v in enumerate(videos)}
    dev = common.resolve_device(device)
    backbone = model.backbone
    dataset = VideoDataset(videos, common.eval_view(backbone), training=False, strict=True)
    vtc_cap = model.config.head == "vtc_cap"

    def video_outputs(clip: torch.Tensor) -> torch.Tensor:
        # One tensor per clip for map_views: the tokens, flattened, then (vtc_cap) the pooled feature.
        feats = backbone.visual.forward_features(clip)
        parts = [feats.tokens.flatten(1)] + ([backbone.visual.pool(feats, project=False)] if vtc_cap else [])
        return torch.cat(parts, dim=1)

    c = backbone.config
    flat, _ = common.map_views(model, video_outputs, dataset, batch_size=batch_size, num_workers=num_workers,
                               device=dev, precision=precision, progress=progress, desc="video tokens")
    flat = flat[:, 0]
    num_token_values = flat.shape[1] - (c.vision_width if vtc_cap else 0)
    tokens = flat[:, :num_token_values].reshape(len(videos), -1, 1 + c.grid_size ** 2, c.vision_width)
    video_features = flat[:, num_token_values:] if vtc_cap else None
    tokenizer = get_tokenizer("clip", context_length=backbone.config.context_length)
    ids = tokenizer([s.question for s in kept])
    ids = ids[:, : int((ids != 0).sum(dim=1).max())]  # up to the longest question: the rest is padding
    chunks = []
    with common.inference(model, dev, precision):
        for i in tqdm(range(0, len(ids), 256), desc="questions", disable=not progress, unit="batch"):
            chunks.append(backbone.text.forward_tokens(ids[i:i + 256].to(dev)).float().cpu())
    features = QAFeatures(tokens, torch.tensor([row[s.video] for s in kept]), torch.cat(chunks),
                          question_padding(ids), video_features)
    return features, keep, skipped


def predict_answers(model: VideoQA, samples: Sequence[QASample], *, batch_size: int = 8, num_workers: int = 0,
                    device: str | torch.device | None = None, precision: Precision = "fp32", progress: bool = True,
                    features: QAFeatures | None = None) -> tuple[list[str], list[int], list[tuple[str, str]]]:
    """``(answers of the kept questions, kept indices, skipped videos)``."""
    keep, skipped = list(range(len(samples))), []
    if features is None:
        features, keep, skipped = qa_features(model, samples, batch_size=batch_size, num_workers=num_workers,
                                              device=device, precision=precision, progress=progress)
    dev = common.resolve_device(device)
    picks = []
    with common.inference(model, dev, precision):
        for i in range(0, len(keep), 256):
            inputs = (t.to(dev) for t in features.batch(torch.arange(i, min(i + 256, len(keep)))))
            logits = model.forward_head(*inputs).float()
            check_finite(logits, "questions")  # argmax would pick a NaN answer as if it were the best
            picks.append(logits.argmax(dim=-1).cpu())
    return [model.answers[int(j)] for j in torch.cat(picks)], keep, skipped


def evaluate_qa(model: VideoQA, data: QAData, *, root: str | os.PathLike | None = None,
                train: QAData | None = None, features: QAFeatures | None = None, **kwargs: Any) -> dict[str, Any]:
    """``{"accuracy", "per_type"?, "num_questions", "num_out_of_vocabulary", "num_skipped", "skipped", "baseline"?}``.

    ``train`` (the training questions) adds the most-frequent-answer baseline on the same questions.
    Other keyword arguments are those of :func:`predict_answers`.
    """
    if not isinstance(model, VideoQA):
        raise common.WrongModelError("open-ended QA needs a VideoQA model (a backbone with a QA head), got "
                                     f"{type(model).__name__}")
    samples = qa_samples(data, root)
    predictions, keep, skipped = predict_answers(model, samples, features=features, **kwargs)
    scored = [samples[i] for i in keep]
    vocab = set(model.answers)
    results: dict[str, Any] = {"task": "qa", **qa_accuracy(predictions, scored),
                               "num_out_of_vocabulary": sum(normalize_answer(s.answer) not in vocab for s in scored),
                               "num_answers": len(model.answers), "num_skipped": len(skipped),
                               "skipped": [{"video": v, "reason": r} for v, r in skipped],
                               "examples": [{"question": s.question, "answer": s.answer, "predicted": p}
                                            for s, p in list(zip(scored, predictions))[:5]]}
    if train is not None:
        common_answer = most_frequent_answer(qa_samples(train, root))
        results["baseline"] = {"name": f"always {common_answer!r}",
                               **qa_accuracy([common_answer] * len(scored), scored)}
    return results


def results_table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = [("accuracy (%)", results["accuracy"])]
    if "baseline" in results:
        rows.append((f"baseline: {results['baseline']['name']} (%)", results["baseline"]["accuracy"]))
    for t, acc in results.get("per_type", {}).items():
        base = results.get("baseline", {}).get("per_type", {}).get(t)
        rows.append((f"  {t} ({results['type_counts'][t]})", f"{acc:.1f}" + ("" if base is None else
                                                                          f"  (baseline {base:.1f})")))
    rows += [("questions", results["num_questions"]), ("answers outside the vocabulary", results["num_out_of_vocabulary"]),
             ("skipped videos (unreadable)", results["num_skipped"])]
    return common.format_table("Open-ended video QA", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval qa``."""
    common.add_common_arguments(parser, data_help='QA data: JSON lines {"video", "question", "answer"}, '
                                                  "MSRVTT-QA/MSVD-QA .json, or TGIF-QA FrameQA .csv")
    parser.add_argument("--train", default=None, help="training questions: adds the most-frequent-answer baseline")
    parser.add_argument("--video-template", default=None,
                        help="video file name from a QA id, e.g. 'video{}.mp4' (MSRVTT-QA), '{}.gif' (TGIF-QA)")


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    if not isinstance(model, VideoQA):
        raise common.WrongModelError(f"{args.model} is not a QA model (train one with the qa objective)")
    data = read_qa(args.data, args.root, args.video_template)
    train = read_qa(args.train, args.root, args.video_template) if args.train else None
    results = evaluate_qa(model, data, train=train, batch_size=args.batch_size, num_workers=args.num_workers,
                          device=args.device, precision=args.precision, progress=args.progress)
    for entry in results["skipped"][:10]:
        print(printable(f"skipped {entry['video']}: {entry['reason']}"), file=sys.stderr)
    results.update(model=str(args.model), data=str(args.data))
    return common.finish(results, results_table(results), args.out)
