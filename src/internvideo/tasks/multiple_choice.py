"""Zero-shot multiple choice: pick the caption that describes a video among K candidates.

The format is the QA JSON lines of the data layer with ``candidates``
(``{"video", "question", "answer", "candidates": [...]}``, the answer being
one of the candidates), as in MSR-VTT multiple choice. Each candidate is
scored by the cosine similarity of its text embedding with the video's
embedding; the highest-scoring candidate is the model's answer (a tie with
a wrong candidate counts as wrong). Questions may have different numbers of
candidates. With ``with_question=True`` each candidate is embedded as
``"<question> <candidate>"``, for QA sets whose candidates are short answers.

Protocols: ``ours`` scores by cosine and counts a tie with a wrong candidate
as wrong. ``internvideo`` is the official CoTrain evaluation
(``objectives.compute_multiple_choice``, ``clip_mc_type="vtc"``): the score is
``logit_scale * cosine`` and the answer is the first highest-scoring candidate
(``argmax``, as its ``Accuracy`` metric); the official script merges the
weights with CLIP first (``clip_wiseft_coef 0.5``; ``--clip`` here). The
official code has one text per candidate, so no template averaging applies.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import QASample, VideoDataset, read_qa
from ..errors import UsageError
from . import common
from . import merge
from .common import EvalProtocol, Precision, SamplingOverride
from .metrics import check_finite, correct_rank, multiple_choice_accuracy

QAData = str | os.PathLike | Sequence[QASample]

__all__ = ["multiple_choice_scores", "evaluate_multiple_choice", "results_table", "add_arguments",
           "main"]


def multiple_choice_scores(model: nn.Module, data: QAData, *, root: str | os.PathLike | None = None,
                           with_question: bool = False, sampling: SamplingOverride = "auto", frame_interval: int | None = None,
                           batch_size: int = 8, text_batch_size: int = 256, num_workers: int = 0,
                           device: str | torch.device | None = None, precision: Precision = "fp32",
                           progress: bool = True, protocol: EvalProtocol = "ours") -> tuple[np.ndarray, np.ndarray]:
    """Candidate scores ``(N, K_max)`` (``-inf`` pads shorter candidate lists) and answer indices ``(N,)``.

    Scores: cosine (``ours``) or ``logit_scale * cosine`` (``internvideo``).
    """
    common.require_multimodal(model, "multiple choice")
    common.check_protocol(protocol)
    samples = read_qa(data, root) if isinstance(data, (str, os.PathLike)) else list(data)
    if not samples:
        raise UsageError("no questions")
    lacking = [s.video for s in samples if not s.candidates]
    if lacking:
        raise UsageError(f"multiple choice needs candidates for every question; {len(lacking)} have none "
                         f"(first: {lacking[0]})")
    texts = [f"{s.question} {c}" if with_question else c for s in samples for c in s.candidates]
    sizes = [len(s.candidates) for s in samples]
    answers = np.asarray([s.candidates.index(s.answer) for s in samples], dtype=np.int64)
    view = common.eval_view(model, sampling=sampling, frame_interval=frame_interval)
    dataset = VideoDataset([s.video for s in samples], view, training=False, strict=True)
    video, text = common.embed_videos_and_texts(
        model, dataset, texts, batch_size=batch_size, text_batch_size=text_batch_size, num_workers=num_workers,
        device=device, precision=precision, progress=progress, text_desc="candidates")
    scale = common.logit_scale(model) if protocol == "internvideo" else 1.0
    scores = np.full((len(samples), max(sizes)), -np.inf)
    start = 0
    for i, k in enumerate(sizes):
        scores[i, :k] = (scale * (text[start:start + k] @ video[i])).numpy()
        start += k
    return scores, answers


def evaluate_multiple_choice(model: nn.Module, data: QAData, *, protocol: EvalProtocol = "ours",
                             allow_nonfinite: bool = False, **kwargs: Any) -> dict[str, Any]:
    """``{"accuracy", "chance", "num_questions", ...}`` in percent.

    Keyword arguments are those of :func:`multiple_choice_scores`. NaN scores
    fail the evaluation unless ``allow_nonfinite`` (then those questions count as wrong).
    """
    scores, answers = multiple_choice_scores(model, data, protocol=protocol, **kwargs)
    # -inf pads the candidate lists of questions with fewer candidates: not a model failure.
    nonfinite = check_finite(np.where(np.isneginf(scores), 0.0, scores), "questions", allow=allow_nonfinite)
    num_candidates = (~np.isneginf(scores)).sum(axis=1)
    if protocol == "internvideo":  # the first highest score wins (torch argmax); NaN rows count as wrong
        picked = np.where(np.isnan(scores).any(axis=1), -1, np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1))
        accuracy = 100.0 * float((picked == answers).mean())
    else:
        accuracy = multiple_choice_accuracy(scores, answers)
    return {
        "task": "multiple_choice",
        "protocol": protocol,
        "accuracy": accuracy,
        "mean_answer_rank": float(correct_rank(scores, answers).mean()),
        "num_questions": int(len(answers)),
        "num_candidates": int(num_candidates.max()),  # the most; chance accounts for shorter lists
        "chance": float(np.mean(100.0 / num_candidates)),
        "num_nonfinite": nonfinite,
    }


def results_table(results: dict[str, Any]) -> str:
    rows = [("accuracy (%)", results["accuracy"]), ("chance (%)", results["chance"]),
            ("mean rank of the answer", f"{results['mean_answer_rank']:.2f}"),
            ("questions x candidates", f"{results['num_questions']} x {results['num_candidates']}")]
    if results.get("merge"):
        rows.append(("merged with CLIP (tensors)", results["merge"]["num_merged"]))
    return common.format_table(f"Zero-shot multiple choice, protocol {results.get('protocol', 'ours')}", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval multiple-choice``."""
    common.add_common_arguments(parser, data_help='QA JSON lines with candidates: {"video", "question", "answer", '
                                                  '"candidates"}')
    parser.add_argument("--with-question", action="store_true", help="embed '<question> <candidate>' per candidate")
    common.add_protocol_argument(parser, ours="cosine scores, ties count as wrong",
                                 internvideo="logit_scale * cosine, the first best candidate wins (official CoTrain "
                                             "compute_multiple_choice)")
    merge.add_merge_arguments(parser)
    common.add_sampling_arguments(parser)


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    merged = merge.merge_from_args(model, args, "clip_param_keys")
    results = evaluate_multiple_choice(
        model, args.data, protocol=args.protocol, root=args.root, with_question=args.with_question, sampling=args.sampling,
        frame_interval=args.frame_interval, batch_size=args.batch_size, num_workers=args.num_workers,
        device=args.device, precision=args.precision, progress=args.progress, allow_nonfinite=args.allow_nonfinite)
    results.update(model=str(args.model), data=str(args.data), merge=merged)
    return common.finish(results, results_table(results), args.out)
