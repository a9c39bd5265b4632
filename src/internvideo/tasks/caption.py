"""Video captioning: generate captions with the multimodal model's decoder, score them with BLEU-4 and CIDEr-D.

* :func:`generate_captions`: one caption per video (greedy or beam search,
  see :meth:`~internvideo.models.video_clip.InternVideoMM.generate`), decoded
  with the CLIP tokenizer. Videos that cannot be read are listed, skipped and
  counted, never silently dropped.
* :func:`evaluate_caption`: on video-text JSON lines (``{"video", "caption": [...]}``),
  every caption of a video is a reference; BLEU-1..4 and CIDEr-D come from
  ``pycocoevalcap`` (see :func:`~internvideo.tasks.metrics.caption_metrics`).
  With ``train=`` it also scores the nearest-caption baseline: each test video
  gets the first caption of the training video closest to it in the model's
  video embedding space, i.e. what retrieval alone achieves without a decoder.
* captioning fine-tuning of the decoder alone (video and text encoders
  frozen, their outputs computed once), the step between caption pretraining
  and generation that CoCa-style models take, is training:
  :func:`internvideo.train.heads.fine_tune_decoder`.
* CLI: ``internvideo eval caption --model DIR --data captions_test.jsonl`` and
  ``internvideo caption VIDEO... --model DIR [--jsonl]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..data import VideoDataset, VideoTextSample, read_video_text
from ..errors import UsageError
from ..models.caption import Strategy
from ..models.protocols import Captioner
from ..tokenizer import get_tokenizer
from . import common
from .common import Precision
from .inputs import readable_videos
from .metrics import caption_metrics
from .. import argtypes
from ..fileio import printable

__all__ = ["generate_captions", "evaluate_caption", "nearest_caption_baseline", "nearest_captions", "caption_samples",
           "require_decoder", "results_table", "add_arguments", "main", "add_caption_arguments", "caption_main"]


def require_decoder(model: nn.Module) -> None:
    """A :class:`~internvideo.tasks.common.WrongModelError` unless ``model`` has a caption decoder."""
    if not isinstance(model, Captioner) or model.caption is None:
        raise common.WrongModelError(f"captioning needs a multimodal model with a caption decoder; "
                                     f"{type(model).__name__} has none (build it with caption_layers > 0)")


def generate_captions(model: nn.Module, videos: Sequence[str], *, max_len: int = 30, strategy: Strategy = "greedy",
                      num_beams: int = 4, length_penalty: float = 1.0, batch_size: int = 8, num_workers: int = 0,
                      device: str | torch.device | None = None, precision: Precision = "fp32",
                      progress: bool = True) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``({video: caption}, skipped)`` with ``skipped = [(video, reason), ...]`` for unreadable videos."""
    require_decoder(model)
    keep, skipped = readable_videos(videos)
    readable = [videos[i] for i in keep]
    captions: dict[str, str] = {}
    if not readable:
        return captions, skipped
    tokenizer = get_tokenizer("clip", context_length=model.config.context_length)
    dataset = VideoDataset(readable, common.eval_view(model), training=False, strict=True)
    dev = common.resolve_device(device)
    with common.inference(model, dev, precision):
        for batch in tqdm(common.loader(dataset, batch_size, num_workers), desc="captions", disable=not progress,
                          unit="batch"):
            ids = model.generate(batch["video"].to(dev), max_len=max_len, strategy=strategy, num_beams=num_beams,
                                 length_penalty=length_penalty)
            for path, text in zip(batch["path"], tokenizer.batch_decode(ids.cpu()), strict=True):
                captions[path] = text
    return captions, skipped


def caption_samples(data: str | os.PathLike | Sequence[VideoTextSample], root: str | os.PathLike | None
                    ) -> list[VideoTextSample]:
    """Video-text samples from a file or a sequence; an empty set is a user error."""
    samples = read_video_text(data, root) if isinstance(data, (str, os.PathLike)) else list(data)
    if not samples:
        raise UsageError("no videos to caption")
    return samples


def nearest_caption_baseline(model: nn.Module, train: str | os.PathLike | Sequence[VideoTextSample],
                             test: Sequence[VideoTextSample], *, root: str | os.PathLike | None = None,
                             batch_size: int = 8, num_workers: int = 0, device: str | torch.device | None = None,
                             precision: Precision = "fp32", progress: bool = True) -> dict[str, str]:
    """``{test video: first caption of the most similar training video}`` (cosine of video embeddings)."""
    common.require_multimodal(model, "the nearest-caption baseline")
    train_samples = caption_samples(train, root)
    view = common.eval_view(model)
    kwargs = dict(batch_size=batch_size, num_workers=num_workers, device=common.resolve_device(device),
                  precision=precision, progress=progress)
    train_emb = common.video_embeddings(model, VideoDataset([s.video for s in train_samples], view, strict=True),
                                        **kwargs)
    test_emb = common.video_embeddings(model, VideoDataset([s.video for s in test], view, strict=True), **kwargs)
    return nearest_captions(train_samples, train_emb, test, test_emb)


def nearest_captions(train: Sequence[VideoTextSample], train_emb: torch.Tensor, test: Sequence[VideoTextSample],
                     test_emb: torch.Tensor) -> dict[str, str]:
    """The baseline from embeddings already computed (normalised, one row per sample, in order)."""
    nearest = (test_emb @ train_emb.t()).argmax(dim=1).tolist()
    return {s.video: train[j].captions[0] for s, j in zip(test, nearest, strict=True)}


