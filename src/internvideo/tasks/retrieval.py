"""Video-text retrieval in both directions, zero-shot or with a fine-tuned model.

Videos and captions are embedded in batches and L2-normalised; the text x
video similarity is never materialised whole but ranked in blocks of
``chunk_size`` captions (:func:`~internvideo.tasks.metrics.retrieval_ranks`),
so 10k x 10k runs in bounded memory. Reported for each direction: R@1/5/10,
median rank (MdR) and mean rank (MnR).

* ``t2v``: every caption queries all videos; correct = the video it describes.
* ``v2t``: every video queries all captions; correct = any of its captions
  (the rank of its best-ranked caption).

``dsl=True`` adds the dual-softmax re-ranked numbers of the official
InternVideo evaluation (on logits ``logit_scale * cosine``).

With several captions per video, ``multi_caption="official"`` scores v2t as
the official InternVideo (CLIP4Clip) code does: captions max-pooled per video,
videos ranked, DSL from the text-to-video matrix; the default ``"captions"``
ranks every caption and mirrors the DSL (see
:func:`~internvideo.tasks.metrics.retrieval_ranks`).

``protocol="internvideo"`` is the official evaluation (the CLIP4Clip fork in
``InternVideo1/Downstream/Video-Text-Retrieval``, ``main_task_retrieval.py`` +
``metrics.py``): DSL reported beside the plain numbers and ``multi_caption=
"official"``; its scripts merge the weights with CLIP first (``--mergeclip
--mergeweight 0.5``, MSVD 0.25; ``--clip`` here, rule ``shared_names``).
``"ours"`` keeps the options as given.

Several records naming the same video file (e.g. one line per caption) are
merged into one video with all their captions.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import VideoTextDataset, VideoTextSample, read_video_text
from ..errors import UsageError
from . import common
from . import merge
from .common import EvalProtocol, Precision, SamplingOverride
from .metrics import MultiCaption, check_finite, retrieval_metrics, retrieval_ranks
from .. import argtypes

VideoTextData = str | os.PathLike | Sequence[VideoTextSample] | VideoTextDataset

__all__ = ["RetrievalEmbeddings", "retrieval_embeddings", "evaluate_retrieval", "metrics_from_embeddings",
           "merge_captions", "count_duplicate_captions", "results_table", "add_arguments", "main"]


@dataclasses.dataclass
class RetrievalEmbeddings:
    """L2-normalised embeddings of a retrieval test set.

    ``captions[i]`` (embedding ``text[i]``) describes ``videos[caption_to_video[i]]``
    (embedding ``video[caption_to_video[i]]``).
    """

    video: torch.Tensor  # (num_videos, D)
    text: torch.Tensor  # (num_captions, D)
    caption_to_video: np.ndarray  # (num_captions,) int64
    videos: list[str]
    captions: list[str]
    logit_scale: float
    num_duplicates: int = 0  # repeated (video, caption) pairs of the input, counted once


def merge_captions(samples: Sequence[VideoTextSample]) -> list[VideoTextSample]:
    """One sample per distinct video file, in first-seen order, with all its distinct captions.

    A repeated (video, caption) pair is kept once: as a second query it would
    re-weight the metric (see :func:`count_duplicate_captions`).
    """
    merged: dict[str, dict[str, None]] = {}
    for s in samples:
        caps = merged.setdefault(os.path.normpath(s.video), {})
        caps.update(dict.fromkeys(s.captions))
    return [VideoTextSample(video, tuple(caps)) for video, caps in merged.items()]


def count_duplicate_captions(samples: Sequence[VideoTextSample]) -> int:
    """How many (video, caption) pairs of ``samples`` repeat an earlier one."""
    pairs = [(os.path.normpath(s.video), c) for s in samples for c in s.captions]
    return len(pairs) - len(set(pairs))


def retrieval_embeddings(model: nn.Module, data: VideoTextData, *, root: str | os.PathLike | None = None,
                         sampling: SamplingOverride = "auto", frame_interval: int | None = None, batch_size: int = 8,
                         text_batch_size: int = 256, num_workers: int = 0, device: str | torch.device | None = None,
                         precision: Precision = "fp32", progress: bool = True) -> RetrievalEmbeddings:
    """Embed every video (one test view) and every caption of a video-text set."""
    common.require_multimodal(model, "retrieval")
    duplicates = 0
    if isinstance(data, VideoTextDataset):
        dataset = data
    else:
        samples = read_video_text(data, root) if isinstance(data, (str, os.PathLike)) else list(data)
        view = common.eval_view(model, sampling=sampling, frame_interval=frame_interval)
        dataset = VideoTextDataset(merge_captions(samples), view, training=False, strict=True)
        duplicates = count_duplicate_captions(samples)
        if duplicates:
            common.log.warning("%s: %d duplicate (video, caption) pair(s) counted once", data if isinstance(
                data, (str, os.PathLike)) else "the retrieval samples", duplicates)
    captions = [c for s in dataset.samples for c in s.captions]
    owner = np.repeat(np.arange(len(dataset.samples)), [len(s.captions) for s in dataset.samples])
    if not captions:
        raise UsageError("the retrieval set is empty")
    video, text = common.embed_videos_and_texts(
        model, dataset, captions, batch_size=batch_size, text_batch_size=text_batch_size, num_workers=num_workers,
        device=device, precision=precision, progress=progress, text_desc="captions")
    return RetrievalEmbeddings(video, text, owner.astype(np.int64), list(dataset.videos), captions,
                               common.logit_scale(model), duplicates)


def evaluate_retrieval(model: nn.Module, data: VideoTextData, *, dsl: bool = False, chunk_size: int = 1024,
                       multi_caption: MultiCaption = "captions", allow_nonfinite: bool = False,
                       protocol: EvalProtocol = "ours", **kwargs: Any) -> dict[str, Any]:
    """R@1/5/10, MdR, MnR for ``t2v`` and ``v2t`` (and their DSL versions under ``"dsl"``).

    ``protocol="internvideo"`` sets ``dsl=True`` and ``multi_caption="official"``.
    Keyword arguments are those of :func:`retrieval_embeddings`.
    """
    common.check_protocol(protocol)
    if protocol == "internvideo":
        dsl, multi_caption = True, "official"
    emb = retrieval_embeddings(model, data, **kwargs)
    results = metrics_from_embeddings(emb, dsl=dsl, chunk_size=chunk_size, multi_caption=multi_caption,
                                      allow_nonfinite=allow_nonfinite)
    return {"protocol": protocol, **results}


def metrics_from_embeddings(emb: RetrievalEmbeddings, *, dsl: bool = False, chunk_size: int = 1024,
                            multi_caption: MultiCaption = "captions", allow_nonfinite: bool = False
                            ) -> dict[str, Any]:
    """The retrieval results dict for embeddings you already have.

    NaN/inf embeddings fail the evaluation unless ``allow_nonfinite`` (then their pairs score worst).
    """
    nonfinite = {"videos": check_finite(emb.video, "videos", allow=allow_nonfinite),
                 "captions": check_finite(emb.text, "captions", allow=allow_nonfinite)}
    opts = dict(scale=emb.logit_scale, chunk_size=chunk_size, multi_caption=multi_caption)
    results: dict[str, Any] = {
        "task": "retrieval",
        "multi_caption": multi_caption,
        "num_videos": len(emb.videos),
        "num_captions": len(emb.captions),
        **retrieval_metrics(*retrieval_ranks(emb.text, emb.video, emb.caption_to_video, **opts)),
        "chance_R@1": 100.0 / len(emb.videos),
        "num_nonfinite": nonfinite,
        "num_duplicates": emb.num_duplicates,
    }
    if dsl:
        results["dsl"] = retrieval_metrics(*retrieval_ranks(emb.text, emb.video, emb.caption_to_video, dsl=True,
                                                            **opts))
    return results


def results_table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = []
    for label, block in [("", results)] + ([("DSL ", results["dsl"])] if "dsl" in results else []):
        for direction in ("t2v", "v2t"):
            m = block[direction]
            rows.append((f"{label}{direction} R@1/R@5/R@10",
                         f"{m['R@1']:.1f} / {m['R@5']:.1f} / {m['R@10']:.1f}"))
            rows.append((f"{label}{direction} MdR / MnR", f"{m['MdR']:.1f} / {m['MnR']:.1f}"))
    rows += [("chance R@1 (%)", results["chance_R@1"]),
             ("videos / captions", f"{results['num_videos']} / {results['num_captions']}")]
    if results.get("num_duplicates"):
        rows.append(("duplicate pairs dropped", results["num_duplicates"]))
    if results.get("merge"):
        rows.append(("merged with CLIP (tensors)", results["merge"]["num_merged"]))
    return common.format_table(f"Video-text retrieval, protocol {results.get('protocol', 'ours')}", rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval retrieval``."""
    common.add_common_arguments(parser, data_help='video-text JSON lines: {"video": path, "caption": text or [texts]}')
    parser.add_argument("--dsl", action="store_true", help="also report dual-softmax re-ranked results (official)")
    parser.add_argument("--chunk-size", type=argtypes.positive_int, default=1024, help="captions per similarity block")
    parser.add_argument("--multi-caption", choices=["captions", "official"], default="captions",
                        help="v2t with several captions per video: rank every caption (default) or, as the official "
                             "InternVideo code, max-pool each video's captions and take v2t DSL from the t2v matrix")
    common.add_protocol_argument(parser, ours="the --dsl and --multi-caption options as given",
                                 internvideo="DSL reported too and --multi-caption official (official "
                                             "Video-Text-Retrieval main_task_retrieval.py)")
    merge.add_merge_arguments(parser)
    common.add_sampling_arguments(parser)


def main(args: argparse.Namespace) -> int:
    model = common.load_model_arg(args.model)
    merged = merge.merge_from_args(model, args, "shared_names")
    results = evaluate_retrieval(
        model, args.data, protocol=args.protocol, dsl=args.dsl, chunk_size=args.chunk_size, multi_caption=args.multi_caption, root=args.root,
        sampling=args.sampling,
        frame_interval=args.frame_interval, batch_size=args.batch_size, num_workers=args.num_workers,
        device=args.device, precision=args.precision, progress=args.progress, allow_nonfinite=args.allow_nonfinite)
    results.update(model=str(args.model), data=str(args.data), merge=merged)
    return common.finish(results, results_table(results), args.out)
