"""What every evaluation task shares: model inputs, the clip-embedding rule, batched encoding, tables, CLI options.

A model's input recipe (frames, frame interval, sampling, resolution,
normalisation) is read from the model itself (``model.input_recipe()``, saved in
its checkpoint), so an evaluation cannot silently feed a model clips of another
recipe than it was trained with; every option here overrides one field of it.

:func:`clip_embedding` is the one definition of "the embedding a model gives for
a clip", used by extraction, the linear probe, retrieval, zero-shot and the task
families built on features.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
import numpy as np
from tqdm import tqdm

from ..data import View, collate_videos, recipe_view
from .. import fileio
from ..errors import MissingFile, UsageError, UserError
from ..factory import create_model, list_models, load_model
from ..data.sampling import TestLayout
from ..models.hardware import resolve_precision
from ..models.protocols import FusionModel, MaskedVideoModel, TokenEncoder, VideoClassifier, VideoLanguageModel, \
    VideoModel
from ..recipe import SAMPLINGS, InputRecipe, Sampling
from ..tokenizer import get_tokenizer
from .metrics import NonFiniteError
from .. import argtypes

log = logging.getLogger("internvideo.tasks")

Precision = Literal["fp32", "bf16", "auto"]  # auto: bf16 where the device computes it natively
PRECISION_HELP = ("bf16: autocast, 1.5-4x faster on CPUs with native bf16 (AVX-512 BF16, AMX) and GPUs, but slower "
                  "than fp32 where the CPU emulates it (AVX2; a warning says so); auto: bf16 where native, else fp32")
#: a task's sampling option: one of the recipe's samplings, or "auto" = the model's own
SamplingOverride = Sampling | Literal["auto"]
Pool = Literal["auto", "pre_logits", "mean", "embed"]
#: Evaluation protocols of the video-language tasks: ``internvideo`` reproduces the official code's arithmetic and
#: settings; ``ours`` is this project's choice, documented per task (docs/evaluation.md, "Protocols").
EvalProtocol = Literal["ours", "internvideo"]
PROTOCOLS: tuple[str, ...] = ("ours", "internvideo")


# ----------------------------------------------------------------------------- models


def is_multimodal(model: nn.Module) -> bool:
    """A video-language model: it embeds both videos and token ids into one space."""
    return isinstance(model, VideoLanguageModel)


class WrongModelError(UserError):
    """The model does not fit the evaluation (a user error: the message says which evaluation fits)."""


def require_multimodal(model: nn.Module, task: str) -> None:
    if not is_multimodal(model):
        raise WrongModelError(f"{task} needs a video-language model; {type(model).__name__} has no "
                              "encode_video/encode_text (for a classifier use `eval recognition` or `eval linear-probe`)")


def require_classifier(model: nn.Module, task: str) -> None:
    """A video-language model's forward takes text too: say which evaluations fit it instead of failing inside."""
    if is_multimodal(model) and not isinstance(model, VideoClassifier):
        raise WrongModelError(f"{task} needs a classifier (video -> class logits); {type(model).__name__} is a "
                              "video-language model: use `eval zeroshot` (class names as prompts), `eval retrieval`, "
                              "or `eval linear-probe` (a classifier fitted on its frozen features)")


def logit_scale(model: VideoLanguageModel) -> float:
    """The model's similarity scale ``exp(logit_scale)``, clamped at 100 as CLIP and InternVideo do."""
    raw = model.logit_scale
    value = float(raw.detach().float().item() if isinstance(raw, torch.Tensor) else raw)  # the raw log-scale
    # min() would pass a NaN through (every comparison with it is false) and every score would be NaN; an
    # infinite one would be clamped to a plausible 100. Either way the model is broken, whatever the metric.
    if not math.isfinite(value):
        raise NonFiniteError(f"the model's logit_scale is {value} (non-finite): every score would be "
                             "meaningless; the model is probably broken (diverged training, corrupt weights)")
    scale = raw.detach().float().exp().item() if isinstance(raw, torch.Tensor) else math.exp(min(value, 10.0))
    return min(scale, 100.0)


