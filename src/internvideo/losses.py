"""Losses of the multimodal model: gathered symmetric InfoNCE and captioning cross-entropy.

Contrastive loss across processes ("local loss", as open_clip's ``local_loss``
with ``gather_with_grad``): every rank gathers all ranks' embeddings, but only
scores its own rows — its videos against every caption and its captions against
every video — so the logits are ``(B_local, B_global)`` instead of
``(B_global, B_global)``. The gather passes gradients back to the rank that owns
each embedding (the backward pass sums every rank's gradient for it). The
per-rank loss averaged over ranks equals the full-batch loss, and gradients
averaged over ranks (what DistributedDataParallel does) equal the full-batch
gradients, so training matches one process holding the whole batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .models.caption import IGNORE_INDEX


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` along dim 0 whose backward returns, to each rank, the sum of all ranks' gradients for its shard."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        ctx.rank, ctx.size = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        # Every rank's loss touched every shard; the owner needs the sum. all_reduce works on any backend.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows of ``x`` (equal batch sizes per rank), differentiable; ``x`` itself outside distributed runs."""
    if not _distributed():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"contrastive loss needs the same batch size on every rank, got {[int(s) for s in sizes]} "
                         "(use drop_last=True in the data loader)")
    return _GatherWithGrad.apply(x)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE between video and text embeddings with a learnable temperature.

    ``forward(video_emb, text_emb, logit_scale)`` takes projected, unnormalised
    embeddings ``(B, D)`` and the **log** scale parameter (the model's
    ``logit_scale``, initialised at ``ln(1/0.07)``). Embeddings are L2-normalised
    and the scale ``exp(logit_scale)`` is clamped at ``max_scale`` (100, as CLIP),
    which also stops its gradient once it is reached. Under ``torch.distributed``
    the loss is the gathered "local loss" described in the module docstring.
    """

    def __init__(self, max_scale: float = 100.0):
        super().__init__()
        self.max_scale = max_scale

    def forward(self, video_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        if video_emb.shape != text_emb.shape:
            raise ValueError(f"video and text embeddings differ in shape: {tuple(video_emb.shape)} vs "
                             f"{tuple(text_emb.shape)} (one caption per video expected)")
        # Similarities in float32 even under autocast: exp(100 * cos) overflows bf16's precision budget.
        video = F.normalize(video_emb.float(), dim=-1)
        text = F.normalize(text_emb.float(), dim=-1)
        scale = logit_scale.float().exp().clamp(max=self.max_scale)
        all_video, all_text = gather_features(video), gather_features(text)
        rank = dist.get_rank() if _distributed() else 0
        n = video.shape[0]
        labels = torch.arange(rank * n, (rank + 1) * n, device=video.device)
        logits_per_video = scale * video @ all_text.t()
        logits_per_text = scale * text @ all_video.t()
        return (F.cross_entropy(logits_per_video, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int | None = 0) -> torch.Tensor:
    """Teacher-forced next-token cross-entropy, averaged over the scored positions.

    ``logits (B, L, vocab)``, ``targets (B, L)``. Positions whose target is
    ``pad_id`` or -100 are not scored. The model's ``caption_targets`` already
    mark padding with -100 (CLIP pads with id 0, which is also the token ``!``),
    so pass ``pad_id=None`` with them to keep real ``!`` tokens.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    targets = targets.long()
    if pad_id is not None and pad_id != IGNORE_INDEX:
        targets = targets.masked_fill(targets == pad_id, IGNORE_INDEX)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)

__all__ = ["ClipLoss", "IGNORE_INDEX", "caption_loss", "gather_features"]
