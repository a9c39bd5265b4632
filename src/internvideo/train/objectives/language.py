"""``openset`` (evidential classification of the known classes) and ``qa`` (open-ended video QA).

* ``openset``: a classifier trained on the known classes only, its logits read
  as Dirichlet evidence and trained with the EDL loss (DEAR; ``openset.loss``
  picks digamma/log/mse), the KL term annealed over
  ``openset.edl_annealing_epochs`` or left out (``openset.kl: false``). The label indices of the
  training list are mapped onto ``0..K-1`` in increasing order (the synthetic
  world's known classes are 0-7); a list holding ``-1`` (unknown) is refused.
  Validation (known classes): top-1 and the mean uncertainty ``u = K / S``.
  ``internvideo eval openset`` then scores the model's frozen features.
* ``qa``: :class:`~internvideo.models.qa.VideoQA` on a multimodal backbone
  (``model.name``/``model.pretrained``), answer vocabulary = the
  ``qa.answers`` most frequent normalised training answers; questions
  answered outside it are left out of the loss (and count as wrong in
  validation accuracy, as at test time).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...data.datasets import (ClassificationSample, QASample, VideoClassificationDataset, VideoDataset,
                              collate_videos, read_classification_list, read_qa)
from ...factory import create_model
from ...models.openset import annealing, dirichlet_uncertainty, edl_loss, evidence
from ...models.qa import VideoQA, VideoQAConfig, answer_vocabulary, normalize_answer
from ...tokenizer import get_tokenizer
from ..config import TrainConfig
from .base import VideoObjective
from .video import ClassifyObjective

IGNORE = -100


class OpenSetObjective(ClassifyObjective):
    metric_name = "top1"

    def __init__(self, cfg: TrainConfig):
        VideoObjective.__init__(self, cfg)
        d = cfg.data
        raw = read_classification_list(self.path(d.train), self.root)
        known = sorted({s.label for s in raw})
        if -1 in known:
            raise ValueError(f"{d.train}: open-set training lists hold known classes only; found label -1 (unknown)")
        self.index = {label: i for i, label in enumerate(known)}
        self.train_samples = [ClassificationSample(s.path, self.index[s.label]) for s in raw]
        self.classes = [str(label) for label in known]
        self.mixup = None
        self.epoch = 0

    def _known(self, path) -> list[ClassificationSample]:
        samples = read_classification_list(path, self.root)
        stray = sorted({s.label for s in samples if s.label not in self.index})
        if stray:
            raise ValueError(f"{path}: labels {stray} are not among the known training classes")
        return [ClassificationSample(s.path, self.index[s.label]) for s in samples]

    def datasets(self):
        d = self.cfg.data
        train = VideoClassificationDataset(self.train_samples, self.views(True), training=True,
                                           seed=self.cfg.run.seed, strict=d.strict, decoded=self.decoded)
        val = VideoClassificationDataset(self._known(self.path(d.val)), self.views(False), training=False,
                                         strict=True, decoded=self.decoded) if d.val else None
        self.preload(train, val)
        return train, val

    def start_epoch(self, train_set, epoch: int) -> None:
        super().start_epoch(train_set, epoch)
        self.epoch = epoch

    def loss(self, model, batch):
        self.skips.update(batch)
        logits = self.logits(model, batch).float()
        o = self.cfg.openset
        weight = annealing(self.epoch, o.edl_annealing_epochs, o.kl)
        loss = edl_loss(evidence(logits), batch["label"], weight, o.loss)
        acc = (logits.argmax(-1) == batch["label"]).float().mean().item()
        return loss, {"train_top1": 100.0 * acc, "kl_weight": weight}

    @torch.no_grad()
    def evaluate(self, model, val_set, device) -> dict[str, float]:
        model.eval()
        correct = n = 0
        uncertainty = 0.0
        for batch in self.eval_batches(val_set, device):
            logits = self.logits(model, batch).float()
            correct += (logits.argmax(-1) == batch["label"]).sum().item()
            uncertainty += dirichlet_uncertainty(evidence(logits)).sum().item()
            n += batch["label"].numel()
        return {"top1": 100.0 * correct / max(n, 1), "uncertainty": 100.0 * uncertainty / max(n, 1)}


class QADataset(VideoDataset):
    """QA samples as dataset items: the video's views plus ``question`` and ``answer`` (vocabulary index or -100)."""

    def __init__(self, samples: Sequence[QASample], answers: Sequence[str], views, **kwargs):
        self.samples = list(samples)
        index = {a: i for i, a in enumerate(answers)}
        self.labels = [index.get(normalize_answer(s.answer), IGNORE) for s in self.samples]
        super().__init__([s.video for s in self.samples], views, **kwargs)

    def annotation(self, index, rng):
        return {"question": self.samples[index].question, "answer": self.labels[index]}


class QAObjective(VideoObjective):
    metric_name = "accuracy"

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.train_samples = read_qa(self.path(cfg.data.train), self.root)
        self.answers = answer_vocabulary([s.answer for s in self.train_samples], cfg.qa.answers)
        self.tokenizer = get_tokenizer("clip")

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        backbone = create_model(m.name, pretrained=m.pretrained, **self.model_overrides())
        self.model = VideoQA(VideoQAConfig(answers=self.answers, head=self.cfg.qa.head), backbone=backbone)
        return self.model

    def datasets(self):
        d = self.cfg.data
        train = QADataset(self.train_samples, self.answers, self.views(True), training=True, seed=self.cfg.run.seed,
                          strict=d.strict, decoded=self.decoded)
        val = QADataset(read_qa(self.path(d.val), self.root), self.answers, self.views(False), training=False,
                        strict=True, decoded=self.decoded) if d.val else None
        self.preload(train, val)
        return train, val

    def collate(self, items):
        batch = collate_videos(items)
        ids = self.tokenizer(batch["question"])
        batch["ids"] = ids[:, : int((ids != 0).sum(dim=1).max())]
        return batch

    def loss(self, model, batch):
        self.skips.update(batch)
        logits = model(batch[self.video_key], batch["ids"]).float()
        labels = batch["answer"]
        if not (labels != IGNORE).any():  # a batch of out-of-vocabulary answers only: nothing to learn from
            return logits.sum() * 0.0, {"train_accuracy": 0.0}
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
        acc = (logits.argmax(-1) == labels).float().mean().item()
        return loss, {"train_accuracy": 100.0 * acc}

    @torch.no_grad()
    def evaluate(self, model, val_set, device) -> dict[str, float]:
        model.eval()
        correct = n = 0
        for batch in self.eval_batches(val_set, device):
            pred = model(batch[self.video_key], batch["ids"].to(device)).argmax(-1)
            correct += (pred == batch["answer"]).sum().item()  # -100 never matches: out of vocabulary = wrong
            n += batch["answer"].numel()
        return {"accuracy": 100.0 * correct / max(n, 1)}


__all__ = ["OpenSetObjective", "QADataset", "QAObjective"]
