"""The one set of transformer building blocks shared by every model in the project.

VideoMAE, the CLIP-style video and text encoders, the caption decoder and the
cross-model fusion all build from the classes here. Module and parameter names
follow the official VideoMAE code (``qkv``, ``q_bias``/``v_bias``, ``proj``,
``norm1``/``norm2``, ``mlp.fc1``/``fc2``, ``gamma_1``/``gamma_2``) so that the
official checkpoints load with few renames; other layouts (HF, OpenAI CLIP) are
mapped by the converters in :mod:`internvideo.checkpoints`.
"""
from __future__ import annotations

import os
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import hardware

BiasMode = Literal["qv", "qkv", "none"]
Activation = Literal["gelu", "quick_gelu"]


def _to_bias_mode(qkv_bias: bool | str) -> BiasMode:
    # Configs speak the official constructors' language (``qkv_bias=True`` means
    # the q/v-only bias of VideoMAE); strings pick a layout explicitly.
    if qkv_bias is True:
        return "qv"
    if qkv_bias is False:
        return "none"
    if qkv_bias not in ("qv", "qkv", "none"):
        raise ValueError(f"qkv_bias must be True, False, 'qv', 'qkv' or 'none', got {qkv_bias!r}")
    return qkv_bias  # type: ignore[return-value]


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _no_autograd(t: torch.Tensor) -> bool:
    return not (torch.is_grad_enabled() and t.requires_grad)