def load_model_arg(spec: str | os.PathLike | nn.Module) -> nn.Module:
    """A model from a CLI value: a checkpoint path or hub id ``hf:ORG/NAME`` (``load_model``), or a named config
    (random weights)."""
    if isinstance(spec, nn.Module):
        return spec
    if os.path.exists(spec) or str(spec).startswith("hf:"):  # a hub id: load_model downloads it
        return load_model(spec)
    if str(spec) in list_models():
        log.warning("%s is not a path: building the named model %r with random weights", spec, spec)
        return create_model(str(spec))
    raise MissingFile(f"no model at {spec!r} (expected a checkpoint directory/file or one of "
                            f"{', '.join(list_models())})")


def load_model_from(source: str | os.PathLike | nn.Module, task: str) -> nn.Module:
    """A multimodal model for ``task`` from a checkpoint path (or a named config: random weights, for smoke tests)."""
    model = load_model_arg(source)
    require_multimodal(model, task)
    return model


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def inference(model: nn.Module, device: torch.device, precision: Precision) -> Iterator[None]:
    """Eval mode, no gradients and optional bf16 autocast; the model's train/eval flag is restored after."""
    if precision not in ("fp32", "bf16", "auto"):
        raise UsageError(f"precision must be 'fp32', 'bf16' or 'auto', not {precision!r}")
    precision = resolve_precision(precision, device)  # logs a warning for bf16 on a CPU that emulates it
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        model.train(was_training)


def input_recipe(model: nn.Module, *, sampling: SamplingOverride = "auto", frame_interval: int | None = None
                 ) -> InputRecipe:
    """The model's input recipe (see the module docstring), with ``sampling``/``frame_interval`` overridden if given.

    ``sampling="auto"`` keeps the model's own.
    """
    if not isinstance(model, VideoModel):
        raise WrongModelError(f"{type(model).__name__} has no input recipe; build the data views yourself and pass a "
                              "dataset")
    recipe = model.input_recipe()
    changes: dict[str, Any] = {}
    if sampling != "auto":
        if sampling not in SAMPLINGS:
            raise UsageError(f"sampling must be 'auto', 'dense', 'segment' or 'uniform', not {sampling!r}")
        changes["sampling"] = sampling
    if frame_interval is not None:
        changes["frame_interval"] = frame_interval
    return dataclasses.replace(recipe, **changes) if changes else recipe


def eval_view(model: nn.Module, *, num_clips: int = 1, num_crops: int = 1, sampling: SamplingOverride = "auto",
              frame_interval: int | None = None, short_side: int | None = None, name: str = "video",
              layout: TestLayout = "videomae") -> View:
    """The test-time :class:`~internvideo.data.View` for ``model``: ``num_clips x num_crops`` views per video.

    Crops: 1 = centre crop, 3 = three crops along the longer side (after
    resizing the short side to ``short_side``, default the model's ``img_size``);
    several clips need dense sampling and are placed by ``layout``
    (:func:`internvideo.data.recipe_view`).
    """
    recipe = input_recipe(model, sampling=sampling, frame_interval=frame_interval)
    return recipe_view(recipe, num_clips=num_clips, num_crops=num_crops, short_side=short_side, layout=layout,
                       name=name)


def clip_embedding(model: nn.Module, clips: torch.Tensor, pool: Pool = "auto") -> torch.Tensor:
    """One feature vector per clip ``(B, C, T, H, W) -> (B, D)`` from any of our video models.

    ``auto``: multimodal models give ``encode_video`` (projected, not
    normalised); fusion models their unified representation (``embed``, the
    input of their head); VideoMAE classifiers the pooled pre-logits (token mean
    + ``fc_norm``); pretraining encoders (no head) the mean of the encoder
    tokens. ``pre_logits``, ``mean`` and ``embed`` ask for one of these explicitly.
    """
    if pool not in ("auto", "pre_logits", "mean", "embed"):
        raise UsageError(f"pool must be 'auto', 'pre_logits', 'mean' or 'embed', not {pool!r}")
    if pool in ("auto", "embed"):
        if is_multimodal(model):
            return model.encode_video(clips)
        if isinstance(model, FusionModel):
            return model.embed(clips)
    if pool == "embed":
        raise WrongModelError(f"pool='embed' needs a multimodal or fusion model; {type(model).__name__} is neither")
    # A pretraining model wraps its encoder; classifiers are their own encoder.
    encoder = model.encoder if isinstance(model, MaskedVideoModel) else model
    if not isinstance(encoder, TokenEncoder):
        raise WrongModelError(f"{type(model).__name__} has neither encode_video nor forward_features")
    tokens = encoder.forward_features(clips)
    has_head = isinstance(encoder, VideoClassifier) and encoder.head is not None
    if pool == "pre_logits" and not has_head:
        raise WrongModelError(f"pool='pre_logits' needs a classifier; {type(model).__name__} has no head (use 'mean')")
    if pool in ("auto", "pre_logits") and has_head:
        return encoder.forward_head(tokens, pre_logits=True)
    return tokens.mean(dim=1)


