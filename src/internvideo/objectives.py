"""Training objectives: each is a model + datasets + loss for the one loop in :mod:`internvideo.train`.

* ``mae``: masked video pretraining (VideoMAE, 90 % tube masking, norm-pixel MSE)
* ``classify``: supervised fine-tuning / post-pretraining (one or several label sets merged by class name)
* ``linear_probe``: classification with the backbone frozen, only the head trains
* ``contrastive``: video-text InfoNCE (+ captioning loss) for the multimodal model
* ``fusion``: cross-model attention over two frozen backbones (see :mod:`internvideo.models.fusion`)
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data.datasets import (
    SkipLog, VideoClassificationDataset, VideoTextDataset, View, collate_videos, read_classes,
    read_classification_list,
)
from .data.sampling import DenseSampler, SegmentSampler, UniformSampler
from .data.transforms import (
    EvalTransformConfig, MixupCutmix, TrainTransformConfig, build_eval_transform, build_train_transform,
)

log = logging.getLogger("internvideo.train")


class Objective:
    """Base: subclasses build the model and datasets and compute the loss of a batch."""

    metric_name: str | None = None
    video_key = "video"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.skips = SkipLog()

    # -- data
    def _path(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() or not self.cfg.data.root else Path(self.cfg.data.root) / p

    def sampler(self, frames: int | None = None):
        d = self.cfg.data
        n = frames or d.num_frames
        if d.sampling == "dense":
            return DenseSampler(n, d.frame_interval)
        if d.sampling == "segment":
            return SegmentSampler(n)
        return UniformSampler(n)

    def train_transform(self, mean=None, std=None, pretrain: bool = False):
        d = self.cfg.data
        mean, std = mean or d.mean, std or d.std
        if pretrain or d.multiscale_crop:
            tc = TrainTransformConfig.pretrain(d.img_size, hflip=d.flip, mean=mean, std=std)
        else:
            tc = TrainTransformConfig(img_size=d.img_size, scale=d.scale, hflip=d.flip, mean=mean, std=std,
                                      randaugment=d.randaugment, random_erasing=d.random_erasing)
        return build_train_transform(tc)

    def eval_transform(self, mean=None, std=None):
        d = self.cfg.data
        return build_eval_transform(EvalTransformConfig(img_size=d.img_size, short_side=d.short_side,
                                                        mean=mean or d.mean, std=std or d.std))

    def views(self, training: bool) -> list[View]:
        tf = self.train_transform() if training else self.eval_transform()
        return [View(self.sampler(), tf, self.video_key)]

    def collate(self, items):
        return collate_videos(items)

    def batch_size(self, batch) -> int:
        return int(batch[self.video_key].shape[0])

    def skip_report(self, dataset, epoch: int) -> None:
        summary = self.skips.summary()
        if summary.count:
            log.warning("epoch %d: %s", epoch, summary)
        self.skips.reset()

    def on_train_mode(self, model: nn.Module) -> None:
        """Hook after ``model.train()`` (frozen parts go back to eval mode)."""

    # -- model
    def build_model(self) -> nn.Module:
        from . import create_model

        m = self.cfg.model
        return create_model(m.name, pretrained=m.pretrained, head=m.head, **self.model_overrides())

    def model_overrides(self) -> dict:
        return dict(self.cfg.model.overrides)

    def evaluate(self, model: nn.Module, val_set, d) -> dict[str, float]:
        return {}


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _eval_batches(val_set, batch_size: int, collate):
    loader = torch.utils.data.DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=collate)
    yield from loader


class MaskedVideoObjective(Objective):
    """VideoMAE pretraining: tube masks drawn in the main process from the (checkpointed) torch RNG."""

    metric_name = None

    def views(self, training: bool) -> list[View]:
        tf = self.train_transform(pretrain=True) if training else self.eval_transform()
        return [View(self.sampler(), tf, self.video_key)]

    def datasets(self):
        d = self.cfg.data
        train = VideoTextDataset(self._path(d.train), self.views(True), root=d.root or None, training=True,
                                 seed=self.cfg.run.seed, strict=d.strict) if str(d.train).endswith(".jsonl") else \
            VideoClassificationDataset(self._path(d.train), self.views(True), root=d.root or None, training=True,
                                       seed=self.cfg.run.seed, strict=d.strict)
        return train, None

    def loss(self, model, batch):
        from .models.videomae import tube_mask

        self.skips.update(batch)
        video = batch[self.video_key]
        core = getattr(model, "module", model)
        core = getattr(core, "_orig_mod", core)
        mask = tube_mask(video.shape[0], core.config.grid, self.cfg.data.mask_ratio, device=video.device)
        out = model(video, mask)
        return out["loss"], {}


class ClassifyObjective(Objective):
    """Supervised fine-tuning; several (list, classes) pairs are merged into one head by class name."""

    metric_name = "top1"

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.classes, self.train_samples = self._label_sets()
        d = cfg.data
        self.mixup = MixupCutmix(len(self.classes), d.mixup, d.cutmix, label_smoothing=d.label_smoothing) \
            if (d.mixup > 0 or d.cutmix > 0) else None

    def _label_sets(self):
        d = self.cfg.data
        pairs = [(d.train, d.classes)] + [tuple(p) for p in d.extra_train]
        union: list[str] = []
        index: dict[str, int] = {}
        samples = []
        for lst, cls_file in pairs:
            lst_path = self._path(lst)
            cls_path = self._path(cls_file) if cls_file else lst_path.with_name("classes.txt")
            names = read_classes(cls_path) if cls_path.exists() else None
            for name in names or []:  # every class of a named set, in its file's order: the first set keeps
                if name not in index:  # its label indices, so val/test lists with the same classes.txt agree
                    index[name] = len(union)
                    union.append(name)
            for s in read_classification_list(lst_path, d.root or None):
                name = names[s.label] if names else str(s.label)
                if name not in index:
                    index[name] = len(union)
                    union.append(name)
                samples.append(type(s)(path=s.path, label=index[name]))
        if len(pairs) > 1:
            log.info("merged %d label sets into %d classes", len(pairs), len(union))
        # Without class names keep the numeric order of the labels.
        if all(n.isdigit() for n in union):
            order = sorted(range(len(union)), key=lambda i: int(union[i]))
            remap = {old: new for new, old in enumerate(order)}
            samples = [type(s)(path=s.path, label=remap[s.label]) for s in samples]
            union = [union[i] for i in order]
        return union, samples

    def model_overrides(self) -> dict:
        return {"num_classes": len(self.classes), **self.cfg.model.overrides}

    def datasets(self):
        d = self.cfg.data
        train = VideoClassificationDataset(self.train_samples, self.views(True), classes=self.classes,
                                           training=True, seed=self.cfg.run.seed, strict=d.strict)
        val = None
        if d.val:
            val = VideoClassificationDataset(self._path(d.val), self.views(False), root=d.root or None,
                                             classes=self.classes, training=False, strict=True)
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
        return loss, {"train_top1": acc}

    @torch.no_grad()
    def evaluate(self, model, val_set, d) -> dict[str, float]:
        model.eval()
        correct1 = correct5 = n = 0
        for batch in _eval_batches(val_set, self.cfg.run.batch_size, self.collate):
            logits = self.logits(model, _to(batch, d.device)).float()
            labels = batch["label"].to(d.device)
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            correct1 += (top[:, 0] == labels).sum().item()
            correct5 += (top == labels[:, None]).any(-1).sum().item()
            n += labels.numel()
        return {"top1": correct1 / max(n, 1), "top5": correct5 / max(n, 1)}


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
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise TypeError(f"{type(model).__name__} has no `head` module to probe")
    return head


class ContrastiveObjective(Objective):
    """Video-text InfoNCE with the gathered loss, plus the caption loss when the model has a decoder."""

    metric_name = "r1"

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        from .losses import ClipLoss
        from .tokenizer import get_tokenizer

        self.tokenizer = get_tokenizer("clip")
        self.clip_loss = ClipLoss()

    def views(self, training: bool) -> list[View]:
        d = self.cfg.data
        tf = self.train_transform(d.mm_mean, d.mm_std) if training else self.eval_transform(d.mm_mean, d.mm_std)
        return [View(UniformSampler(d.num_frames) if d.sampling == "uniform" else self.sampler(), tf, self.video_key)]

    def datasets(self):
        d = self.cfg.data
        train = VideoTextDataset(self._path(d.train), self.views(True), root=d.root or None, training=True,
                                 seed=self.cfg.run.seed, strict=d.strict)
        val = VideoTextDataset(self._path(d.val), self.views(False), root=d.root or None, training=False,
                               strict=True) if d.val else None
        return train, val

    def collate(self, items):
        batch = collate_videos(items)
        ids = self.tokenizer(batch["caption"])
        # Drop the all-padding tail: with causal attention and end-token pooling the result is unchanged,
        # and the caption head no longer scores 77 positions over the whole vocabulary.
        length = int(ids.argmax(dim=1).max()) + 1  # the end token has the largest id in CLIP's vocabulary
        batch["text"] = ids[:, :max(length, 2)]
        return batch

    def loss(self, model, batch):
        from .losses import caption_loss

        self.skips.update(batch)
        out = model(batch[self.video_key], batch["text"])
        loss = self.clip_loss(out["video_emb"], out["text_emb"], out["logit_scale"])
        logs = {"contrastive": float(loss.detach())}
        if "caption_logits" in out and self.cfg.optim.caption_weight > 0:
            cap = caption_loss(out["caption_logits"], out["caption_targets"], pad_id=None)  # targets mark padding -100
            loss = loss + self.cfg.optim.caption_weight * cap
            logs["caption"] = float(cap.detach())
        return loss, logs

    @torch.no_grad()
    def evaluate(self, model, val_set, d) -> dict[str, float]:
        model.eval()
        vids, txts = [], []
        for batch in _eval_batches(val_set, self.cfg.run.batch_size, self.collate):
            vids.append(F.normalize(model.encode_video(batch[self.video_key].to(d.device)).float(), dim=-1))
            txts.append(F.normalize(model.encode_text(batch["text"].to(d.device)).float(), dim=-1))
        v, t = torch.cat(vids), torch.cat(txts)
        sim = t @ v.T  # one caption per video here (the first); the full protocol is in tasks.retrieval
        target = torch.arange(len(v), device=sim.device)
        t2v = (sim.argmax(1) == target).float().mean().item()
        v2t = (sim.argmax(0) == target).float().mean().item()
        return {"r1": (t2v + v2t) / 2, "t2v_r1": t2v, "v2t_r1": v2t}


class FusionObjective(ClassifyObjective):
    """CMA over two frozen backbones; only the fusion layers and head train.

    The dataset gives both views of each clip: ``video`` (dense frames,
    ImageNet statistics, for VideoMAE) and ``mm_video`` (uniform frames, CLIP
    statistics). With ``data.feature_cache`` set, the backbones run once over
    the training set (evaluation transforms, no augmentation) and training reads
    the cached features instead of videos.
    """

    def build_model(self) -> nn.Module:
        from .models import apply_overrides
        from .models.fusion import CMAFusion, FusionConfig

        m = self.cfg.model
        if not (m.mae_backbone and m.mm_backbone):
            raise ValueError("objective 'fusion' needs model.mae_backbone and model.mm_backbone (checkpoint dirs)")
        cfg = apply_overrides(FusionConfig(mae_backbone=m.mae_backbone, mm_backbone=m.mm_backbone,
                                           num_classes=len(self.classes)), dict(m.overrides), "fusion")
        self.model = CMAFusion(cfg)
        return self.model

    def views(self, training: bool) -> list[View]:
        d = self.cfg.data
        if training:
            tf_a, tf_m = self.train_transform(), self.train_transform(d.mm_mean, d.mm_std)
        else:
            tf_a, tf_m = self.eval_transform(), self.eval_transform(d.mm_mean, d.mm_std)
        return [View(self.sampler(), tf_a, "video"), View(UniformSampler(d.mm_num_frames), tf_m, "mm_video")]

    def datasets(self):
        train, val = super().datasets()
        if self.cfg.data.feature_cache:
            train = self._cache(train)
        return train, val

    def _cache(self, train):
        from .data.datasets import VideoClassificationDataset as VCD

        cache = Path(self.cfg.data.feature_cache)
        eval_set = VCD(self.train_samples, self.views(False), classes=self.classes, training=False,
                       strict=self.cfg.data.strict)
        return FeatureCache.build(self.model, eval_set, cache, self.cfg.run.batch_size)

    def collate(self, items):
        return collate_videos(items)

    def batch_size(self, batch) -> int:
        return int(batch["label"].shape[0])

    def logits(self, model, batch, video=None):
        if "mm_pooled" in batch and "mm_video" not in batch:  # cached features
            feats = {k: v for k, v in batch.items() if k.startswith(("mae_", "mm_")) and isinstance(v, torch.Tensor)}
            return model.forward_features_cached(feats)
        return model(batch["video"] if video is None else video, batch.get("mm_video"))


class FeatureCache(torch.utils.data.Dataset):
    """Backbone features of a fixed (un-augmented) pass, one safetensors file per sample."""

    def __init__(self, files: list[Path]):
        self.files = files

    @classmethod
    @torch.no_grad()
    def build(cls, model, dataset, directory: Path, batch_size: int) -> FeatureCache:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        files = [directory / f"{i:07d}.safetensors" for i in range(len(dataset))]
        todo = [i for i, f in enumerate(files) if not f.exists()]
        if todo:
            sub = torch.utils.data.Subset(dataset, todo)
            loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, collate_fn=collate_videos)
            done = 0
            for batch in loader:
                feats = model.backbone_features(batch["video"], batch["mm_video"], all_streams=True)
                for j in range(len(batch["label"])):
                    item = {k: v[j].contiguous() for k, v in feats.items()}
                    item["label"] = batch["label"][j]
                    tmp = files[todo[done]].with_suffix(".tmp")
                    save_file(item, str(tmp))
                    tmp.replace(files[todo[done]])
                    done += 1
        return cls(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        from safetensors.torch import load_file

        item = load_file(str(self.files[index]))
        item["label"] = int(item["label"])
        return item


OBJECTIVES: dict[str, type[Objective]] = {
    "mae": MaskedVideoObjective,
    "classify": ClassifyObjective,
    "linear_probe": LinearProbeObjective,
    "contrastive": ContrastiveObjective,
    "fusion": FusionObjective,
}


def make_objective(cfg: TrainConfig) -> Objective:
    return OBJECTIVES[cfg.objective](cfg)