def _activate(act: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``act(h)``, computed in place when autograd will not need ``h``.

    The MLP's hidden activations are a block's largest tensors (4x the width);
    at inference, overwriting them instead of allocating another saves that much
    peak memory and the page faults of a fresh buffer.
    """
    if not _no_autograd(h):
        return act(h)
    if type(act) is nn.GELU:
        return torch.ops.aten.gelu_(h, approximate=act.approximate)
    if type(act) is QuickGELU:
        return h.mul_(torch.sigmoid_(h * 1.702))
    return act(h)


def _add_residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x + y`` for a branch output ``y`` that nothing else holds; in place into ``y`` without autograd.

    Same bits as ``x + y`` (addition commutes); under autocast ``y`` may be bf16
    while the residual stream is fp32, and then a new fp32 tensor is needed anyway.
    """
    if _no_autograd(y) and _no_autograd(x) and y.dtype == x.dtype and y.shape == x.shape:
        return y.add_(x)
    return x + y


def make_activation(name: Activation) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"unknown activation {name!r}; expected 'gelu' or 'quick_gelu'")


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class TubeletEmbed(nn.Module):
    """Video → tokens with a Conv3d whose kernel equals its stride.

    ``tubelet_size=1`` gives per-frame patches (CLIP's 2-D patch embedding inflated
    to 3-D). Output is ``(B, T' * H' * W', D)`` in (time, row, column) order.
    """

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.in_chans = in_chans
        self.proj = nn.Conv3d(
            in_chans, embed_dim, kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size), bias=bias,
        )

    def grid(self, video_shape: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (t, h, w) for a ``(B, C, T, H, W)`` shape; ValueError if it does not tile."""
        if len(video_shape) != 5:
            raise ValueError(
                f"expected a video tensor of shape (B, C, T, H, W) (5 dims), got {len(video_shape)} dims {tuple(video_shape)}"
            )
        _, c, t, h, w = video_shape
        if c != self.in_chans:
            raise ValueError(f"expected {self.in_chans} channels in dim 1 of (B, C, T, H, W), got shape {tuple(video_shape)}")
        if t % self.tubelet_size:
            raise ValueError(f"frame count T={t} is not divisible by tubelet_size={self.tubelet_size}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"frame size {h}x{w} is not divisible by patch_size={self.patch_size}")
        return t // self.tubelet_size, h // self.patch_size, w // self.patch_size

    def forward(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``(B, N, D)``; with ``keep`` (bool ``(B, N)``, the same count per sample) only those.

        With ``keep`` the convolution becomes a matmul over just the gathered
        tubelets (kernel = stride makes them the same thing), so a pretraining
        encoder that keeps 10 % of the tokens does not embed the other 90 %.
        In bf16 on a CPU that emulates it, all tubelets go the matmul way too:
        there PyTorch's bf16 Conv3d falls back to a naive kernel 8x slower than
        the bf16 matmul (1.9 vs 0.23 s for ViT-B/16 16x224 on one core, forced AVX2).
        """
        t, h, w = self.grid(video.shape)
        if keep is None and not _emulated_bf16(video):
            return self.proj(video).flatten(2).transpose(1, 2)
        b, c = video.shape[:2]
        ts, p = self.tubelet_size, self.patch_size
        # A view (B, t, h, w, C, ts, p, p): indexing it copies only the kept tubelets.
        tubes = video.reshape(b, c, t, ts, h, p, w, p).permute(0, 2, 4, 6, 1, 3, 5, 7)
        if keep is None:
            patches = tubes.reshape(b, t * h * w, -1)
        else:
            bi, n = keep.nonzero(as_tuple=True)
            hw = h * w
            patches = tubes[bi, n // hw, (n % hw) // w, n % w].reshape(b, -1, c * ts * p * p)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


def _emulated_bf16(x: torch.Tensor) -> bool:
    """Whether ``x`` will be computed in bf16 (its dtype or CPU autocast) on a CPU without native bf16."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    bf16 = x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    return bf16 and not hardware.cpu_bf16().native


def _blocking(heads: int, rows: int, keys: int) -> tuple[int, int]:
    """(heads, query rows) per block: about 2M scores (4 MiB of bf16), the best of 0.5-4 MiB measured here.

    Long sequences get blocks of rows of one head; short ones (a CLIP frame's
    197 tokens) several heads per batched matmul, so that each matmul is large
    enough to keep both cores busy.
    """
    budget = 1 << 21
    block_rows = max(64, min(rows, budget // keys))
    return max(1, min(heads, budget // (block_rows * keys))), block_rows


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched matmul; a batch of one goes through ``mm``.

    ``mm`` takes transposed operands as they are, while ``bmm`` copies them;
    for the transposed probability and score blocks of the backward that copy
    costs about as much as the matmul.
    """
    if a.shape[0] == 1:
        return torch.mm(a[0], b[0]).unsqueeze(0)
    return torch.bmm(a, b)


class _BlockedAttention(torch.autograd.Function):
    """Softmax attention as plain matmuls over blocks of query rows.

    Why it exists: on CPUs with AVX-512 BF16 but no AMX, PyTorch's fused (flash)
    attention kernel runs bf16 no faster than fp32 (~90 GFLOP/s per core here),
    while bf16 matmuls reach ~420 (on CPUs that emulate bf16 they are the slow
    part instead: see :func:`cpu_bf16_attention`). A block of rows sees every
    key, so its softmax is exact and needs no running maximum; blocks are bounded (see :func:`_blocking`), so
    nothing of size N x N is materialised for long sequences. The backward
    recomputes the probabilities block by block (as flash attention does) and
    keeps only q, k, v and the output. Scores are rounded to bf16 before the
    softmax, a rounding SDPA's kernel does not make: the attention's own error
    is up to a few times SDPA's in bf16, while a whole ViT's output stays as
    close to fp32 as under HF's autocast (the benchmarks report both).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        b, h, n, _ = q.shape
        heads, rows = _blocking(h, n, k.shape[-2])
        # Written as (B, N, H, d) so that the caller's transpose(1, 2).flatten(2) is a free view.
        out = q.new_empty(b, n, h, q.shape[-1])
        with torch.autocast(q.device.type, enabled=False):
            for i in range(b):
                for j in range(0, h, heads):
                    kt, vj = k[i, j:j + heads].transpose(1, 2), v[i, j:j + heads]
                    for r in range(0, n, rows):
                        # The scale goes on the small query block (exact for head_dim 64: a power of two).
                        p = torch.softmax(_bmm(q[i, j:j + heads, r:r + rows] * scale, kt), dim=-1)
                        out[i, r:r + rows, j:j + heads] = _bmm(p, vj).transpose(0, 1)
        out = out.transpose(1, 2)
        # q, k, v are usually views of one qkv projection: saving them keeps one buffer alive, no copies.
        ctx.save_for_backward(q, k, v, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, out = ctx.saved_tensors
        b, h, n, d = q.shape
        m = k.shape[-2]
        heads, rows = _blocking(h, n, m)
        dq = q.new_empty(b, n, h, d)
        dk = q.new_empty(b, m, h, d)
        dv = q.new_empty(b, m, h, d)
        with torch.autocast(q.device.type, enabled=False):
            for i in range(b):
                for j in range(0, h, heads):
                    hs = slice(j, j + heads)
                    kj, vj = k[i, hs], v[i, hs]
                    # Key and value gradients sum over all row blocks: accumulate in fp32.
                    dk_acc = q.new_zeros(kj.shape, dtype=torch.float32)
                    dv_acc = torch.zeros_like(dk_acc)
                    for r in range(0, n, rows):
                        qs, gr = q[i, hs, r:r + rows] * ctx.scale, grad_out[i, hs, r:r + rows]
                        p = torch.softmax(_bmm(qs, kj.transpose(1, 2)), dim=-1)
                        dv_acc += _bmm(p.transpose(1, 2), gr)
                        # delta = rowsum(dO * O), the softmax backward's correction, in fp32.
                        delta = (gr.float() * out[i, hs, r:r + rows].float()).sum(-1, keepdim=True)
                        # dS = P * (dO V^T - delta), in place on the bf16 block (mixed-dtype
                        # elementwise ops are an order of magnitude slower on CPU).
                        ds = _bmm(gr, vj.transpose(1, 2)).sub_(delta.to(q.dtype)).mul_(p)
                        dq[i, r:r + rows, hs] = _bmm(ds, kj).mul_(ctx.scale).transpose(0, 1)
                        dk_acc += _bmm(ds.transpose(1, 2), qs)
                    dk[i, :, hs] = dk_acc.transpose(0, 1)
                    dv[i, :, hs] = dv_acc.transpose(0, 1)
        return dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2), None


ATTENTION_ENV = "INTERNVIDEO_CPU_BF16_ATTENTION"


def cpu_bf16_attention() -> Literal["blocked", "sdpa"]:
    """The kernel of bf16 attention on CPU: ``blocked`` where bf16 matmuls are native, else ``sdpa``.

    Where bf16 is emulated the blocked path's plain bf16 matmuls are the slow
    part (4x slower than SDPA for a whole ViT on AVX2), while SDPA's fused kernel
    computes in fp32 inside. ``INTERNVIDEO_CPU_BF16_ATTENTION=blocked|sdpa``
    forces either (tests, benchmarks); ``auto`` or unset asks :mod:`.hardware`.
    """
    forced = os.environ.get(ATTENTION_ENV, "auto")
    if forced == "auto":
        return "blocked" if hardware.cpu_bf16().native else "sdpa"
    if forced not in ("blocked", "sdpa"):
        raise ValueError(f"{ATTENTION_ENV}={forced!r}: expected 'auto', 'blocked' or 'sdpa'")
    return forced  # type: ignore[return-value]


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on ``(B, H, N, d)``, with a faster bf16 path on CPUs with native bf16.

    There, bf16 without a mask, causality or dropout goes through
    :class:`_BlockedAttention` (1.6-2.5x faster than the fused kernel, forward
    and backward, once there are more than ~128 x 128 scores per head; below
    that the Python loop over blocks costs more than it saves); everything
    else, GPUs, ``torch.compile`` and CPUs that emulate bf16 included, uses
    SDPA unchanged (:func:`cpu_bf16_attention`).
    """
    if (q.device.type == "cpu" and q.dtype == torch.bfloat16 and attn_mask is None and not is_causal
            and dropout_p == 0.0 and q.ndim == 4 and q.shape[-2] * k.shape[-2] >= 128 * 128
            and not torch.compiler.is_compiling() and cpu_bf16_attention() == "blocked"):
        return _BlockedAttention.apply(q, k, v, q.shape[-1] ** -0.5)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)


class KVCache:
    """Keys and values of the positions a self-attention has already seen, for step-by-step decoding.

    One per attention layer. Without it each generated token re-runs the whole
    prefix; with it a step computes only the new positions' projections. Beam
    search reorders the cached rows with :meth:`reorder` when beams are re-ranked.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new positions ``(B, H, n, d)``; returns every position's keys and values."""
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
        self.k, self.v = k, v
        return k, v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search's surviving beams, in their new order)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                    key_mask: torch.Tensor | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """Self-attention of ``(B, H, N, d)`` in which query ``i`` sees keys ``j`` with ``|i - j| <= window // 2``.

    The sequence is cut into chunks of ``c >= window // 2`` positions; a chunk's
    queries attend to the keys of that chunk and its two neighbours (masked to
    the band), so the cost is ``O(N * 3c)`` instead of ``O(N^2)`` and the result
    equals full attention under the band mask. ``key_mask`` (bool ``(B, N)``,
    True = a real position) hides padding; a query with no visible key (a
    padded one) attends to its whole chunk neighbourhood instead of producing NaN.
    """
    b, h, n, d = q.shape
    radius = window // 2
    c = max(radius, 16)
    chunks = -(-n // c)
    pad = chunks * c - n
    valid = torch.ones(b, n, dtype=torch.bool, device=q.device) if key_mask is None else key_mask.to(torch.bool)
    # Keys padded by one chunk on each side so that every chunk has two neighbours.
    kp = F.pad(k, (0, 0, c, c + pad)).unfold(2, 3 * c, c).transpose(-1, -2)  # (B, H, chunks, 3c, d)
    vp = F.pad(v, (0, 0, c, c + pad)).unfold(2, 3 * c, c).transpose(-1, -2)
    kv_valid = F.pad(valid, (c, c + pad), value=False).unfold(1, 3 * c, c)  # (B, chunks, 3c)
    qi = torch.arange(c, device=q.device)[:, None]
    kj = torch.arange(3 * c, device=q.device)[None, :]
    band = (kj - c - qi).abs() <= radius  # (c, 3c): the same for every chunk
    mask = band & kv_valid[:, :, None, :]  # (B, chunks, c, 3c)
    mask = mask | ~mask.any(-1, keepdim=True)
    qc = F.pad(q, (0, 0, 0, pad)).view(b, h, chunks, c, d)
    out = F.scaled_dot_product_attention(qc, kp, vp, attn_mask=mask[:, None], dropout_p=dropout_p)
    return out.reshape(b, h, chunks * c, d)[:, :, :n]


class Attention(nn.Module):
    """Multi-head attention with one fused ``qkv`` projection on SDPA.

    ``bias="qv"`` is the official VideoMAE layout (projection without bias plus
    learnable ``q_bias``/``v_bias``; the key bias is fixed at zero), ``"qkv"`` the
    usual fully biased projection (CLIP), ``"none"`` no bias. Passing ``context``
    turns it into cross-attention: queries from ``x``, keys and values from
    ``context``, using the same fused weight (this is how CLIP-style
    ``nn.MultiheadAttention`` cross-attention is laid out). ``window`` makes
    self-attention local (:func:`local_attention`: each position sees the
    ``window // 2`` positions on either side; ActionFormer's temporal encoder);
    ``key_mask`` (bool ``(B, N)``, True = real) hides padded keys in either mode.
    """

    def __init__(self, dim: int, num_heads: int, bias: BiasMode | bool = "qv", attn_drop: float = 0.0,
                 proj_drop: float = 0.0, head_dim: int | None = None, window: int | None = None):
        super().__init__()
        self.window = window if window is not None and window > 1 else None
        bias = _to_bias_mode(bias)
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        if head_dim is None and dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        inner = self.head_dim * num_heads
        self.inner_dim = inner
        self.qkv = nn.Linear(dim, inner * 3, bias=bias == "qkv")
        if bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(inner))
            self.v_bias = nn.Parameter(torch.zeros(inner))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_bias(self) -> torch.Tensor | None:
        if self.q_bias is not None:
            return torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        return self.qkv.bias

    def _heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        # (B, L, n*H*d) -> n tensors (B, H, L, d)
        b, length, _ = t.shape
        return t.view(b, length, n, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                key_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """``cache`` (self-attention only): ``x`` holds the positions after those cached, which it also attends to."""
        bias = self.qkv_bias()
        if context is None:
            q, k, v = self._heads(F.linear(x, self.qkv.weight, bias), 3)
            if cache is not None:
                past = len(cache)
                k, v = cache.append(k, v)
                if past and is_causal:
                    # SDPA's is_causal aligns the mask top-left; new rows sit after ``past`` cached keys.
                    n = q.shape[-2]
                    if n > 1:
                        rows = torch.arange(n, device=q.device).unsqueeze(1) + past
                        attn_mask = rows >= torch.arange(past + n, device=q.device)
                    is_causal = False
        else:
            if cache is not None:
                raise ValueError("a key/value cache is for self-attention; cross-attention has no growing keys")
            inner = self.inner_dim
            w_q, w_kv = self.qkv.weight[:inner], self.qkv.weight[inner:]
            b_q, b_kv = (None, None) if bias is None else (bias[:inner], bias[inner:])
            q = self._heads(F.linear(x, w_q, b_q), 1)[0]
            k, v = self._heads(F.linear(context, w_kv, b_kv), 2)
        return self._attend(q, k, v, attn_mask, is_causal, key_mask, local=context is None)

    def forward_qkv(self, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor,
                    key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention whose queries, keys and values are projected from three inputs ``(B, N, dim)``.

        Each input goes through its third of the ``qkv`` projection; ``window`` and
        ``key_mask`` act as in :meth:`forward`. ActionFormer's convolutional
        attention gives each of q / k / v its own depthwise convolution first.
        """
        inner = self.inner_dim
        bias = self.qkv_bias()
        q, k, v = (self._heads(F.linear(x, self.qkv.weight[i * inner:(i + 1) * inner],
                                        None if bias is None else bias[i * inner:(i + 1) * inner]), 1)[0]
                   for i, x in enumerate((xq, xk, xv)))
        return self._attend(q, k, v, key_mask=key_mask)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False, key_mask: torch.Tensor | None = None, local: bool = True) -> torch.Tensor:
        """Heads ``(B, H, N, d)`` -> the projected output ``(B, N, dim)``."""
        dropout_p = self.attn_drop if self.training else 0.0
        if self.window is not None and local and attn_mask is None and not is_causal:
            out = local_attention(q, k, v, self.window, key_mask, dropout_p).transpose(1, 2).flatten(2)
            return self.proj_drop(self.proj(out))
        if key_mask is not None:
            keys = key_mask.to(torch.bool)[:, None, None, :]
            attn_mask = keys if attn_mask is None else attn_mask & keys
        out = scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p)
        out = out.transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, act: Activation = "gelu", drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = make_activation(act)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(_activate(self.act, self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    ``init_values`` enables layer scale (``gamma_1``/``gamma_2``, official names);
    ``drop_path`` is stochastic depth on both branches. The two residual branches
    are exposed separately so that models can insert modules between them (the
    multimodal encoder's local temporal modules).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: BiasMode | bool = "qv",
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 init_values: float | None = None, norm_eps: float = 1e-6, act: Activation = "gelu",
                 window: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop, window=window)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, drop=drop)
        self.drop_path = DropPath(drop_path)
        if init_values:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def attn_residual(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                      is_causal: bool = False, key_mask: torch.Tensor | None = None,
                      cache: KVCache | None = None) -> torch.Tensor:
        y = self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal, key_mask=key_mask, cache=cache)
        return _add_residual(x, self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y))

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm2(x))
        return _add_residual(x, self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False, key_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        return self.mlp_residual(self.attn_residual(x, attn_mask, is_causal, key_mask, cache))


class CrossBlock(nn.Module):
    """Pre-norm block in which queries ``x`` read a ``context`` sequence.

    ``x + cross_attn(norm_q(x), norm_kv(context))`` then ``x + mlp(norm2(x))``;
    with ``self_attn=True`` a (optionally causal) self-attention branch comes first
    (the caption decoder). With ``gated=True`` each branch is scaled by
    ``tanh(gate)`` with the gate starting at zero, so a fresh block is the identity
    (Flamingo-style, used by the cross-model fusion).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: BiasMode | bool = "qkv",
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-5,
                 act: Activation = "gelu", self_attn: bool = False, gated: bool = False):
        super().__init__()
        if self_attn:
            self.norm_self = nn.LayerNorm(dim, eps=norm_eps)
            self.self_attn = Attention(dim, num_heads, bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        else:
            self.norm_self = self.self_attn = None
        self.norm_q = nn.LayerNorm(dim, eps=norm_eps)
        self.norm_kv = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_attn = Attention(dim, num_heads, bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act=act, drop=drop)
        self.drop_path = DropPath(drop_path)
        if gated:
            self.gate_attn = nn.Parameter(torch.zeros(1))
            self.gate_mlp = nn.Parameter(torch.zeros(1))
        else:
            self.gate_attn = self.gate_mlp = None

    @staticmethod
    def _gate(g: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        return y if g is None else torch.tanh(g) * y

    def forward(self, x: torch.Tensor, context: torch.Tensor, is_causal: bool = False,
                attn_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        if self.self_attn is not None:
            x = x + self.drop_path(self.self_attn(self.norm_self(x), attn_mask=attn_mask, is_causal=is_causal,
                                                  cache=cache))
        x = x + self.drop_path(self._gate(self.gate_attn, self.cross_attn(self.norm_q(x), self.norm_kv(context))))
        return x + self.drop_path(self._gate(self.gate_mlp, self.mlp(self.norm2(x))))


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, grad_checkpointing: bool = False,
               **kwargs) -> torch.Tensor:
    """Apply blocks in order; with checkpointing, recompute activations in backward to save memory."""
    for blk in blocks:
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(blk, x, use_reentrant=False, **kwargs)
        else:
            x = blk(x, **kwargs)
    return x


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """The fixed 1-D sin/cos table of VideoMAE, ``(1, n_position, dim)``.

    Position index runs over the flattened (t, h, w) token grid, exactly as the
    official code, so tables are only meaningful for the grid they were made for.
    Computed in float64 (as the reference's numpy) and cast to float32.
    """
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angles = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float().unsqueeze(0)


def interpolate_pos_embed(pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int],
                          num_prefix_tokens: int = 0) -> torch.Tensor:
    """Resize a learnable position table ``(1, prefix + t*h*w, D)`` to another token grid.

    Grids are ``(t, h, w)`` (use ``t=1`` for image models). Space is resized
    bicubically per time slice and time linearly, the way fine-tuning at another
    resolution or frame count is usually done; prefix tokens (CLS) are kept.
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if old_grid == new_grid:
        return pos_embed
    t0, h0, w0 = old_grid
    t1, h1, w1 = new_grid
    d = pos_embed.shape[-1]
    expected = num_prefix_tokens + t0 * h0 * w0
    if pos_embed.shape[-2] != expected:
        raise ValueError(
            f"position table has {pos_embed.shape[-2]} tokens; grid {old_grid} with {num_prefix_tokens} prefix "
            f"tokens needs {expected}"
        )
    prefix = pos_embed[:, :num_prefix_tokens]
    grid = pos_embed[:, num_prefix_tokens:].reshape(1, t0, h0, w0, d).float()
    dtype = pos_embed.dtype
    if (h0, w0) != (h1, w1):
        x = grid[0].permute(0, 3, 1, 2)  # (t0, D, h0, w0)
        x = F.interpolate(x, size=(h1, w1), mode="bicubic", align_corners=False)
        grid = x.permute(0, 2, 3, 1)[None]
    if t0 != t1:
        x = grid[0].permute(1, 2, 3, 0).reshape(1, h1 * w1 * d, t0)  # time as the 1-D axis
        x = F.interpolate(x, size=t1, mode="linear", align_corners=False)
        grid = x.reshape(h1, w1, d, t1).permute(3, 0, 1, 2)[None]
    out = grid.reshape(1, t1 * h1 * w1, d).to(dtype)
    return torch.cat([prefix.to(dtype), out], dim=1)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """ViT initialisation: truncated normal linears, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "Attention", "Block", "CrossBlock", "DropPath", "KVCache", "Mlp", "QuickGELU", "TubeletEmbed",
    "count_parameters", "init_weights", "interpolate_pos_embed", "local_attention", "make_activation", "run_blocks",
    "scaled_dot_product_attention", "sinusoid_table",
]
