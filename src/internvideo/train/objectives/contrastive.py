"""``contrastive``: video-text InfoNCE with the gathered loss, plus the caption loss when the model has a decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...data.datasets import VideoTextDataset, collate_videos, read_video_text
from ...losses import ClipLoss, caption_loss
from ...tokenizer import get_tokenizer
from ..config import TrainConfig
from .base import VideoObjective


class ContrastiveObjective(VideoObjective):
    metric_name = "r1"

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.tokenizer = get_tokenizer("clip")
        self.clip_loss = ClipLoss()

    def model_overrides(self):
        overrides = super().model_overrides()
        if self.cfg.model.caption_vocab == "train":
            captions = [c for s in read_video_text(self.path(self.cfg.data.train), self.root) for c in s.captions]
            ids = self.tokenizer(captions)
            overrides["caption_vocab"] = tuple(torch.unique(ids[ids != 0]).tolist())
        return overrides

    def datasets(self):
        d = self.cfg.data
        train = VideoTextDataset(self.train_source(), self.views(True), root=self.root, training=True,
                                 seed=self.cfg.run.seed, strict=d.strict, decoded=self.decoded)
        val = VideoTextDataset(self.path(d.val), self.views(False), root=self.root, training=False,
                               strict=True, decoded=self.decoded) if d.val else None
        self.preload(train, val)
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
        self.skips.update(batch)
        out = model(batch[self.video_key], batch["text"])
        loss = self.clip_loss(out["video_emb"], out["text_emb"], out["logit_scale"])
        logs = {"contrastive": float(loss.detach())}
        if "caption_logits" in out and self.cfg.contrastive.caption_weight > 0:
            cap = caption_loss(out["caption_logits"], out["caption_targets"], pad_id=None)  # targets mark padding -100
            loss = loss + self.cfg.contrastive.caption_weight * cap
            logs["caption"] = float(cap.detach())
        return loss, logs

    @torch.no_grad()
    def evaluate(self, model, val_set, device) -> dict[str, float]:
        model.eval()
        vids, txts = [], []
        for batch in self.eval_batches(val_set, device):
            vids.append(F.normalize(model.encode_video(batch[self.video_key]).float(), dim=-1))
            txts.append(F.normalize(model.encode_text(batch["text"]).float(), dim=-1))
        v, t = torch.cat(vids), torch.cat(txts)
        sim = t @ v.T  # one caption per video here (the first); the full protocol is in tasks.retrieval
        target = torch.arange(len(v), device=sim.device)
        t2v = 100.0 * (sim.argmax(1) == target).float().mean().item()
        v2t = 100.0 * (sim.argmax(0) == target).float().mean().item()
        return {"r1": (t2v + v2t) / 2, "t2v_r1": t2v, "v2t_r1": v2t}
