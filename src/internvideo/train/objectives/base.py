"""What the training loop asks of an objective, and a base class with the shared data plumbing.

An objective owns one training task: it builds the model and the datasets and
computes the loss of a batch; :func:`internvideo.train.train` does everything
else the same way for all of them. Evaluation metrics are percentages.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from ...data.datasets import SkipLog, View, collate_videos, recipe_view
from ...data.memory import DecodedVideos, shared_decoded_videos
from ...data.shards import ShardIndex, expand_shards
from ...data.transforms import TrainTransformConfig
from ...factory import create_model
from ...recipe import InputRecipe
from ..config import ConfigError, TrainConfig
from ..optim import param_groups

log = logging.getLogger("internvideo.train")


class Objective(Protocol):
    """The contract between an objective and the one training loop."""

    #: the evaluation metric (percent) whose best value a run reports; None: no evaluation metric
    metric_name: str | None

    def build_model(self) -> nn.Module: ...

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        """(training set, validation set or None)."""

    def collate(self, items: Sequence[dict]) -> dict: ...

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss of a batch (``model`` may be wrapped by DDP/compile) and values to log."""

    def evaluate(self, model: nn.Module, val_set: Dataset, device: torch.device) -> dict[str, float]:
        """Metrics on the validation set, in percent."""

    def batch_size(self, batch: dict) -> int: ...

    def param_groups(self, model: nn.Module) -> list[dict]:
        """AdamW parameter groups (weight decay, ``lr_scale``) of the trainable parameters."""

    def on_train_mode(self, model: nn.Module) -> None:
        """Called after ``model.train()``: frozen parts go back to eval mode."""

    def start_epoch(self, train_set: Dataset, epoch: int) -> None: ...

    def end_epoch(self, epoch: int) -> None:
        """Called in the main process after epoch ``epoch`` (reports skipped videos)."""


class VideoObjective:
    """Defaults for objectives that train on decoded video clips.

    Training and evaluation views follow the model's input recipe
    (:meth:`recipe`); ``cfg.data`` only adds where the data is and how strongly
    to augment it.
    """

    metric_name: str | None = None
    video_key = "video"
    labels_required = True  # a shard sample without a label is an error (not for self-supervised objectives)

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.skips = SkipLog()
        self.model: nn.Module | None = None
        self._check_data_paths()

    def _check_data_paths(self) -> None:
        """Name the config key when the data is not where the config says (before any model is built)."""
        d = self.cfg.data
        if d.root and not Path(d.root).is_dir():
            raise ConfigError(f"data.root: no such folder {d.root!r} (relative paths are from {Path.cwd()}); "
                              "set data.root=DIR, e.g. the folder `internvideo synth DIR` writes")
        train = self.path(d.train) if d.train else None
        if train is not None and not train.exists():
            where = f"in data.root {d.root!r}" if d.root else "(data.root is not set, so relative to the working folder)"
            raise ConfigError(f"data.train: no such file {d.train!r} {where}")

    # -- model
    def build_model(self) -> nn.Module:
        m = self.cfg.model
        self.model = create_model(m.name, pretrained=m.pretrained, head=m.head,
                                  allow_partial=m.allow_partial_pretrained, **self.model_overrides())
        return self.model

    def model_overrides(self) -> dict[str, Any]:
        return dict(self.cfg.model.overrides)

    def recipe(self, model: nn.Module | None = None) -> InputRecipe:
        model = model if model is not None else self.model
        if model is None:
            raise RuntimeError("build the model before its datasets: the data views follow its input recipe")
        return model.input_recipe()

    def param_groups(self, model: nn.Module) -> list[dict]:
        return param_groups(model, self.cfg.optim.weight_decay, self.cfg.optim.layer_decay, self.cfg.optim.lr_groups)

    def on_train_mode(self, model: nn.Module) -> None:
        pass

    # -- data
    def path(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() or not self.cfg.data.root else Path(self.cfg.data.root) / p

    def shard_index(self) -> ShardIndex | None:
        """The index of ``data.shards`` (None when training reads lists)."""
        return expand_shards(self.cfg.data.shards)[0] if self.cfg.data.shards else None

    def train_source(self) -> Path | list:
        """``data.train``, or no samples when only shards are given (the shard stream fills them in)."""
        return self.path(self.cfg.data.train) if self.cfg.data.train else []

    @property
    def root(self) -> str | None:
        return self.cfg.data.root or None

    @property
    def decoded(self) -> DecodedVideos | None:
        """The in-memory videos when ``data.decode_once`` is set (pass to datasets as ``decoded=``)."""
        return shared_decoded_videos() if self.cfg.data.decode_once else None

    def preload(self, *datasets: Dataset | None) -> None:
        """Decode the datasets' videos now, in this process, before loader workers fork and share them."""
        if self.decoded is None:
            return
        for ds in datasets:
            if ds is not None:
                self.decoded.preload(ds.videos, progress=self.cfg.run.progress, desc="decoding once")

    def augmentation(self, pretrain: bool = False) -> TrainTransformConfig:
        """Training augmentation from ``cfg.data`` (size and normalisation come from the recipe)."""
        d = self.cfg.data
        if pretrain or d.crop == "multi_scale":
            return TrainTransformConfig.pretrain(hflip=d.hflip, multi_scales=d.multi_scales, max_distort=d.max_distort)
        return TrainTransformConfig(scale=d.scale, hflip=d.hflip, randaugment=d.randaugment,
                                    random_erasing=d.random_erasing)

    def view(self, training: bool, recipe: InputRecipe | None = None, name: str | None = None,
             pretrain: bool = False) -> View:
        """Clips of ``recipe`` (default: the model's) for training (augmented) or evaluation."""
        return recipe_view(recipe or self.recipe(), augment=self.augmentation(pretrain) if training else None,
                           short_side=self.cfg.data.short_side, name=name or self.video_key)

    def views(self, training: bool) -> list[View]:
        return [self.view(training)]

    def collate(self, items: Sequence[dict]) -> dict:
        return collate_videos(items)

    def batch_size(self, batch: dict) -> int:
        return int(batch[self.video_key].shape[0])

    def start_epoch(self, train_set: Dataset, epoch: int) -> None:
        set_epoch = getattr(train_set, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def end_epoch(self, epoch: int) -> None:
        summary = self.skips.summary()
        if summary.count:
            log.warning("epoch %d: %s", epoch, summary)
        self.skips.reset()

    # -- evaluation
    def evaluate(self, model: nn.Module, val_set: Dataset, device: torch.device) -> dict[str, float]:
        return {}

    def eval_batches(self, val_set: Dataset, device: torch.device):
        loader = torch.utils.data.DataLoader(val_set, batch_size=self.cfg.run.batch_size, shuffle=False,
                                             num_workers=0, collate_fn=self.collate)
        for batch in loader:
            yield {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
