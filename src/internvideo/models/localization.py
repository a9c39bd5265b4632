"""ActionFormer-style temporal action localization over pre-extracted video features.

The design of ActionFormer (Zhang, Wu, Li, ECCV 2022; the detector InternVideo
feeds its features to for THUMOS14 / ActivityNet / HACS / FineAction):

* **embedding**: ``arch[0]`` 1-D convolutions (kernel 3) with channel
  LayerNorm and ReLU project the ``(T, input_dim)`` feature sequence to
  ``embed_dim``; optionally a fixed sinusoid position table is added;
* **encoder**: ``arch[1]`` transformer blocks at full resolution, then
  ``arch[2]`` pyramid levels, each halving the time axis in one more block.
  Every block uses local self-attention over time (``window`` wide) built on
  the project's shared :class:`~internvideo.models.layers.Block`. How a level
  halves time is ``downsample``: ``"attention"`` is ActionFormer's
  (:class:`ConvAttentionBlock`: every block's q / k / v pass a depthwise
  convolution and a LayerNorm, strided 2 in the pyramid levels, and the skip
  path is max-pooled), ``"maxpool"`` ours (the level max-pools, kernel 3
  stride 2, then applies a plain block; no convolutions inside attention);
* **heads**, shared across levels: a classification head (convs + per-class
  logits, prior-probability bias init, sigmoid focal loss) and a regression
  head (convs + 2 distances to start/end in units of the level's stride, with
  a learnable scale per level and ReLU, DIoU-1D loss);
* **targets**: a moment is positive for an action when it lies within
  ``center_sample_radius`` strides of the action's centre (and inside it),
  and its largest distance to the boundaries falls in the level's regression
  range; the shortest such action wins. Losses are normalised by an EMA of
  the number of positives (ActionFormer's ``loss_normalizer``);
* **inference**: per level, scores above ``pre_nms_thresh``, the
  ``pre_nms_topk`` best (moment, class) pairs, segments shorter than
  ``duration_thresh`` dropped, then (Soft-)NMS over all levels.

Time is measured on the feature grid: moment ``i`` of level 0 sits at ``i``;
level ``l`` has stride ``2**l``. :func:`grid_to_seconds` converts with the
feature stride, the frames per feature window and the frame rate, as
ActionFormer does (a feature's time is the centre of its window).

NMS and Soft-NMS (:func:`nms_1d`, :func:`soft_nms_1d`, :func:`batched_nms`)
are vectorised torch ports of ActionFormer's C++ ``nms_1d_cpu`` extension: each
iteration is a handful of tensor operations over all candidates, and the loop
runs only as many times as segments are kept.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Block, sinusoid_table

NMSMethod = Literal["soft", "hard", "none"]
Downsample = Literal["attention", "maxpool"]

__all__ = [
    "LocalizerConfig", "ActionLocalizer", "ConvAttentionBlock", "sigmoid_focal_loss", "diou_loss_1d", "nms_1d", "soft_nms_1d",
    "segment_voting", "batched_nms", "grid_to_seconds", "seconds_to_grid", "fuse_video_scores", "NAMED_CONFIGS",
    "MODEL_CLASSES",
]


# ----------------------------------------------------------------------------- losses


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
                       ) -> torch.Tensor:
    """Summed focal loss (Lin et al.) of independent sigmoid outputs; ``targets`` may be soft."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Summed Distance-IoU loss of segments given as (left, right) distances from the same point ``(N, 2)``.

    ``1 - IoU + (centre distance / enclosing length)^2``; both inputs must be >= 0.
    """
    lp, rp = pred[:, 0], pred[:, 1]
    lg, rg = target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    centre = 0.5 * (rp - lp - rg + lg)
    return (1.0 - iou + centre.square() / enclosing.clamp(min=eps).square()).sum()


# ----------------------------------------------------------------------------- NMS


def _iou_row(x1: torch.Tensor, x2: torch.Tensor, area: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """tIoU of candidate ``i`` (a 0-d index tensor: no host sync) against all; lengths carry ``+ 1e-6``."""
    inter = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp_(min=0)
    return inter.div_(area[i] + area - inter)


def nms_1d(segments: torch.Tensor, scores: torch.Tensor, iou_threshold: float, labels: torch.Tensor | None = None,
           max_num: int | None = None) -> torch.Tensor:
    """Greedy NMS of 1-D segments ``(N, 2)``: indices kept, in descending score order.

    A segment is suppressed by a kept, higher-scoring one (of the same label,
    when ``labels`` is given) with tIoU >= ``iou_threshold``. Lengths get
    ``1e-6`` added as in ActionFormer's kernel. Equal scores keep input order.
    ``max_num`` stops after that many kept segments (the same result as cutting
    the full list). Each kept segment costs a few tensor operations over all
    candidates and no host synchronisation (the end is checked every 16).
    """
    n = scores.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    segs = segments[order].to(torch.promote_types(segments.dtype, torch.float32))
    x1, x2 = segs[:, 0].contiguous(), segs[:, 1].contiguous()
    area = x2 - x1 + 1e-6
    same = None if labels is None else labels[order]
    alive = torch.ones(n, dtype=torch.bool, device=scores.device)
    limit = n if max_num is None else min(n, max_num)
    kept = torch.empty(limit, dtype=torch.long, device=scores.device)
    valid = torch.empty(limit, dtype=torch.bool, device=scores.device)
    for k in range(limit):
        i = torch.argmax(alive.view(torch.uint8))  # the best remaining: alive ones are in sorted order
        kept[k], valid[k] = i, alive[i]
        hit = _iou_row(x1, x2, area, i) >= iou_threshold
        if same is not None:
            hit &= same == same[i]
        alive &= ~hit
        alive[i] = False
        if k % 16 == 15 and not bool(alive.any()):
            kept, valid = kept[:k + 1], valid[:k + 1]
            break
    return order[kept[valid]]


def soft_nms_1d(segments: torch.Tensor, scores: torch.Tensor, sigma: float = 0.5, min_score: float = 1e-3,
                labels: torch.Tensor | None = None, max_num: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian Soft-NMS of 1-D segments: ``(indices, decayed scores)``, best first.

    Repeatedly takes the highest (current) score, then multiplies every
    remaining score by ``exp(-tIoU^2 / sigma)`` with the taken segment (only
    those of its label, when ``labels`` is given) and drops those that fall
    below ``min_score`` -- the semantics of ActionFormer's ``softnms`` kernel
    (method 2). The taken scores never increase, so ``max_num`` stops the loop
    early with the same result as cutting the full list. Equal scores are
    taken lowest index first. Taken and dropped candidates are held at -inf
    (the decay is >= exp(-1 / sigma) > 0, so they stay there); each pick is
    an argmax and one row of decays, without host synchronisation.
    """
    n = scores.numel()
    empty = torch.zeros(0, dtype=torch.long, device=scores.device)
    if n == 0:
        return empty, scores.new_zeros(0)
    dtype = torch.promote_types(scores.dtype, torch.float32)  # float64 stays float64
    x1, x2 = segments[:, 0].to(dtype).contiguous(), segments[:, 1].to(dtype).contiguous()
    area = x2 - x1 + 1e-6
    current = scores.to(dtype).clone()
    limit = n if max_num is None else min(n, max_num)
    picks = torch.empty(limit, dtype=torch.long, device=scores.device)
    picked = torch.empty(limit, dtype=dtype, device=scores.device)
    for k in range(limit):
        i = torch.argmax(current)
        picks[k], picked[k] = i, current[i]
        current[i] = -math.inf
        weight = _iou_row(x1, x2, area, i).square_().div_(-sigma).exp_()
        if labels is not None:
            weight.masked_fill_(labels != labels[i], 1.0)
        current.mul_(weight)
        current.masked_fill_(current < min_score, -math.inf)
        if k % 16 == 15 and bool(current[torch.argmax(current)] == -math.inf):
            picks, picked = picks[:k + 1], picked[:k + 1]
            break
    valid = picked > -math.inf
    return picks[valid], picked[valid].to(scores.dtype)


