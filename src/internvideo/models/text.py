"""CLIP's text transformer: the text tower of the multimodal model.

Token + learned position embeddings, pre-norm blocks under a causal mask
(QuickGELU, LayerNorm eps 1e-5 as CLIP), a final LayerNorm, pooling at the end
token and a linear projection into the joint space. The end token has the
largest id in CLIP's vocabulary, so its position is ``ids.argmax(-1)`` as in
OpenAI's code.

Because the mask is causal, the per-position outputs also serve as the
unimodal half of the CoCa-style caption decoder (position ``i`` has only seen
tokens ``<= i``), so one pass over a caption gives both the contrastive
embedding and the decoder's input.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import Activation, Block, KVCache, init_weights, run_blocks


def init_clip_blocks(blocks: nn.ModuleList, width: int) -> None:
    """CLIP's initialisation of a block stack: std shrinking with width, and with depth on the output projections.

    Much larger than ViT's 0.02 at small widths, which matters for training from scratch: with 0.02 a fresh
    tiny encoder barely mixes tokens, so every input maps to nearly the same pooled feature.
    """
    depth = max(len(blocks), 1)
    proj_std = width ** -0.5 * (2 * depth) ** -0.5
    for blk in blocks:
        blk.apply(init_weights)
        nn.init.normal_(blk.attn.qkv.weight, std=width ** -0.5)
        nn.init.normal_(blk.attn.proj.weight, std=proj_std)
        nn.init.normal_(blk.mlp.fc1.weight, std=(2 * width) ** -0.5)
        nn.init.normal_(blk.mlp.fc2.weight, std=proj_std)


class TextTransformer(nn.Module):
    """``ids (B, L) -> embedding (B, embed_dim)``; ``forward_tokens`` gives all positions.

    ``mask_embedding`` is InternVideo's learnable vector that replaces the token
    embeddings at masked positions (masked-language-style training, official
    ``text_mask_embedding``); it is unused unless ``masked`` is passed.
    """

    def __init__(self, vocab_size: int = 49408, context_length: int = 77, width: int = 512, layers: int = 12,
                 heads: int = 8, embed_dim: int = 512, mlp_ratio: float = 4.0, norm_eps: float = 1e-5,
                 act: Activation = "quick_gelu", mask_embedding: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        self.context_length = context_length
        self.width = width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.pos_embed = nn.Parameter(torch.zeros(context_length, width))
        self.mask_embedding = nn.Parameter(torch.zeros(1, 1, width)) if mask_embedding else None
        rates = torch.linspace(0, drop_path_rate, layers, device="cpu").tolist() if layers else []
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, qkv_bias="qkv", norm_eps=norm_eps, act=act, drop_path=rates[i])
            for i in range(layers)
        )
        self.ln_final = nn.LayerNorm(width, eps=norm_eps)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        self.grad_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        # CLIP's scheme: small embeddings, attention/MLP std shrinking with width and depth.
        self.apply(init_weights)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        if self.mask_embedding is not None:
            nn.init.normal_(self.mask_embedding, std=0.02)
        init_clip_blocks(self.blocks, self.width)
        nn.init.normal_(self.proj.weight, std=self.width ** -0.5)

    def forward_tokens(self, ids: torch.Tensor, masked: torch.Tensor | None = None,
                       cache: list[KVCache] | None = None) -> torch.Tensor:
        """Per-position features after ``ln_final``: ``(B, L, width)``; ``L <= context_length``.

        ``masked`` (bool ``(B, L)``) swaps those positions' token embeddings for the mask embedding.
        ``cache`` (one :class:`KVCache` per block, for decoding): ``ids`` continue the cached positions.
        """
        if ids.ndim != 2:
            raise ValueError(f"expected token ids of shape (B, L), got {tuple(ids.shape)}")
        start = len(cache[0]) if cache else 0
        length = ids.shape[1]
        if start + length > self.context_length:
            raise ValueError(f"{start + length} tokens exceed the context length {self.context_length}")
        x = self.token_embedding(ids)
        if masked is not None:
            if self.mask_embedding is None:
                raise ValueError("this text encoder was built without a mask embedding (mask_embedding=False)")
            x = torch.where(masked.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        x = x + self.pos_embed[start:start + length]
        if cache is None:
            x = run_blocks(self.blocks, x, self.grad_checkpointing, is_causal=True)
        else:
            for blk, layer_cache in zip(self.blocks, cache, strict=True):
                x = blk(x, is_causal=True, cache=layer_cache)
        return self.ln_final(x)

    def pool(self, tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Projected feature at each sequence's end token (the largest id)."""
        eot = ids.argmax(dim=-1)
        return self.proj(tokens[torch.arange(tokens.shape[0], device=tokens.device), eot])

    def forward(self, ids: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        return self.pool(self.forward_tokens(ids, masked), ids)


__all__ = ["TextTransformer", "init_clip_blocks"]
