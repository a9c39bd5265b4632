"""Heads fitted on frozen features: the open-set heads, the QA head, the caption decoder.

The backbone is frozen and its outputs are computed once (by the caller or by
:mod:`internvideo.tasks`), so these fits need none of the run loop's machinery
(run directory, checkpoints, data loaders, distributed): :func:`fit_head` is
the one small loop they share, AdamW on the trainable module with an optional
schedule from :mod:`.optim`, a hard stop on a non-finite loss
(:class:`~internvideo.train.loop.TrainingDiverged`). Batches are drawn with a
``torch.Generator``, and the global RNG is left as it was: initialisation and
dropout run in :func:`seeded` / ``torch.random.fork_rng``.

* :func:`fit_openset_head`: an evidential (``loss="edl"``) or softmax
  (``"ce"``) head, full batch; the ``fit`` that
  :func:`internvideo.tasks.openset.evaluate_openset` takes (tasks never train:
  ``internvideo eval openset`` gets it from the CLI);
* :func:`train_qa_head` / :func:`fit_qa_model`: a :class:`VideoQA` head on
  cached question and video tokens (:class:`~internvideo.tasks.qa.QAFeatures`);
* :func:`fine_tune_decoder`: the caption decoder alone, teacher-forced.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data import VideoDataset, VideoTextSample
from ..errors import UsageError
from ..models.caption import IGNORE_INDEX, caption_targets
from ..models.openset import EvidenceFn, OpenSetHead, annealing, edl_loss, evidence
from ..models.qa import VideoQA, VideoQAConfig, answer_vocabulary, normalize_answer
from ..tasks import common
from ..tasks.caption import caption_samples, require_decoder
from ..tasks.inputs import readable_videos
from ..tasks.qa import QAData, QAFeatures, qa_features, qa_samples
from ..tokenizer import get_tokenizer
from .loop import TrainingDiverged
from .optim import warmup_cosine

__all__ = ["fit_head", "seeded", "fit_openset_head", "train_qa_head", "fit_qa_model", "fine_tune_decoder"]

Schedule = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def _rng_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The global RNG seeded with ``seed`` inside the block and restored as it was after it."""
    with torch.random.fork_rng(devices=_rng_devices()):
        torch.manual_seed(seed)
        yield


def fit_head(module: nn.Module, loss_at: Callable[[int], torch.Tensor], steps: int, *, lr: float,
             weight_decay: float, schedule: Schedule | None = None, name: str = "head fitting",
             progress: bool = False) -> list[float]:
    """Train ``module``'s parameters for ``steps`` steps on ``loss_at(step)``; returns every step's loss.

    ``loss_at`` draws its own batch (from the caller's generator). Dropout
    draws from the global RNG's current state, which is restored afterwards.
    """
    optim = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    sched = schedule(optim) if schedule is not None else None
    module.train()
    losses: list[float] = []
    with torch.random.fork_rng(devices=_rng_devices()):
        bar = tqdm(range(steps), desc=name, disable=not progress, unit="step")
        for step in bar:
            loss = loss_at(step)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{name}: non-finite loss at step {step} (lower the learning rate, now {lr})")
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    module.eval()
    return losses


# ----------------------------------------------------------------------------- open-set


def fit_openset_head(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, loss: str = "edl",
                     kind: EvidenceFn = "exp", steps: int = 300, annealing_steps: int = 100, lr: float = 1e-2,
                     weight_decay: float = 1e-4, hidden: int = 0, seed: int = 0) -> OpenSetHead:
    """A head trained full-batch on frozen features: ``loss="edl"`` (evidential) or ``"ce"`` (softmax baseline)."""
    if loss not in ("edl", "ce"):
        raise UsageError(f"loss must be 'edl' or 'ce', not {loss!r}")
    with seeded(seed):
        head = OpenSetHead(x.shape[1], num_classes, hidden=hidden)

        def loss_at(step: int) -> torch.Tensor:
            logits = head(x)
            if loss == "edl":
                return edl_loss(evidence(logits, kind), y, annealing(step, annealing_steps))
            return F.cross_entropy(logits, y)

        fit_head(head, loss_at, steps, lr=lr, weight_decay=weight_decay, name=f"open-set {loss} head")
    return head