def segment_voting(kept: torch.Tensor, segments: torch.Tensor, scores: torch.Tensor, threshold: float
                   ) -> torch.Tensor:
    """Refine each kept segment as the score-weighted mean of all candidates overlapping it by tIoU >= threshold."""
    inter = (torch.minimum(kept[:, None, 1], segments[None, :, 1])
             - torch.maximum(kept[:, None, 0], segments[None, :, 0])).clamp(min=0)
    union = (kept[:, 1] - kept[:, 0])[:, None] + (segments[:, 1] - segments[:, 0])[None, :] - inter
    weights = (inter / union >= threshold).to(scores.dtype) * scores[None, :]
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights @ segments


def batched_nms(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *, method: NMSMethod = "soft",
                iou_threshold: float = 0.1, sigma: float = 0.5, min_score: float = 1e-3, max_num: int = 200,
                multiclass: bool = True, voting_thresh: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ActionFormer's post-processing: (Soft-)NMS per class or over all, optional voting, best ``max_num``.

    Returns ``(segments, scores, labels)`` sorted by descending score.
    Segment voting (``voting_thresh > 0``) applies to class-agnostic NMS only,
    as in ActionFormer.
    """
    if method == "none" or scores.numel() == 0:
        order = torch.sort(scores, descending=True, stable=True).indices[:max_num]
        return segments[order], scores[order], labels[order]
    per_class = labels if multiclass else None
    if method == "soft":
        idx, new_scores = soft_nms_1d(segments, scores, sigma=sigma, min_score=min_score, labels=per_class,
                                      max_num=max_num)
    elif method == "hard":
        pool = scores > min_score if min_score > 0 else torch.ones_like(scores, dtype=torch.bool)
        where = torch.nonzero(pool).flatten()
        idx = where[nms_1d(segments[where], scores[where], iou_threshold,
                           None if per_class is None else per_class[where], max_num)]
        new_scores = scores[idx]
    else:
        raise ValueError(f"method must be 'soft', 'hard' or 'none', not {method!r}")
    kept = segments[idx]
    if not multiclass and voting_thresh > 0 and idx.numel():
        kept = segment_voting(kept.float(), segments.float(), scores.float(), voting_thresh).to(segments.dtype)
    return kept, new_scores, labels[idx]


def fuse_video_scores(segments: torch.Tensor, scores: torch.Tensor, class_scores: torch.Tensor, top_k: int = 2
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ActivityNet protocol: class-agnostic segments x the video's ``top_k`` classes from an external classifier.

    Every segment is repeated for each of the video's ``top_k`` best classes,
    scored ``sqrt(segment score * class score)`` (ActionFormer's
    ``postprocess_results``). Returns ``(segments, scores, labels)``.
    """
    k = min(top_k, class_scores.numel())
    cls_score, cls_idx = torch.sort(class_scores.float(), descending=True, stable=True)
    cls_score, cls_idx = cls_score[:k], cls_idx[:k]
    fused = torch.sqrt(cls_score[:, None] * scores.float()[None, :]).flatten()
    return segments.repeat(k, 1), fused, cls_idx[:, None].expand(k, scores.numel()).flatten()


# ----------------------------------------------------------------------------- time


def grid_to_seconds(t: torch.Tensor, feat_stride: float, window_frames: float, fps: float) -> torch.Tensor:
    """Feature-grid positions -> seconds: ``(t * stride + window / 2) / fps`` (window centres)."""
    return (t * feat_stride + 0.5 * window_frames) / fps


def seconds_to_grid(s: torch.Tensor, feat_stride: float, window_frames: float, fps: float) -> torch.Tensor:
    return (s * fps - 0.5 * window_frames) / feat_stride


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass
class LocalizerConfig:
    """ActionFormer's hyper-parameters; defaults are its THUMOS14 (I3D) recipe, the names its config's."""

    input_dim: int = 2048
    num_classes: int = 20
    embed_dim: int = 512
    num_heads: int = 4
    embed_kernel_size: int = 3
    arch: tuple[int, int, int] = (2, 2, 5)  # embedding convs, full-resolution blocks, pyramid levels after them
    window: int | tuple[int, ...] = 19  # local attention width per level (<= 1: global)
    downsample: Downsample = "attention"  # ActionFormer's conv attention, or "maxpool" (ours; see the module doc)
    mlp_ratio: float = 4.0
    head_dim: int = 512
    head_layers: int = 3  # including the output conv
    head_kernel_size: int = 3
    regression_range: tuple[tuple[float, float], ...] = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))
    max_seq_len: int = 2304  # the position table's length (training crops to it)
    use_abs_pe: bool = False
    drop: float = 0.1
    drop_path: float = 0.1
    # training
    center_sample_radius: float | None = 1.5  # None: every moment inside an action is positive
    cls_prior_prob: float = 0.01
    loss_weight: float = 1.0
    label_smoothing: float = 0.0
    init_loss_norm: float = 100.0
    # inference
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    duration_thresh: float = 0.05
    nms_method: NMSMethod = "soft"
    iou_threshold: float = 0.1
    nms_sigma: float = 0.5
    min_score: float = 0.001
    max_seg_num: int = 200
    multiclass_nms: bool = True
    voting_thresh: float = 0.7
    class_names: tuple[str, ...] = ()  # label order, saved with the model so its predictions can be named

    def __post_init__(self) -> None:
        self.arch = tuple(self.arch)
        self.class_names = tuple(self.class_names)
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for num_classes={self.num_classes}")
        self.regression_range = tuple(tuple(r) for r in self.regression_range)
        levels = self.arch[2] + 1
        if len(self.regression_range) != levels:
            raise ValueError(f"regression_range needs one (min, max) per pyramid level ({levels}), got "
                             f"{len(self.regression_range)}")
        if self.downsample not in ("attention", "maxpool"):
            raise ValueError(f"downsample must be 'attention' (ActionFormer's) or 'maxpool' (ours), "
                             f"not {self.downsample!r}")
        if not isinstance(self.window, int):
            self.window = tuple(self.window)
            if len(self.window) != levels:
                raise ValueError(f"window needs one width per pyramid level ({levels}), got {len(self.window)}")

    @property
    def num_levels(self) -> int:
        return self.arch[2] + 1

    def windows(self) -> tuple[int, ...]:
        return (self.window,) * self.num_levels if isinstance(self.window, int) else tuple(self.window)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, T)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class MaskedConv1d(nn.Conv1d):
    """A same-length 1-D convolution whose output is zeroed at padded positions (``mask`` ``(B, T)``)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, bias: bool = True):
        super().__init__(in_dim, out_dim, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * mask[:, None, :].to(x.dtype)


class ConvAttentionBlock(Block):
    """ActionFormer's ``TransformerBlock`` with (local) ``MaskedMHCA``: the time axis shrinks inside attention.

    ``forward(x (B, T, D), mask (B, T)) -> (x (B, T/stride, D), mask (B, T/stride))``.
    After ``norm1`` each of q, k, v has its own depthwise convolution (kernel
    ``stride + 1``, or 3 at stride 1; padding ``kernel // 2``; no bias) and
    LayerNorm, then its third of the shared ``qkv`` projection; the mask keeps
    every ``stride``-th position (the reference's nearest-neighbour
    interpolation) and zeroes the convolutions' output, the attention output and
    the MLP branch at padded positions. The skip path is max-pooled (kernel
    ``stride + 1``, padding ``(stride + 1) // 2``) and masked. As in the
    reference, the convolutions see the block's normalised input past a video's
    end (the LayerNorm of the padding), not zeros: a video that fills its batch
    exactly (the reference pads every video to ``max_seq_len``) sees the
    convolution's zero padding there instead. Parameter names follow the
    reference's (``query_conv``, ``key_norm``, ...) where the shared block has
    none of its own.
    """

    def __init__(self, dim: int, num_heads: int, stride: int = 1, window: int | None = None, mlp_ratio: float = 4.0,
                 drop: float = 0.0, drop_path: float = 0.0, init_values: float | None = None):
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias="qkv", drop=drop, drop_path=drop_path,
                         init_values=init_values, norm_eps=1e-5, window=window)
        if stride != 1 and stride % 2:
            raise ValueError(f"stride must be 1 or even (ActionFormer's kernel stride + 1 is then odd), got {stride}")
        self.stride = stride
        kernel = stride + 1 if stride > 1 else 3
        for name in ("query", "key", "value"):
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, kernel, stride, kernel // 2, groups=dim, bias=False))
            setattr(self, f"{name}_norm", nn.LayerNorm(dim, eps=1e-5))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        s = self.stride
        if x.shape[1] % s:
            raise ValueError(f"sequence length {x.shape[1]} is not a multiple of the stride {s}")
        mask = mask[:, ::s]
        keep = mask[..., None].to(x.dtype)
        h = self.norm1(x).transpose(1, 2)
        q, k, v = (norm(conv(h).transpose(1, 2) * keep) for conv, norm in (
            (self.query_conv, self.query_norm), (self.key_conv, self.key_norm), (self.value_conv, self.value_norm)))
        y = self.attn.forward_qkv(q, k, v, key_mask=mask) * keep
        if s > 1:
            x = F.max_pool1d(x.transpose(1, 2), s + 1, s, (s + 1) // 2).transpose(1, 2)
        x = x * keep + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x)) * keep
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y), mask


class ConvHead(nn.Module):
    """``layers - 1`` conv + LayerNorm + ReLU stages, then an output conv; shared by every level."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, layers: int, kernel_size: int):
        super().__init__()
        self.convs = nn.ModuleList(MaskedConv1d(in_dim if i == 0 else dim, dim, kernel_size, bias=False)
                                   for i in range(layers - 1))
        self.norms = nn.ModuleList(ChannelNorm(dim) for _ in range(layers - 1))
        self.out = MaskedConv1d(dim if layers > 1 else in_dim, out_dim, kernel_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, mask)))
        return self.out(x, mask)


