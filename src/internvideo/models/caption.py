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

from typing import Literal, Protocol

import torch
from torch import nn

from .layers import Activation, CrossBlock, KVCache, init_weights, run_blocks

IGNORE_INDEX = -100
Strategy = Literal["greedy", "beam"]


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

    def forward(self, text_tokens: torch.Tensor, pooled: torch.Tensor,
                cache: list[KVCache] | None = None) -> torch.Tensor:
        """Next-token logits ``(B, L, vocab)``; position ``i`` predicts token ``i + 1``.

        ``cache`` (one :class:`KVCache` per layer, for decoding): ``text_tokens`` continue the cached positions.
        """
        return self.head(self.features(text_tokens, pooled, cache))

    def features(self, text_tokens: torch.Tensor, pooled: torch.Tensor,
                 cache: list[KVCache] | None = None) -> torch.Tensor:
        """The normalised states the LM head reads ``(B, L, width)`` (for a head over part of the vocabulary)."""
        if cache is None:
            x = run_blocks(self.blocks, text_tokens, self.grad_checkpointing, context=pooled, is_causal=True)
        else:
            x = text_tokens
            for blk, layer_cache in zip(self.blocks, cache, strict=True):
                x = blk(x, context=pooled, is_causal=True, cache=layer_cache)
        return self.norm(x)


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


# ----------------------------------------------------------------------------- decoding


class Stepper(Protocol):
    """What the searches drive: a model that extends every row by some tokens and scores the next one."""

    def step(self, new_ids: torch.Tensor) -> torch.Tensor:
        """Append ``new_ids (R, n)`` to each row's prefix; next-token logits ``(R, vocab)``."""
        ...

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (may repeat rows: beams copy their parent's prefix)."""
        ...


def _pad(rows: list[list[int]], start: int, device: torch.device) -> torch.Tensor:
    """``(B, 1 + longest)``: the start id, each row's ids, zeros after (CLIP's padding)."""
    out = torch.zeros(len(rows), 1 + max(len(r) for r in rows), dtype=torch.long, device=device)
    out[:, 0] = start
    for i, r in enumerate(rows):
        out[i, 1:1 + len(r)] = torch.tensor(r, dtype=torch.long, device=device)
    return out


def greedy_search(stepper: Stepper, batch: int, start: int, end: int, max_len: int,
                  device: torch.device) -> torch.Tensor:
    """The most likely next token at every step, up to ``max_len`` tokens or the end token (included)."""
    new = torch.full((batch, 1), start, dtype=torch.long, device=device)
    rows: list[list[int]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = stepper.step(new).argmax(dim=-1)
        for i in (~done).nonzero().flatten().tolist():
            rows[i].append(int(nxt[i]))
        done |= nxt == end
        if bool(done.all()):
            break
        new = nxt.unsqueeze(1)
    return _pad(rows, start, device)


def beam_search(stepper: Stepper, batch: int, start: int, end: int, max_len: int, device: torch.device,
                num_beams: int = 4, length_penalty: float = 1.0) -> torch.Tensor:
    """Beam search: the hypothesis of highest ``sum log p / length ** length_penalty``.

    ``length`` counts the generated tokens, end token included; ``length_penalty``
    above 0 favours longer captions, below 0 shorter ones. A video is finished
    once ``num_beams`` hypotheses have ended (early stopping, as in Hugging Face's
    ``early_stopping=True``), so one beam is exactly greedy search. Hypotheses
    still running at ``max_len`` compete as they are. Same output layout as
    :func:`greedy_search`.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    w = num_beams
    stepper.reorder(torch.arange(batch, device=device).repeat_interleave(w))
    scores = torch.full((batch, w), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start as the same prefix: only one may expand at the first step
    prefixes: list[list[int]] = [[] for _ in range(batch * w)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    new = torch.full((batch * w, 1), start, dtype=torch.long, device=device)
    for _ in range(max_len):
        logp = torch.log_softmax(stepper.step(new).float(), dim=-1)
        vocab = logp.shape[-1]
        top_scores, top_index = (scores.reshape(-1, 1) + logp).reshape(batch, w * vocab).topk(2 * w, dim=1)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        next_scores = torch.full((batch, w), float("-inf"), device=device)
        source = torch.arange(batch * w, device=device)  # finished videos keep their rows; they score -inf
        tokens = torch.zeros(batch * w, dtype=torch.long, device=device)
        next_prefixes = list(prefixes)
        for b in range(batch):
            if done[b]:
                continue
            kept = 0
            for rank, (score, index) in enumerate(zip(top_scores[b], top_index[b])):
                parent, token = b * w + index // vocab, index % vocab
                if score == float("-inf"):
                    break
                if token == end:
                    # An end token below the top num_beams would not have survived as a beam either.
                    if rank < w:
                        hyp = prefixes[parent] + [end]
                        finished[b].append((score / len(hyp) ** length_penalty, hyp))
                    continue
                row = b * w + kept
                next_scores[b, kept], source[row], tokens[row] = score, parent, token
                next_prefixes[row] = prefixes[parent] + [token]
                kept += 1
                if kept == w:
                    break
            done[b] = len(finished[b]) >= w
        if all(done):
            break
        prefixes, scores = next_prefixes, next_scores
        stepper.reorder(source)
        new = tokens.unsqueeze(1)
    best = []
    for b in range(batch):
        hyps = list(finished[b])
        if not done[b]:
            hyps += [(float(scores[b, k]) / max(len(prefixes[b * w + k]), 1) ** length_penalty, prefixes[b * w + k])
                     for k in range(w) if scores[b, k] > float("-inf")]
        best.append(max(hyps, key=lambda h: h[0])[1])
    return _pad(best, start, device)


__all__ = ["CaptionDecoder", "IGNORE_INDEX", "Stepper", "Strategy", "beam_search", "caption_targets",
           "greedy_search"]