def loader(dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int) -> torch.utils.data.DataLoader:
    """In-order evaluation loader over a dataset of dicts."""
    return torch.utils.data.DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False, num_workers=num_workers,
                                       collate_fn=collate_videos, persistent_workers=False)


def as_views(clips: torch.Tensor) -> torch.Tensor:
    """A batch of one clip ``(B, C, T, H, W)`` or of several views ``(B, V, C, T, H, W)`` -> ``(B, V, ...)``."""
    if clips.ndim == 5:
        return clips.unsqueeze(1)
    if clips.ndim == 6:
        return clips
    raise ValueError(f"expected clips (B, C, T, H, W) or (B, V, C, T, H, W), got {tuple(clips.shape)}")


def run_views(fn: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor, device: torch.device,
              max_clips: int) -> torch.Tensor:
    """Apply ``fn`` to every view of ``clips (B, V, C, T, H, W)``, ``max_clips`` clips per call -> ``(B, V, ...)``."""
    b, v = clips.shape[:2]
    flat = clips.flatten(0, 1)
    outs = [fn(flat[i:i + max_clips].to(device, non_blocking=True)).float().cpu()
            for i in range(0, flat.shape[0], max(1, max_clips))]
    out = torch.cat(outs)
    return out.reshape(b, v, *out.shape[1:])


def map_views(model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], dataset: torch.utils.data.Dataset, *,
              views: int = 1, batch_size: int = 8, num_workers: int = 0, device: torch.device,
              precision: Precision = "fp32", progress: bool = True, desc: str = "videos", input_key: str = "video",
              collect: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``fn`` on every view of every item, in dataset order: ``(N, V, ...)``, plus the ``collect`` fields.

    ``batch_size`` counts clips, so a batch holds ``batch_size // views`` videos.
    """
    outputs: list[torch.Tensor] = []
    fields: dict[str, list[torch.Tensor]] = {k: [] for k in collect}
    with inference(model, device, precision):
        for batch in tqdm(loader(dataset, max(1, batch_size // max(1, views)), num_workers), desc=desc,
                          disable=not progress, unit="batch"):
            outputs.append(run_views(fn, as_views(batch[input_key]), device, batch_size))
            for k in collect:
                fields[k].append(torch.as_tensor(batch[k]))
    if not outputs:
        raise UsageError("no videos to evaluate (empty dataset)")
    return torch.cat(outputs), {k: torch.cat(v) for k, v in fields.items()}


def video_embeddings(model: nn.Module, dataset: torch.utils.data.Dataset, **kwargs: Any) -> torch.Tensor:
    """L2-normalised ``encode_video`` embeddings ``(N, D)`` of a dataset, views averaged.

    Keyword arguments are those of :func:`map_views`.
    """
    emb, _ = map_views(model, model.encode_video, dataset, **kwargs)
    return torch.nn.functional.normalize(emb.mean(dim=1), dim=-1)


def dataset_features(model: nn.Module, dataset: torch.utils.data.Dataset, *, pool: Pool = "auto",
                     batch_size: int = 8, num_workers: int = 0, device: str | torch.device | None = None,
                     precision: Precision = "fp32", progress: bool = True, desc: str = "features",
                     input_key: str = "video") -> np.ndarray:
    """Features ``(N, D)`` for every item of a dataset (views of one video are averaged), in order."""
    feats, _ = map_views(model, lambda x: clip_embedding(model, x, pool), dataset, batch_size=batch_size,
                                num_workers=num_workers, device=resolve_device(device), precision=precision,
                                progress=progress, desc=desc, input_key=input_key)
    return feats.mean(dim=1).numpy()


def embed_videos_and_texts(model: nn.Module, dataset: torch.utils.data.Dataset, texts: Sequence[str], *,
                           batch_size: int = 8, text_batch_size: int = 256, num_workers: int = 0,
                           device: str | torch.device | None = None, precision: Precision = "fp32",
                           progress: bool = True, text_desc: str = "texts") -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised video embeddings of a dataset and text embeddings of ``texts``, both on the CPU."""
    require_multimodal(model, "this task")
    dev = resolve_device(device)
    video = video_embeddings(model, dataset, batch_size=batch_size, num_workers=num_workers, device=dev,
                             precision=precision, progress=progress)
    with inference(model, dev, precision):
        text = encode_texts(model, texts, batch_size=text_batch_size, device=dev, progress=progress, desc=text_desc)
    return video, text