class ActionLocalizer(nn.Module):
    """ActionFormer-style detector over feature sequences (see the module docstring).

    ``forward(feats (B, T, D), mask (B, T)) -> {"cls_logits", "offsets", "masks"}``,
    each a list over levels of ``(B, T_l, C)`` / ``(B, T_l, 2)`` / ``(B, T_l)``;
    ``T`` must be a multiple of :attr:`time_divisor` (:meth:`pad` does it).
    :meth:`loss` and :meth:`predict` work on those outputs.
    """

    config_class = LocalizerConfig

    def __init__(self, config: LocalizerConfig | None = None, **overrides):
        super().__init__()
        config = dataclasses.replace(config or LocalizerConfig(), **overrides)
        self.config = c = config
        self.embed = nn.ModuleList(MaskedConv1d(c.input_dim if i == 0 else c.embed_dim, c.embed_dim,
                                                c.embed_kernel_size, bias=False) for i in range(c.arch[0]))
        self.embed_norm = nn.ModuleList(ChannelNorm(c.embed_dim) for _ in range(c.arch[0]))
        if c.use_abs_pe:
            # ActionFormer scales the table by 1/sqrt(dim) so that it does not swamp the features.
            self.register_buffer("pos_embed", sinusoid_table(c.max_seq_len, c.embed_dim) / c.embed_dim ** 0.5,
                                 persistent=False)
        windows = c.windows()

        # Layer scale only with drop path: ActionFormer's AffineDropPath (scale init 1e-4) exists only then.
        init_values = 1e-4 if c.drop_path > 0 else None

        def block(level: int) -> Block:
            if c.downsample == "attention":
                return ConvAttentionBlock(c.embed_dim, c.num_heads, 2 if level else 1, windows[level], c.mlp_ratio,
                                          c.drop, c.drop_path, init_values)
            return Block(c.embed_dim, c.num_heads, c.mlp_ratio, qkv_bias="qkv", drop=c.drop, drop_path=c.drop_path,
                         init_values=init_values, norm_eps=1e-5, window=windows[level])

        self.stem = nn.ModuleList(block(0) for _ in range(c.arch[1]))
        self.branch = nn.ModuleList(block(level) for level in range(1, c.num_levels))
        self.level_norms = nn.ModuleList(nn.LayerNorm(c.embed_dim) for _ in range(c.num_levels))
        self.cls_head = ConvHead(c.embed_dim, c.head_dim, c.num_classes, c.head_layers, c.head_kernel_size)
        self.reg_head = ConvHead(c.embed_dim, c.head_dim, 2, c.head_layers, c.head_kernel_size)
        self.reg_scale = nn.Parameter(torch.ones(c.num_levels))
        self.register_buffer("loss_normalizer", torch.tensor(float(c.init_loss_norm)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d)) and m.bias is not None:
                nn.init.zeros_(m.bias)
        # Start every class at the prior probability so the focal loss is not swamped by easy negatives.
        nn.init.constant_(self.cls_head.out.bias, -math.log((1 - self.config.cls_prior_prob) /
                                                            self.config.cls_prior_prob))

    @property
    def time_divisor(self) -> int:
        return 2 ** (self.config.num_levels - 1)

    def pad(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``(T_i, D)`` sequences: ``(B, T, D)`` zero-padded to a multiple of :attr:`time_divisor`, mask."""
        d = self.time_divisor
        length = max(max(f.shape[0] for f in feats), 1)
        length = -(-length // d) * d
        out = feats[0].new_zeros(len(feats), length, feats[0].shape[1])
        mask = torch.zeros(len(feats), length, dtype=torch.bool, device=feats[0].device)
        for i, f in enumerate(feats):
            out[i, :f.shape[0]] = f
            mask[i, :f.shape[0]] = True
        return out, mask

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, list[torch.Tensor]]:
        c = self.config
        b, t, d = feats.shape
        if d != c.input_dim:
            raise ValueError(f"features have width {d}, the model expects input_dim={c.input_dim}")
        if t % self.time_divisor:
            raise ValueError(f"sequence length {t} is not a multiple of {self.time_divisor} (use .pad())")
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=feats.device)
        x = feats.transpose(1, 2)  # (B, D, T) for the convolutions
        for conv, norm in zip(self.embed, self.embed_norm):
            x = F.relu(norm(conv(x, mask)))
        x = x.transpose(1, 2)  # (B, T, D) for the transformer blocks
        if c.use_abs_pe:
            pe = self.pos_embed
            if t > pe.shape[1]:  # longer than training: stretch the table, as ActionFormer does at test time
                pe = F.interpolate(pe.transpose(1, 2), size=t, mode="linear", align_corners=False).transpose(1, 2)
            x = x + pe[:, :t] * mask[..., None].to(x.dtype)
        conv_attention = c.downsample == "attention"
        for blk in self.stem:
            x = blk(x, mask)[0] if conv_attention else blk(x, key_mask=mask)
        levels, masks = [x], [mask]
        for blk in self.branch:
            if conv_attention:
                x, mask = blk(x, mask)
            else:
                # Zeroed padding before pooling; the mask keeps every second position.
                x = F.max_pool1d((x * mask[..., None].to(x.dtype)).transpose(1, 2), 3, 2, 1).transpose(1, 2)
                mask = mask[:, ::2]
                x = blk(x, key_mask=mask)
            levels.append(x)
            masks.append(mask)
        cls_logits, offsets = [], []
        for level, (x, m) in enumerate(zip(levels, masks)):
            x = (self.level_norms[level](x) * m[..., None].to(x.dtype)).transpose(1, 2)
            cls_logits.append(self.cls_head(x, m).transpose(1, 2))
            offsets.append(F.relu(self.reg_scale[level] * self.reg_head(x, m)).transpose(1, 2))
        return {"cls_logits": cls_logits, "offsets": offsets, "masks": masks}

    # -------------------------------------------------------------------- targets and loss

    def points(self, lengths: Sequence[int], device: torch.device) -> torch.Tensor:
        """``(sum T_l, 4)``: position on the level-0 grid, regression range low/high, stride."""
        rows = []
        for level, n in enumerate(lengths):
            stride = 2 ** level
            lo, hi = self.config.regression_range[level]
            t = torch.arange(n, device=device, dtype=torch.float32) * stride
            rows.append(torch.stack([t, torch.full_like(t, lo), torch.full_like(t, hi), torch.full_like(t, stride)], 1))
        return torch.cat(rows)

    def targets(self, points: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One video's targets: classes ``(P, C)`` (0/1) and stride-normalised distances ``(P, 2)``."""
        c = self.config
        num_pts = points.shape[0]
        if segments.numel() == 0:
            return points.new_zeros(num_pts, c.num_classes), points.new_zeros(num_pts, 2)
        t, lo, hi, stride = points[:, 0:1], points[:, 1:2], points[:, 2:3], points[:, 3:4]
        start, end = segments[None, :, 0], segments[None, :, 1]
        dist = torch.stack([t - start, end - t], dim=-1)  # (P, N, 2)
        if c.center_sample_radius is not None:
            centre = 0.5 * (start + end)
            radius = stride * c.center_sample_radius
            inside = (t - torch.maximum(centre - radius, start) > 0) & (torch.minimum(centre + radius, end) - t > 0)
        else:
            inside = dist.min(dim=-1).values > 0
        reach = dist.max(dim=-1).values
        in_range = (reach >= lo) & (reach <= hi)
        lengths = (end - start).expand(num_pts, -1).masked_fill(~(inside & in_range), math.inf)
        shortest, which = lengths.min(dim=1)
        # Actions of (nearly) equal length at one moment all give it their class (THUMOS has such repeats).
        chosen = (lengths <= shortest[:, None] + 1e-3) & torch.isfinite(lengths)
        cls = (chosen.to(points.dtype) @ F.one_hot(labels, c.num_classes).to(points.dtype)).clamp(max=1.0)
        reg = dist[torch.arange(num_pts, device=points.device), which] / stride
        return cls, reg

    def loss(self, out: dict[str, list[torch.Tensor]], segments: Sequence[torch.Tensor],
             labels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Focal + DIoU losses; ``segments[i]`` ``(N_i, 2)`` on the feature grid, ``labels[i]`` ``(N_i,)`` long.

        Returns ``loss`` (the total), ``cls_loss``, ``reg_loss``, ``num_pos``.
        Updates the positive-count EMA while training.
        """
        c = self.config
        masks = torch.cat(out["masks"], dim=1)
        pts = self.points([m.shape[1] for m in out["masks"]], masks.device)
        cls_t, reg_t = zip(*(self.targets(pts, s.to(pts), l.to(masks.device)) for s, l in zip(segments, labels)))
        cls_t, reg_t = torch.stack(cls_t), torch.stack(reg_t)
        pos = (cls_t.sum(-1) > 0) & masks
        num_pos = pos.sum()
        if self.training:
            with torch.no_grad():
                self.loss_normalizer.mul_(0.9).add_(0.1 * num_pos.clamp(min=1).to(self.loss_normalizer))
        norm = self.loss_normalizer
        logits = torch.cat(out["cls_logits"], dim=1)[masks]
        target = cls_t[masks]
        if c.label_smoothing > 0:
            target = target * (1 - c.label_smoothing) + c.label_smoothing / (c.num_classes + 1)
        cls_loss = sigmoid_focal_loss(logits.float(), target.float()) / norm
        pred = torch.cat(out["offsets"], dim=1)[pos].float()
        reg_loss = diou_loss_1d(pred, reg_t[pos].float()) / norm if pred.numel() else pred.sum() * 0
        return {"loss": cls_loss + c.loss_weight * reg_loss, "cls_loss": cls_loss.detach(),
                "reg_loss": reg_loss.detach(), "num_pos": num_pos}

    # -------------------------------------------------------------------- inference

    @torch.no_grad()
    def candidates(self, out: dict[str, list[torch.Tensor]], index: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Video ``index``'s pre-NMS candidates: segments (feature grid) ``(N, 2)``, scores, labels."""
        c = self.config
        segs, scores, labels = [], [], []
        for level, (logits, offsets, mask) in enumerate(zip(out["cls_logits"], out["offsets"], out["masks"])):
            stride = 2 ** level
            prob = (torch.sigmoid(logits[index].float()) * mask[index, :, None]).flatten()
            keep = torch.nonzero(prob > c.pre_nms_thresh).flatten()
            prob = prob[keep]
            top = torch.sort(prob, descending=True, stable=True).indices[:c.pre_nms_topk]
            prob, keep = prob[top], keep[top]
            pt, cls = keep // c.num_classes, keep % c.num_classes
            off = offsets[index][pt].float()
            t = pt.float() * stride
            seg = torch.stack([t - off[:, 0] * stride, t + off[:, 1] * stride], dim=1)
            long_enough = seg[:, 1] - seg[:, 0] > c.duration_thresh
            segs.append(seg[long_enough])
            scores.append(prob[long_enough])
            labels.append(cls[long_enough])
        return torch.cat(segs), torch.cat(scores), torch.cat(labels)

    @torch.no_grad()
    def predict(self, out: dict[str, list[torch.Tensor]], index: int, class_scores: torch.Tensor | None = None,
                top_k_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Video ``index``'s detections on the feature grid after NMS: ``(segments, scores, labels)``.

        With ``class_scores`` (``(K,)``, an external video-level classifier; the
        ActivityNet protocol) the model's scores are treated as class-agnostic
        proposals (label 0 of a one-class model, or the best class) and fused
        with the video's ``top_k_classes`` classes (:func:`fuse_video_scores`).
        """
        c = self.config
        segs, scores, labels = self.candidates(out, index)
        segs, scores, labels = batched_nms(segs, scores, labels, method=c.nms_method, iou_threshold=c.iou_threshold,
                                           sigma=c.nms_sigma, min_score=c.min_score, max_num=c.max_seg_num,
                                           multiclass=c.multiclass_nms, voting_thresh=c.voting_thresh)
        if class_scores is not None:
            segs, scores, labels = fuse_video_scores(segs, scores, class_scores.to(scores.device), top_k_classes)
        return segs, scores, labels


#: Recipes of ActionFormer's released configs (``configs/thumos_i3d.yaml``, ``configs/anet_tsp.yaml`` at 61ea7eb;
#: ``downsample="attention"``, the ``convTransformer`` backbone of ``libs/modeling/backbones.py``);
#: ``input_dim`` / ``num_classes`` follow the data (the ``localize`` objective sets them). In the one model registry
#: (``internvideo.create_model``, ``internvideo models``); they read feature sequences, not clips.
NAMED_CONFIGS: dict[str, tuple[type[nn.Module], LocalizerConfig]] = {
    "actionformer_thumos14": (ActionLocalizer, LocalizerConfig()),
    "actionformer_activitynet": (ActionLocalizer, LocalizerConfig(
        input_dim=512, num_classes=1, embed_dim=256, head_dim=256, num_heads=4, window=(7, 7, 7, 7, 7, -1),
        max_seq_len=192, use_abs_pe=True, init_loss_norm=200, label_smoothing=0.1, loss_weight=2.0,
        voting_thresh=0.9, max_seg_num=100, multiclass_nms=False, nms_sigma=0.75, duration_thresh=0.001,
        pre_nms_topk=2000)),
    # A small model for the synthetic world and tests: 4 levels over sequences of tens of features. Its pyramid
    # max-pools (ours): on the demo's long videos ActionFormer's conv attention scored the same average mAP
    # within noise (+0.7 +- 1.5 over 10 seeds) at 17-30 % more time per step (docs/localization.md).
    "actionformer_small": (ActionLocalizer, LocalizerConfig(
        input_dim=64, num_classes=10, embed_dim=64, head_dim=64, num_heads=4, arch=(2, 1, 3), window=9,
        downsample="maxpool",
        regression_range=((0, 4), (4, 8), (8, 16), (16, 10000)), max_seq_len=64, drop=0.0, drop_path=0.0,
        init_loss_norm=20)),
}
MODEL_CLASSES: dict[str, type[nn.Module]] = {"ActionLocalizer": ActionLocalizer}
