"""``localize``: ActionFormer-style temporal action localization trained on pre-extracted feature sequences.

``model.name`` is one of :data:`internvideo.models.localization.NAMED_CONFIGS`
(``actionformer_thumos14``, ``actionformer_activitynet``, ``actionformer_small``)
or a checkpoint directory to continue from; ``model.overrides`` changes its
fields. ``input_dim``, ``num_classes`` and ``class_names`` come from the data.
Sequences of a batch are zero-padded to a common length with a mask. The
validation metric is the average mAP (percent) over ``localize.tiou``.
``model.overrides.num_classes: 1`` trains class-agnostic proposals (the
ActivityNet recipe); their in-training mAP is then class-agnostic too, and the
reported protocol fuses an external classifier's video scores
(``internvideo eval localization --class-scores``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ...checkpoints import load_model
from ...data.localization import FeatureSequenceDataset, collate_sequences
from ...models import apply_overrides
from ...models.localization import NAMED_CONFIGS, ActionLocalizer
from ...models.protocols import Localizer
from ...tasks.localization import ACTIVITYNET_TIOUS, evaluate_localization
from ..config import TrainConfig
from ..optim import param_groups


class LocalizeObjective:
    metric_name = "average_mAP"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.model: ActionLocalizer | None = None
        self._train: FeatureSequenceDataset | None = None

    def _path(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() or not self.cfg.data.root else Path(self.cfg.data.root) / p

    def _dataset(self, training: bool, classes: Sequence[str] | None = None,
                 input_dim: int | None = None) -> FeatureSequenceDataset:
        d, loc = self.cfg.data, self.cfg.localize
        if not loc.features:
            raise ValueError("the localize objective needs localize.features (a folder of per-video .npy features)")
        ann = self._path(d.train if training or not d.val else d.val)
        max_len = self.model.config.max_seq_len if self.model is not None else 2304
        # num_classes: 1 asks for class-agnostic proposals (ActionFormer's ActivityNet recipe).
        agnostic = self.cfg.model.overrides.get("num_classes") == 1
        folders = [self._path(f) for f in ([loc.features] if isinstance(loc.features, str) else loc.features)]
        return FeatureSequenceDataset(ann, folders, prefix=loc.prefix, file_ext=loc.file_ext,
                                      subset=loc.train_subset if training else loc.val_subset,
                                      classes=None if agnostic else classes, input_dim=input_dim,
                                      feat_stride=loc.feat_stride, window_frames=loc.window_frames, fps=loc.fps,
                                      training=training, max_seq_len=max_len, crop_ratio=loc.crop_ratio,
                                      resize_to=loc.resize_to, class_agnostic=agnostic)

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        # The label set and the feature width are the data's: read them before building.
        train = self._dataset(True)
        if len(train) == 0:
            raise ValueError(f"no training videos with features (subset {self.cfg.localize.train_subset!r}, "
                             f"{len(train.missing)} without features)")
        width = int(train.load(0).shape[1])
        from_data = {"input_dim": width, "num_classes": len(train.classes), "class_names": tuple(train.classes)}
        if m.overrides.get("num_classes") == 1:
            from_data["class_names"] = tuple(train.classes)  # ("action",)
        if m.name in NAMED_CONFIGS:
            cls, base = NAMED_CONFIGS[m.name]
            model = cls(apply_overrides(base, {**from_data, **m.overrides}, f"model {m.name!r}"))
            if m.pretrained:
                model.load_state_dict(load_model(m.pretrained).state_dict())
        elif os.path.isdir(m.name):
            model = load_model(m.name, **m.overrides)
            if not isinstance(model, Localizer):
                raise TypeError(f"{m.name} holds a {type(model).__name__}, not a temporal localizer (ActionLocalizer)")
        else:
            raise ValueError(f"unknown localization model {m.name!r}; named: {', '.join(NAMED_CONFIGS)} "
                             "(or a checkpoint directory)")
        self.model = model
        train.input_dim = model.config.input_dim
        train.max_seq_len = model.config.max_seq_len
        self._train = train
        return model

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        if self.model is None:
            raise RuntimeError("build the model before its datasets")
        train = self._train or self._dataset(True)
        c = self.model.config
        classes = list(c.class_names) or train.classes
        val = self._dataset(False, classes=classes, input_dim=c.input_dim)
        return train, (val if len(val) else None)

    def collate(self, items: Sequence[dict]) -> dict[str, Any]:
        batch = collate_sequences(items)
        batch["feats"], batch["mask"] = self.model.pad(batch["feats"])
        return batch

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(batch["feats"], batch["mask"])
        core = getattr(model, "module", model)  # DDP / compile wrappers
        core = getattr(core, "_orig_mod", core)
        losses = core.loss(out, batch["segments"], batch["labels"])
        return losses["loss"], {"cls_loss": float(losses["cls_loss"]), "reg_loss": float(losses["reg_loss"]),
                                "num_pos": float(losses["num_pos"])}

    def evaluate(self, model: nn.Module, val_set: Dataset, device: torch.device) -> dict[str, float]:
        tiou = self.cfg.localize.tiou or ACTIVITYNET_TIOUS
        r = evaluate_localization(model, val_set, tiou_thresholds=tiou)
        return {"average_mAP": r["average_mAP"], "chance_average_mAP": r["chance_average_mAP"],
                **{f"mAP@{k}": v for k, v in r["mAP"].items()}}

    def batch_size(self, batch: dict) -> int:
        return len(batch["segments"])

    def param_groups(self, model: nn.Module) -> list[dict]:
        return param_groups(model, self.cfg.optim.weight_decay, None, self.cfg.optim.lr_groups)

    def on_train_mode(self, model: nn.Module) -> None:
        pass

    def start_epoch(self, train_set: Dataset, epoch: int) -> None:
        pass

    def end_epoch(self, epoch: int) -> None:
        pass