def encode_texts(model: nn.Module, texts: Sequence[str], *, batch_size: int = 256, device: torch.device,
                 progress: bool = True, desc: str = "text", trim_padding: bool = False) -> torch.Tensor:
    """L2-normalised text embeddings ``(N, D)``, tokenised with the CLIP tokenizer at the model's context length.

    ``trim_padding`` drops the padding columns after the longest text of each
    batch: the text tower is causal and pools at the end-of-text token, so the
    result is the same (up to float rounding) at a fraction of the cost for
    short texts (a search query: ~10 of 77 tokens). Call inside :func:`inference`.
    """
    context = getattr(getattr(model, "config", None), "context_length", 77)
    tokenizer = get_tokenizer("clip", context_length=context)
    chunks = []
    for i in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not progress, unit="batch"):
        ids = tokenizer(list(texts[i:i + batch_size])).to(device)
        if trim_padding:
            ids = ids[:, :max(1, int((ids != 0).sum(dim=1).max()))]  # CLIP pads with id 0, after the text
        chunks.append(torch.nn.functional.normalize(model.encode_text(ids).float(), dim=-1).cpu())
    if not chunks:
        raise UsageError("no texts to encode")
    return torch.cat(chunks)


# ----------------------------------------------------------------------------- results


def write_json(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a results dict as indented JSON (parent folders created, atomically, NaN as null); returns the path."""
    return fileio.write_json(path, results, default=str)


def format_table(title: str, rows: Sequence[tuple[str, Any]]) -> str:
    """A two-column plain-text table; floats get one decimal like the papers' tables."""
    cells = [(name, f"{value:.1f}" if isinstance(value, float) else str(value)) for name, value in rows]
    width = max([len(title), *(len(n) + len(v) + 3 for n, v in cells)])
    key_w = max((len(n) for n, _ in cells), default=0)
    lines = [title, "-" * width]
    lines += [f"{n:<{key_w}}   {v:>{width - key_w - 3}}" for n, v in cells]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- per-video scores (--save-scores)

#: The ``format`` entry of a scores file (``internvideo eval ... --save-scores FILE.npz``).
SCORES_FORMAT = "internvideo-scores-1"


class ScoresError(UserError, ValueError):
    """A scores file that cannot be read, or scores files that do not describe the same videos and classes."""


@dataclasses.dataclass
class VideoScores:
    """Per-video class scores of one evaluation, as ``--save-scores`` writes them.

    ``scores`` ``(N, C)`` float32: what the evaluation ranked (recognition and
    zero-shot: the softmax probabilities averaged over the views); ``labels``
    ``(N,)`` int64 (-1: unknown); ``videos``: the N video paths as the list
    resolved them, in evaluation order; ``class_names``: the C classes of the
    score columns; ``model``: the model's id (its path); ``task``: which evaluation.
    """

    scores: np.ndarray
    labels: np.ndarray
    videos: list[str]
    class_names: list[str]
    model: str
    task: str


def save_scores(path: str | os.PathLike, scores: VideoScores) -> Path:
    """Write ``scores`` as a NumPy ``.npz`` (arrays ``format``, ``scores``, ``labels``, ``videos``,
    ``class_names``, ``model``, ``task``; strings as unicode arrays, so ``np.load`` needs no pickle)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ScoresError(f"--save-scores {path}: the file name must end in .npz")
    n, c = scores.scores.shape
    if len(scores.videos) != n or scores.labels.shape != (n,) or len(scores.class_names) != c:
        raise ValueError(f"scores {scores.scores.shape} do not fit {len(scores.videos)} videos, labels "
                         f"{scores.labels.shape} and {len(scores.class_names)} classes")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, format=np.array(SCORES_FORMAT), scores=np.asarray(scores.scores, dtype=np.float32),
             labels=np.asarray(scores.labels, dtype=np.int64), videos=np.array(scores.videos, dtype=str),
             class_names=np.array(scores.class_names, dtype=str), model=np.array(scores.model),
             task=np.array(scores.task))
    os.replace(tmp, path)
    return path


def load_scores(path: str | os.PathLike) -> VideoScores:
    """Read a file written by :func:`save_scores`; anything else is a :class:`ScoresError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"scores file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ScoresError(f"{path}: not a scores file written by --save-scores ({e})") from None
    missing = [k for k in ("format", "scores", "labels", "videos", "class_names", "model", "task") if k not in data]
    if missing:
        raise ScoresError(f"{path}: not a scores file written by --save-scores (no {', '.join(missing)})")
    if str(data["format"]) != SCORES_FORMAT:
        raise ScoresError(f"{path}: scores format {str(data['format'])!r}, expected {SCORES_FORMAT!r}")
    out = VideoScores(data["scores"].astype(np.float32), data["labels"].astype(np.int64),
                      [str(v) for v in data["videos"]], [str(c) for c in data["class_names"]], str(data["model"]),
                      str(data["task"]))
    n = len(out.videos)
    if out.scores.shape != (n, len(out.class_names)) or out.labels.shape != (n,):
        raise ScoresError(f"{path}: scores {out.scores.shape} do not fit {n} videos and {len(out.class_names)} classes")
    return out


def dataset_scores(dataset: Any, scores: np.ndarray, labels: np.ndarray, model: Any, task: str,
                   class_names: Sequence[str] | None = None) -> VideoScores:
    """:class:`VideoScores` of an evaluation over ``dataset`` (a classification dataset, in its order)."""
    names = list(class_names or getattr(dataset, "classes", None) or
                 getattr(getattr(model, "config", None), "class_names", None) or [])
    if len(names) != scores.shape[1]:
        names = [str(i) for i in range(scores.shape[1])]  # no names known: the score columns are class indices
    videos = [str(s.path) for s in dataset.samples]
    return VideoScores(np.asarray(scores, dtype=np.float32), np.asarray(labels, dtype=np.int64), videos, names,
                       model if isinstance(model, str) else type(model).__name__, task)


def add_save_scores_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--save-scores", default=None, metavar="FILE.npz",
                        help="write per-video class scores, labels, video paths, class names and the model id "
                             "(combine several with `internvideo eval ensemble`; format: docs/evaluation.md)")


# ----------------------------------------------------------------------------- CLI


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision``, the same on every command: fp32 by default (the reference numbers), auto or bf16 for speed."""
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32", help=PRECISION_HELP)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """Overrides of the model's input recipe (its checkpoint's by default)."""
    parser.add_argument("--sampling", choices=["auto", *SAMPLINGS], default="auto",
                        help="auto: the model's own recipe (dense clips for VideoMAE, TSN segments for multimodal "
                             "models)")
    parser.add_argument("--frame-interval", type=argtypes.positive_int, default=None,
                        help="frame step inside a dense clip (default: the model's recipe)")


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UsageError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")


def add_protocol_argument(parser: argparse.ArgumentParser, *, ours: str, internvideo: str) -> None:
    """``--protocol ours|internvideo``, with what each does for this task."""
    parser.add_argument("--protocol", choices=PROTOCOLS, default="ours",
                        help=f"ours: {ours}; internvideo: {internvideo}. Pass --clip for the official weight merge")


def add_common_arguments(parser: argparse.ArgumentParser, *, data_help: str) -> None:
    """Options every ``internvideo eval TASK`` shares."""
    parser.add_argument("--model", required=True, help="model checkpoint directory/file, a hub id hf:ORG/NAME (or a "
                                                        "named config: random weights, for smoke tests)")
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--root", default=None, help="folder the video paths are relative to (default: the "
                                                     "annotation file's folder)")
    parser.add_argument("--out", default=None, help="write the results JSON here")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=8, help="clips per forward pass")
    parser.add_argument("--num-workers", type=argtypes.nonnegative_int, default=0, help="DataLoader worker processes for decoding")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_precision_argument(parser)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="score clips with NaN/inf model outputs as wrong instead of failing the evaluation")


def finish(results: dict[str, Any], table: str, out: str | os.PathLike | None) -> int:
    """Print a task's table, write its JSON if asked, and return the CLI exit code."""
    print(table)
    if out is not None:
        print(f"results written to {write_json(results, out)}")
    return 0