# ----------------------------------------------------------------------------- QA


def train_qa_head(model: VideoQA, train: QAData, *, root: str | os.PathLike | None = None, epochs: int = 30,
                  batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
                  features: QAFeatures | None = None, device: str | torch.device | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Train ``model.head`` (backbone frozen) with cross-entropy on the in-vocabulary training questions.

    Each epoch visits the questions in a new order drawn from a generator
    seeded with ``seed``; the learning rate follows a one-cycle schedule.
    Returns ``{"losses": [mean loss per epoch], "num_trained", "num_out_of_vocabulary", "skipped"}``.
    """
    if model.config.head != "cross":
        raise common.WrongModelError(
            f"the {model.config.head} QA head is trained end to end with its backbone, as the official recipe: "
            "`internvideo train` with objective qa and qa.head=vtc_cap (configs/qa/msrvtt_qa.yaml)")
    samples = qa_samples(train, root)
    skipped: list[tuple[str, str]] = []
    keep = list(range(len(samples)))
    if features is None:
        features, keep, skipped = qa_features(model, samples, device=device, progress=progress)
    index = {a: i for i, a in enumerate(model.answers)}
    labels = torch.tensor([index.get(normalize_answer(samples[i].answer), -1) for i in keep])
    rows = (labels >= 0).nonzero().flatten()
    if not len(rows):
        raise UsageError("no training question has an answer in the vocabulary")
    dev = common.resolve_device(device)
    head = model.head.to(dev)
    g = torch.Generator().manual_seed(seed)
    per_epoch = (len(rows) + batch_size - 1) // batch_size
    steps = epochs * per_epoch
    order, sizes = rows, []

    def loss_at(step: int) -> torch.Tensor:
        nonlocal order
        if step % per_epoch == 0:
            order = rows[torch.randperm(len(rows), generator=g)]
        i = (step % per_epoch) * batch_size
        batch = order[i:i + batch_size]
        sizes.append(len(batch))
        q, pad, v = (t.to(dev) for t in features.batch(batch))
        return F.cross_entropy(head(q, pad, v), labels[batch].to(dev))

    schedule = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=lr, total_steps=steps, pct_start=0.1)
    step_losses = fit_head(head, loss_at, steps, lr=lr, weight_decay=weight_decay, schedule=schedule,
                           name="QA head", progress=progress)
    losses = []
    for e in range(epochs):
        total = 0.0
        for j in range(e * per_epoch, (e + 1) * per_epoch):
            total += step_losses[j] * sizes[j]
        losses.append(total / len(rows))
    return {"losses": losses, "num_trained": int(len(rows)), "num_out_of_vocabulary": int((labels < 0).sum()),
            "skipped": skipped}


def fit_qa_model(backbone: nn.Module, train: QAData, features: QAFeatures, *, width: int = 128, heads: int = 4,
                 layers: int = 2, top_k: int | None = None, seed: int = 0,
                 **kwargs: Any) -> tuple[VideoQA, dict[str, Any]]:
    """A new :class:`VideoQA` head over the training answers on a frozen ``backbone``, then :func:`train_qa_head`.

    The head is initialised from ``seed`` (the global RNG is left as it was);
    ``kwargs`` go to :func:`train_qa_head`. Returns ``(model, training summary)``.
    """
    samples = qa_samples(train, None)
    answers = [s.answer for s in samples]
    vocabulary = answer_vocabulary(answers) if top_k is None else answer_vocabulary(answers, top_k)
    with seeded(seed):
        model = VideoQA(VideoQAConfig(answers=vocabulary, width=width, heads=heads, layers=layers), backbone=backbone)
        summary = train_qa_head(model, samples, features=features, seed=seed, **kwargs)
    return model, summary


# ----------------------------------------------------------------------------- captioning


def fine_tune_decoder(model: nn.Module, train: str | os.PathLike | Sequence[VideoTextSample], *,
                      root: str | os.PathLike | None = None, video_tokens: torch.Tensor | None = None,
                      steps: int = 1000, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05,
                      seed: int = 0, device: str | torch.device | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Train ``model.caption`` with teacher-forced cross-entropy on every caption of ``train``; all else frozen.

    ``video_tokens`` ``(len(train), N, vision_width)``: last-layer tokens of
    each training video in order (``model.forward_features``), when already
    computed; otherwise they are computed here and unreadable videos are
    skipped and counted. Batches draw (video, caption) pairs at random; the
    learning rate warms up linearly over the first tenth of the steps, then
    follows a cosine (:func:`~internvideo.train.optim.warmup_cosine`). A
    non-finite loss stops training with the step named. Returns
    ``{"losses": [every step], "num_videos", "num_captions",
    "num_ignored_tokens", "skipped"}``.
    """
    require_decoder(model)
    samples = caption_samples(train, root)
    dev = common.resolve_device(device)
    skipped: list[tuple[str, str]] = []
    if video_tokens is None:
        keep, skipped = readable_videos([s.video for s in samples])
        samples = [samples[i] for i in keep]
        if not samples:
            raise UsageError(f"none of the training videos could be read (first: {skipped[0][0]}: {skipped[0][1]})")
        dataset = VideoDataset([s.video for s in samples], common.eval_view(model), training=False, strict=True)
        tokens, _ = common.map_views(model, model.forward_features, dataset, device=dev, progress=progress,
                                     desc="video tokens")
        video_tokens = tokens[:, 0]
    if len(video_tokens) != len(samples):
        raise ValueError(f"video_tokens holds {len(video_tokens)} videos but the training set {len(samples)}")
    pairs = [(i, c) for i, s in enumerate(samples) for c in s.captions]
    if not pairs:
        raise UsageError("the training videos have no captions")
    tokenizer = get_tokenizer("clip", context_length=model.config.context_length)
    ids = tokenizer([c for _, c in pairs])
    ids = ids[:, : int((ids != 0).sum(dim=1).max())]
    model.to(dev).eval()
    with torch.no_grad():  # the text encoder is frozen: its causal states are the decoder's fixed input
        text = torch.cat([model.text.forward_tokens(ids[i:i + 256].to(dev)) for i in range(0, len(ids), 256)])
    token_targets = caption_targets(ids).to(dev)
    targets = model.caption_head_targets(token_targets)
    video = torch.tensor([i for i, _ in pairs], device=dev)
    decoder = model.caption
    g = torch.Generator().manual_seed(seed)

    def loss_at(step: int) -> torch.Tensor:
        rows = torch.randint(len(pairs), (min(batch_size, len(pairs)),), generator=g).to(dev)
        logits = decoder(text[rows, :-1], decoder.pool_video(video_tokens[video[rows]].to(dev)))
        return F.cross_entropy(logits.float().flatten(0, 1), targets[rows].flatten(), ignore_index=IGNORE_INDEX)

    scale = functools.partial(warmup_cosine, total=steps, warmup=max(1, steps // 10))
    losses = fit_head(decoder, loss_at, steps, lr=lr, weight_decay=weight_decay, name="caption decoder",
                      schedule=lambda optim: torch.optim.lr_scheduler.LambdaLR(optim, scale), progress=progress)
    return {"losses": losses, "num_videos": len(samples), "num_captions": len(pairs),
            "num_ignored_tokens": int(((targets == IGNORE_INDEX) & (token_targets != IGNORE_INDEX)).sum()),
            "skipped": skipped}
