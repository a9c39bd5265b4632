"""``ava``: spatiotemporal action detection, a VideoMAE trunk with an RoI head (multi-label BCE).

Training reads ground-truth person boxes (``data.train``: an AVA CSV), jitters
them (``ava.box_jitter``) and carries them through scale / crop / flip
(:class:`~internvideo.data.ava.BoxTransform`); clips are centred on each
annotated keyframe and follow the model's input recipe (``num_frames`` x
``frame_interval``, ``img_size``, mean/std). Validation scores frame-mAP@0.5
exactly as the official AVA evaluation (:func:`internvideo.tasks.ava.frame_map`)
on ``data.val``'s keyframes, over ``ava.proposals`` scoring at least
``ava.proposal_threshold`` when given, else over the ground-truth boxes.

The official InternVideo / AlphAction handling is a set of options (on in
``configs/ava/internvideo_*.yaml``): ``ava.keep_aspect`` / ``short_side``
(frames keep their aspect ratio; test clips are padded to whole patches and
the position table follows the grid), ``box_aug`` (the asymmetric train-time
jitter), ``box_extend`` and ``box_score`` (test-time box growth; scores times
the detector's), ``frame_shift``. AVA-Kinetics adds ``ava.kinetics_train`` /
``kinetics_val`` (``kinetics_*_v1.0.csv``) with their clips (``kinetics_videos``):
trained together with AVA, validated together (one frame-mAP over both).

The backbone is fine-tuned with layer-wise lr decay (``optim.layer_decay``, as
the official recipes: 0.75 for ViT-B, 0.8 for L/H) or frozen
(``ava.freeze_backbone``: only the head trains; the trunk stays in eval mode).
Settings of the family are in the ``ava:`` section of the config (:class:`~internvideo.train.config.AVASection`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ...data.ava import (
    AVADataset, BoxTransform, at_keyframes, check_proposals_cover, collate_ava, group_keyframes,
    index_kinetics_clips, keyframes_from_proposals, key_of, read_ava_groundtruth, read_ava_kinetics,
    read_excluded_timestamps, read_label_map, read_proposals,
)
from ...tasks.ava import detect, frame_map
from ...models.protocols import Detector
from ..config import ConfigError, TrainConfig
from .base import VideoObjective

log = logging.getLogger("internvideo.train")


class AVAObjective(VideoObjective):
    metric_name = "mAP"

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        if not cfg.data.train:
            raise ValueError("objective 'ava' needs data.train (an AVA ground-truth CSV)")
        if not cfg.ava.labels:
            raise ValueError("objective 'ava' needs ava.labels (the label map .pbtxt)")
        self.label_map = read_label_map(self.path(cfg.ava.labels))
        self.num_classes = max(self.label_map)  # AVA ids are 1-based; column j is id j + 1
        self.val_rows: list | None = None
        self.excluded: set = set()
        self._clip_index: dict | None = None

    def model_overrides(self) -> dict:
        return {"num_classes": self.num_classes, **self.cfg.model.overrides}

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if not isinstance(model, Detector):
            raise ConfigError(f"model.name: the ava objective trains a detector (videomae_*_ava), not a "
                              f"{type(model).__name__} ({self.cfg.model.name!r})")
        if self.cfg.ava.freeze_backbone:
            model.freeze_backbone()
        return model

    def on_train_mode(self, model: nn.Module) -> None:
        if self.cfg.ava.freeze_backbone:
            model.eval()
            getattr(model, "module", model).head.train()

    def _dataset(self, keyframes, training: bool, clips=None) -> AVADataset:
        a, r = self.cfg.ava, self.recipe()
        if a.keep_aspect and a.short_side is not None and a.short_side < r.img_size:
            raise ConfigError(f"ava.short_side: {a.short_side} is smaller than the model's img_size {r.img_size} "
                              "(training crops img_size x img_size windows)")
        tf = BoxTransform(r.img_size, training=training, scale=tuple(a.box_scale),
                          flip=0.5 if self.cfg.data.hflip else 0.0, mean=r.mean, std=r.std,
                          keep_aspect=a.keep_aspect, short_side=a.short_side,
                          pad_to=getattr(getattr(self.model, "config", None), "patch_size", 1),
                          antialias=a.resize_antialias)
        video_root = self.path(a.videos) if a.videos else (Path(self.cfg.data.root) if self.cfg.data.root else None)
        if video_root is None:
            raise ValueError("objective 'ava' needs ava.videos or data.root (the folder of <video_id>.* files)")
        ds = AVADataset(keyframes, video_root, self.num_classes, tf, clip_len=r.num_frames,
                        frame_interval=r.frame_interval, time_offset=a.time_offset,
                        jitter=a.box_jitter if training else 0.0, seed=self.cfg.run.seed,
                        box_aug=tuple(a.box_aug) if training and a.box_aug else None,
                        extend=None if training or not a.box_extend else tuple(a.box_extend),
                        frame_shift=a.frame_shift, clips=clips)
        for reason, count in ds.skipped.items():
            log.warning("%s: %d keyframe(s) skipped (%s)", "train" if training else "val", count, reason)
        return ds

    def _kinetics(self, csv: str | None, num_classes: int | None) -> tuple[list, dict]:
        """AVA-Kinetics: the rows of a ``kinetics_*_v1.0.csv`` and the clips holding their keyframes."""
        a = self.cfg.ava
        if not csv:
            return [], {}
        if not a.kinetics_videos:
            raise ConfigError("ava.kinetics_videos: the Kinetics clips folder is needed with ava.kinetics_train/val")
        if self._clip_index is None:
            self._clip_index = index_kinetics_clips(self.path(a.kinetics_videos))
        rows, clips, skipped = read_ava_kinetics(self.path(csv), self._clip_index, num_classes, a.kinetics_missing)
        if skipped:
            log.warning("%s: %d row(s) skipped (no Kinetics clip holds their keyframe)", csv, skipped)
        return rows, clips

    def _val_keyframes(self, rows: list, proposals_file: str | None) -> list:
        keyframes = group_keyframes(r for r in rows if key_of(r.video_id, r.timestamp) not in self.excluded)
        if proposals_file:
            proposals = read_proposals(self.path(proposals_file))
            keys = [key_of(k.video_id, k.timestamp) for k in keyframes]
            check_proposals_cover(proposals, keys, self.path(proposals_file))
            keyframes = keyframes_from_proposals(proposals, keys, self.cfg.ava.proposal_threshold)
        return keyframes

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        d, a = self.cfg.data, self.cfg.ava
        self._clip_index = None
        train_rows = read_ava_groundtruth(self.path(d.train), num_classes=self.num_classes)
        k_rows, k_clips = self._kinetics(a.kinetics_train, self.num_classes)
        train = self._dataset(group_keyframes(train_rows + k_rows), training=True, clips=k_clips)
        val = None
        if d.val:
            self.val_rows = at_keyframes(read_ava_groundtruth(self.path(d.val)))
            self.excluded = read_excluded_timestamps(self.path(a.exclude)) if a.exclude else set()
            keyframes = self._val_keyframes(self.val_rows, a.proposals)
            k_rows, k_clips = self._kinetics(a.kinetics_val, None)
            if k_rows:  # AVA-Kinetics validation: both parts scored together (the official ak_val_gt.csv)
                self.val_rows = self.val_rows + k_rows
                keyframes = keyframes + self._val_keyframes(k_rows, a.kinetics_proposals)
            val = self._dataset(keyframes, training=False, clips=k_clips)
        return train, val

    def collate(self, items):
        return collate_ava(items)

    def batch_size(self, batch: dict) -> int:
        return 0 if batch["video"] is None else int(batch["video"].shape[0])

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self.skips.update(batch)
        if batch["video"] is None or len(batch["rois"]) == 0:
            # nothing to learn from (every clip unreadable or every box cropped away): a zero loss keeps DDP in step
            return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad), {}
        logits = model(batch["video"], batch["rois"])
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
        return loss, {"boxes": float(len(batch["rois"]))}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, val_set: Dataset, device: torch.device) -> dict[str, float]:
        dets = detect(model, val_set, batch_size=self.cfg.run.batch_size, device=device,
                      box_score=self.cfg.ava.box_score)
        result = frame_map(self.val_rows or [], dets, self.label_map, self.excluded)
        return {"mAP": result["mAP"], "num_gt": float(result["num_gt"])}
