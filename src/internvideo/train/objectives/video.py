"""Objectives on video clips with a VideoMAE backbone (or two frozen backbones, for fusion).

* ``mae``: masked video pretraining (VideoMAE, tube masking, norm-pixel MSE)
* ``classify``: supervised fine-tuning / post-pretraining (one or several label sets merged by class name)
* ``linear_probe``: classification with the backbone frozen, only the head trains
* ``fusion``: cross-model attention over two frozen backbones (see :mod:`internvideo.models.fusion`)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ...data.datasets import VideoClassificationDataset, VideoTextDataset, read_classification_list
from ...data.features import FeatureCache
from ...data.labels import merge_label_sets
from ...data.transforms import MixupCutmix
from ...factory import create_fusion
from ...models import apply_overrides, get_config
from ...models.fusion import FusionConfig
from ...models.protocols import VideoClassifier
from ...models.videomae import tube_mask
from ..config import TrainConfig
from .base import VideoObjective


class MaskedClips(Dataset):
    """Adds VideoMAE's tube mask to every item, drawn in the data path as the official code does.

    Drawn from the torch RNG, which the training loop seeds per (seed, epoch,
    index), so the mask is a function of the sample and exact resume holds.
    """

    def __init__(self, dataset: Dataset, grid: tuple[int, int, int], mask_ratio: float):
        self.dataset, self.grid, self.mask_ratio = dataset, grid, mask_ratio
        tube_mask(1, grid, mask_ratio)  # a bad ratio is an error now, not at the first batch

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        item["mask"] = tube_mask(1, self.grid, self.mask_ratio)[0]
        return item


class MaskedVideoObjective(VideoObjective):
    """VideoMAE pretraining on a classification list or video-text JSON lines (labels unused)."""

    def datasets(self):
        d, c = self.cfg.data, self.model.config
        view = self.view(training=True, pretrain=True)
        cls = VideoTextDataset if str(d.train).endswith(".jsonl") else VideoClassificationDataset
        train = cls(self.path(d.train), [view], root=self.root, training=True, seed=self.cfg.run.seed,
                    strict=d.strict, decoded=self.decoded)
        self.preload(train)
        return MaskedClips(train, c.grid, c.mask_ratio), None

    def loss(self, model, batch):
        self.skips.update(batch)
        out = model(batch[self.video_key], batch["mask"])
        return out["loss"], {}


class ClassifyObjective(VideoObjective):
    """Supervised fine-tuning; several (list, classes) pairs are merged into one head by class name."""

    metric_name = "top1"

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        d = cfg.data
        pairs = [(self.path(d.train), self.path(d.classes))] + [(self.path(a), self.path(b)) for a, b in d.extra_train]
        self.classes, self.train_samples = merge_label_sets(pairs, self.root)
        self.mixup = MixupCutmix(len(self.classes), d.mixup, d.cutmix, label_smoothing=d.label_smoothing) \
            if (d.mixup > 0 or d.cutmix > 0) else None

    def model_overrides(self) -> dict:
        extra: dict = {"num_classes": len(self.classes)}
        if hasattr(get_config(self.cfg.model.name)[1], "class_names"):
            extra["class_names"] = tuple(self.classes)  # saved in config.json: eval maps labels by name
        return {**extra, **self.cfg.model.overrides}

    def datasets(self):
        d = self.cfg.data
        train = VideoClassificationDataset(self.train_samples, self.views(True), classes=self.classes,
                                           training=True, seed=self.cfg.run.seed, strict=d.strict,
                                           decoded=self.decoded)
        val = None
        if d.val:
            # Labels beyond the head are an error naming the line; "unknown" (-1) lines cannot be scored.
            val_samples = [s for s in read_classification_list(self.path(d.val), self.root, len(self.classes))
                           if s.label >= 0]
            val = VideoClassificationDataset(val_samples, self.views(False), classes=self.classes,
                                             training=False, strict=True, decoded=self.decoded)
        self.preload(train, val)
        return train, val

    def logits(self, model, batch, video=None):
        return model(batch[self.video_key] if video is None else video)

    def loss(self, model, batch):
        self.skips.update(batch)
        video, labels = batch.get(self.video_key), batch["label"]  # cached features have no video
        if self.mixup is not None:
            gen = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))  # from the checkpointed RNG
            video, targets = self.mixup(video, labels, gen)
            logits = self.logits(model, batch, video)
            loss = torch.sum(-targets.to(logits.device) * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        else:
            logits = self.logits(model, batch)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.data.label_smoothing)
        acc = (logits.argmax(-1) == labels).float().mean().item()
        return loss, {"train_top1": 100.0 * acc}

    @torch.no_grad()
    def evaluate(self, model, val_set, device) -> dict[str, float]:
        model.eval()
        correct1 = correct5 = n = 0
        for batch in self.eval_batches(val_set, device):
            logits = self.logits(model, batch).float()
            labels = batch["label"]
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            correct1 += (top[:, 0] == labels).sum().item()
            correct5 += (top == labels[:, None]).any(-1).sum().item()
            n += labels.numel()
        return {"top1": 100.0 * correct1 / max(n, 1), "top5": 100.0 * correct5 / max(n, 1)}


class LinearProbeObjective(ClassifyObjective):
    """Frozen backbone (eval mode, no gradients); only the classification head trains."""

    def build_model(self) -> nn.Module:
        model = super().build_model()
        head = _head_module(model)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
        return model

    def on_train_mode(self, model: nn.Module) -> None:
        model.eval()
        _head_module(model).train()


def _head_module(model: nn.Module) -> nn.Module:
    if not isinstance(model, VideoClassifier) or not isinstance(model.head, nn.Module):
        raise TypeError(f"{type(model).__name__} has no `head` module to probe")
    return model.head


class FusionObjective(ClassifyObjective):
    """CMA over two frozen backbones; the fusion layers and head train (with ``cma="paper"`` also the
    multimodal encoder's video query, as the paper says).

    The dataset gives both views of each clip, each by its backbone's input
    recipe: ``video`` (VideoMAE: dense frames, ImageNet statistics) and
    ``mm_video`` (the multimodal encoder: its frames and CLIP statistics). With
    ``fusion.feature_cache`` set, the backbones run once over the training set
    (evaluation views, no augmentation) and training reads the cached features,
    stored under :meth:`feature_cache_dir` (keyed by backbones, layers and samples).
    """

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        if not (m.mae_backbone and m.mm_backbone):
            raise ValueError("objective 'fusion' needs model.mae_backbone and model.mm_backbone (checkpoint dirs)")
        cfg = apply_overrides(FusionConfig(mae_backbone=m.mae_backbone, mm_backbone=m.mm_backbone,
                                           num_classes=len(self.classes), class_names=tuple(self.classes)),
                              dict(m.overrides), "fusion")
        self.model = create_fusion(cfg)
        return self.model

    def views(self, training: bool):
        return [self.view(training, self.model.mae.input_recipe(), "video"),
                self.view(training, self.model.mm.input_recipe(), "mm_video")]

    def datasets(self):
        train, val = super().datasets()
        if self.cfg.fusion.feature_cache:
            eval_set = VideoClassificationDataset(self.train_samples, self.views(False), classes=self.classes,
                                                  training=False, strict=self.cfg.data.strict, decoded=self.decoded)
            model = self.model
            train = FeatureCache.build(lambda b: model.backbone_features(b["video"], b["mm_video"], all_streams=True),
                                       eval_set, self.feature_cache_dir(), self.cfg.run.batch_size)
        return train, val

    def feature_cache_dir(self) -> Path:
        """``fusion.feature_cache/<key>``: the key covers both backbones (weights, configs), the stored layers, the
        training samples and the evaluation view, so changing any of them computes new features instead of
        reusing stale ones."""
        h = hashlib.sha256(self.model.feature_key().encode())
        h.update(json.dumps([(s.path, s.label) for s in self.train_samples]).encode())
        h.update(f"short_side={self.cfg.data.short_side}".encode())
        return Path(self.cfg.fusion.feature_cache) / h.hexdigest()[:16]

    def batch_size(self, batch) -> int:
        return int(batch["label"].shape[0])

    def logits(self, model, batch, video=None):
        if "mm_pooled" in batch and "mm_video" not in batch:  # cached features
            feats = {k: v for k, v in batch.items() if k.startswith(("mae_", "mm_")) and isinstance(v, torch.Tensor)}
            return model.forward_features_cached(feats)
        return model(batch["video"] if video is None else video, batch.get("mm_video"))
