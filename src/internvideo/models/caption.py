"""CoCa-style caption decoder of the multimodal model.

The video tokens of the encoder's last layer (every frame, CLS and patches) are
attention-pooled into a fixed set of learnable queries (paper, L/14: 256); a
stack of decoder layers (paper: 4) then reads the text: causal self-attention
over the caption, cross-attention to the pooled queries, MLP; an LM head gives
next-token logits. The decoder's input is the causal text encoder's per-position
output (CoCa's "unimodal" half), so a caption is encoded once for both the
contrastive and the captioning objective.

The official InternVideo decoder uses PaLM-style parallel blocks with rotary
embeddings; this one is built from the project's shared blocks instead (same
role and sizes, not weight-compatible).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import Activation, CrossBlock, init_weights, run_blocks

IGNORE_INDEX = -100


class CaptionDecoder(nn.Module):
    def __init__(self, width: int, vision_width: int, heads: int, layers: int, num_queries: int, vocab_size: int,
                 mlp_ratio: float = 4.0, norm_eps: float = 1e-5, act: Activation = "quick_gelu"):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, width) * width ** -0.5)
        # The shared attention reads keys/values with the query width, so wider video tokens are projected first.
        self.video_proj = nn.Linear(vision_width, width) if vision_width != width else nn.Identity()
        self.pool = CrossBlock(width, heads, mlp_ratio, qkv_bias="qkv", norm_eps=norm_eps, act=act)
        self.pool_norm = nn.LayerNorm(width, eps=norm_eps)
        self.blocks = nn.ModuleList(
            CrossBlock(width, heads, mlp_ratio, qkv_bias="qkv", norm_eps=norm_eps, act=act, self_attn=True)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.head = nn.Linear(width, vocab_size)
        self.grad_checkpointing = False
        self.apply(init_weights)

    def pool_video(self, video_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, vision_width)`` video tokens -> ``(B, num_queries, width)`` pooled queries."""
        context = self.video_proj(video_tokens)
        queries = self.queries.to(context.dtype).expand(context.shape[0], -1, -1)
        return self.pool_norm(self.pool(queries, context))

    def forward(self, text_tokens: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, L, vocab)``; position ``i`` predicts token ``i + 1``."""
        x = run_blocks(self.blocks, text_tokens, self.grad_checkpointing, context=pooled, is_causal=True)
        return self.head(self.norm(x))


def caption_targets(ids: torch.Tensor) -> torch.Tensor:
    """Teacher-forcing targets for ``ids`` (B, L) in CLIP's layout: ``ids[:, 1:]``, ignored after the end token.

    Padding is ignored by position rather than by id, because CLIP pads with id
    0, which is also the token ``!``. The end token (the largest id) is itself a
    target, so the decoder learns where to stop.
    """
    targets = ids[:, 1:].clone()
    end = ids.argmax(dim=-1, keepdim=True)
    position = torch.arange(1, ids.shape[1], device=ids.device).unsqueeze(0)
    targets[position > end] = IGNORE_INDEX
    return targets


__all__ = ["CaptionDecoder", "IGNORE_INDEX", "caption_targets"]