def evaluate_caption(model: nn.Module, data: str | os.PathLike | Sequence[VideoTextSample], *,
                     root: str | os.PathLike | None = None, train: str | os.PathLike | Sequence[VideoTextSample] |
                     None = None, max_len: int = 30, strategy: Strategy = "greedy", num_beams: int = 4,
                     length_penalty: float = 1.0, batch_size: int = 8, num_workers: int = 0,
                     device: str | torch.device | None = None, precision: Precision = "fp32",
                     progress: bool = True) -> dict[str, Any]:
    """``{"bleu4", "cider", "bleu1".., "num_videos", "skipped", "examples", "baseline"?}``, metrics in percent.

    Unreadable videos are skipped and listed (``skipped``); they are not scored.
    """
    samples = caption_samples(data, root)
    predictions, skipped = generate_captions(
        model, [s.video for s in samples], max_len=max_len, strategy=strategy, num_beams=num_beams,
        length_penalty=length_penalty, batch_size=batch_size, num_workers=num_workers, device=device,
        precision=precision, progress=progress)
    scored = [s for s in samples if s.video in predictions]
    if not scored:
        raise UsageError(f"none of the {len(samples)} videos could be read (first: {skipped[0][0]}: {skipped[0][1]})")
    references = {s.video: list(s.captions) for s in scored}
    results: dict[str, Any] = {"task": "caption", "strategy": strategy, **caption_metrics(references, predictions),
                               "num_videos": len(scored), "num_skipped": len(skipped),
                               "skipped": [{"video": v, "reason": r} for v, r in skipped],
                               "examples": [{"video": s.video, "caption": predictions[s.video],
                                             "reference": s.captions[0]} for s in scored[:5]]}
    if strategy == "beam":
        results.update(num_beams=num_beams, length_penalty=length_penalty)
    if train is not None:
        nearest = nearest_caption_baseline(model, train, scored, root=root, batch_size=batch_size,
                                           num_workers=num_workers, device=device, precision=precision,
                                           progress=progress)
        results["baseline"] = {"name": "nearest training caption", **caption_metrics(references, nearest)}
    return results


def results_table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = [("BLEU-4 (%)", results["bleu4"]), ("CIDEr-D (%)", results["cider"])]
    if "baseline" in results:
        rows += [("nearest-caption BLEU-4 (%)", results["baseline"]["bleu4"]),
                 ("nearest-caption CIDEr-D (%)", results["baseline"]["cider"])]
    rows += [("videos", results["num_videos"]), ("skipped (unreadable)", results["num_skipped"])]
    return common.format_table(f"Captioning ({results['strategy']})", rows)


def _add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-len", type=argtypes.positive_int, default=30, help="most tokens to generate per caption")
    parser.add_argument("--beam", type=argtypes.positive_int, default=1, metavar="WIDTH",
                        help="beam search with this many beams (1 = greedy decoding)")
    parser.add_argument("--length-penalty", type=argtypes.nonnegative_float, default=1.0,
                        help="beam scores are divided by length ** this (>0 favours longer captions)")


def _decoding(args: argparse.Namespace) -> dict[str, Any]:
    if args.beam < 1 or args.max_len < 1:
        raise UsageError("--beam and --max-len must be at least 1")
    return {"max_len": args.max_len, "strategy": "beam" if args.beam > 1 else "greedy", "num_beams": args.beam,
            "length_penalty": args.length_penalty}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval caption``."""
    common.add_common_arguments(parser, data_help='video-text JSON lines {"video", "caption": [references]}')
    parser.add_argument("--train", default=None,
                        help="training captions (video-text JSON lines): also score the nearest-caption baseline")
    _add_decoding_arguments(parser)


def main(args: argparse.Namespace) -> int:
    decoding = _decoding(args)
    model = common.load_model_arg(args.model)
    results = evaluate_caption(model, args.data, root=args.root, train=args.train, batch_size=args.batch_size,
                               num_workers=args.num_workers, device=args.device, precision=args.precision,
                               progress=args.progress, **decoding)
    for video, reason in results["skipped"][:10]:
        print(printable(f"skipped {video}: {reason}"), file=sys.stderr)
    results.update(model=str(args.model), data=str(args.data))
    return common.finish(results, results_table(results), args.out)


def add_caption_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo caption``."""
    parser.add_argument("videos", nargs="+", help="video files to caption")
    parser.add_argument("--model", required=True, help="multimodal checkpoint with a caption decoder")
    parser.add_argument("--jsonl", action="store_true", help='print {"video", "caption"} JSON lines')
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=8)
    parser.add_argument("--device", default=None)
    common.add_precision_argument(parser)
    _add_decoding_arguments(parser)


def caption_main(args: argparse.Namespace) -> int:
    """Print one caption per readable video; unreadable ones are reported on stderr (exit 1 if any)."""
    decoding = _decoding(args)
    model = common.load_model_arg(args.model)
    require_decoder(model)
    captions, skipped = generate_captions(model, args.videos, batch_size=args.batch_size, device=args.device,
                                          precision=args.precision, progress=False, **decoding)
    for video in args.videos:
        if video in captions:
            print(json.dumps({"video": video, "caption": captions[video]}) if args.jsonl
                  else f"{video}\t{captions[video]}")
    for video, reason in skipped:
        print(printable(f"internvideo: skipped {video}: {reason}"), file=sys.stderr)
    if skipped:
        print(f"internvideo: {len(skipped)} of {len(args.videos)} videos skipped", file=sys.stderr)
    return 1 if skipped else 0
