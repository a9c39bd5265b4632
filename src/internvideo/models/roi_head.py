"""Spatiotemporal action detection (AVA): RoIAlign over the video encoder's token grid.

The InternVideo AVA model is the VideoMAE ViT with an RoI head (the official
code plugs VideoMAE into AlphAction's pipeline): tokens ``(B, T'H'W', D)`` →
final LayerNorm → grid ``(B, D, T', H', W')`` → mean over time → RoIAlign
(7 x 7 bins per person box) → max over the bins → dropout → linear; one
sigmoid per action (multi-label, BCE). ``head_type="acar"`` replaces the
linear layer by the official code's other option, the actor-context-actor
relation head (:class:`ACARHead`). Clips of another size than the configured
one (aspect-keeping test frames) get the position table resized to their grid.

:func:`roi_align` is written in torch, vectorised over boxes. It computes
exactly what torchvision / detectron2 ``ROIAlign`` computes (bilinear
samples, ``sampling_ratio`` points per bin side or ``ceil(bin size)`` when
``<= 0``, the ``aligned`` half-pixel shift, zero outside ``[-1, H] x [-1, W]``),
using that bilinear weights factor into a row part and a column part: per
box the pooled map is ``A_y @ F @ A_x^T`` with ``A_y (bins, H)`` and
``A_x (bins, W)`` summing the sample weights. All boxes of a clip share one
matmul for the rows and one batched matmul for the columns, so there is no
loop over boxes (only over the clips of a batch) and no compiled extension;
the gradient is that of the matmuls.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .layers import interpolate_pos_embed
from .videomae import VideoMAEConfig, VideoMAEEncoder

__all__ = ["roi_align", "RoIHeadConfig", "RoIActionHead", "ACARHead", "HR2O", "VideoMAEDetector",
           "VideoMAEDetectorConfig", "normalized_to_grid", "NAMED_CONFIGS", "MODEL_CLASSES"]


def _axis_weights(start: torch.Tensor, length: torch.Tensor, bins: int, grid: torch.Tensor,
                  size: int) -> torch.Tensor:
    """Bilinear weights of one axis summed over each bin's samples: ``(K, bins, size)``."""
    k = start.shape[0]
    g_max = max(int(grid.max()), 1)
    step = length / bins  # bin size
    b = torch.arange(bins, dtype=start.dtype, device=start.device)
    i = torch.arange(g_max, dtype=start.dtype, device=start.device)
    gf = grid.clamp(min=1).to(start.dtype)
    # sample position: start + bin * step + (i + 0.5) * step / grid
    pos = start[:, None, None] + b[None, :, None] * step[:, None, None] + \
        (i[None, None, :] + 0.5) * (step / gf)[:, None, None]
    used = i[None, None, :] < grid[:, None, None].to(start.dtype)
    inside = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low)
    keep = (used & inside).to(start.dtype)
    weights = torch.zeros(k, bins, size, dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, low.long(), (1 - frac) * keep)
    weights.scatter_add_(2, high.long(), frac * keep)
    return weights


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """RoIAlign: ``features (N, C, H, W)``, ``rois (K, 5)`` = (clip index, x1, y1, x2, y2) → ``(K, C, ph, pw)``.

    Box coordinates are in input units; ``spatial_scale`` maps them onto the
    feature grid (cell ``j`` spans ``[j, j + 1)``). ``aligned=True`` shifts by
    half a cell so a box's continuous coordinates line up with cell centres
    (detectron2's correction); ``False`` is the original Mask R-CNN rule
    (boxes at least one cell wide). ``sampling_ratio > 0``: that many samples
    per bin side; ``<= 0``: ``ceil(box side / bins)`` per box. No gradient
    flows into ``rois``.
    """
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    if features.ndim != 4:
        raise ValueError(f"features must be (N, C, H, W), got {tuple(features.shape)}")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be (K, 5) = (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}")
    n, c, h, w = features.shape
    k = rois.shape[0]
    if k == 0:
        return features.new_zeros(0, c, ph, pw)
    coords = rois.detach().to(device=features.device, dtype=torch.float64 if features.dtype == torch.float64
                              else torch.float32)
    batch = coords[:, 0].round().long()
    if int(batch.min()) < 0 or int(batch.max()) >= n:
        raise ValueError(f"roi batch indices must lie in [0, {n}), got [{int(batch.min())}, {int(batch.max())}]")
    shift = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (coords[:, j] * spatial_scale - shift for j in range(1, 5))
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    if sampling_ratio > 0:
        gy = gx = torch.full((k,), sampling_ratio, dtype=torch.long, device=coords.device)
    else:
        gy, gx = torch.ceil(rh / ph).long().clamp(min=0), torch.ceil(rw / pw).long().clamp(min=0)
    ay = _axis_weights(y1, rh, ph, gy, h)  # (K, ph, H)
    ax = _axis_weights(x1, rw, pw, gx, w)  # (K, pw, W)
    count = (gy * gx).clamp(min=1).to(coords.dtype)
    ay = (ay / count[:, None, None]).to(features.dtype)
    ax = ax.to(features.dtype)
    # One clip at a time, all of its boxes at once. Rows: (K_c * ph, H) @ (H, W * C); then columns as a batch of
    # (pw, W) @ (W, C) products, one per (box, bin row). Channels stay the wide, contiguous dimension of
    # both products, which keeps them efficient on a CPU.
    per_clip = features.permute(0, 2, 3, 1).reshape(n, h, w * c).unbind(0)  # one gradient buffer, not one per clip
    in_order = bool((batch[1:] >= batch[:-1]).all())  # batches from collate_ava list boxes clip by clip
    order = torch.arange(k, device=batch.device) if in_order else torch.argsort(batch, stable=True)
    clips, counts = torch.unique_consecutive(batch[order], return_counts=True)
    parts = []
    for clip, idx in zip(clips.tolist(), order.split(counts.tolist())):
        rows = (ay[idx].reshape(-1, h) @ per_clip[clip]).reshape(-1, w, c)  # (K_c * ph, W, C)
        cols = ax[idx].repeat_interleave(ph, dim=0)  # (K_c * ph, pw, W)
        parts.append(torch.bmm(cols, rows))  # (K_c * ph, pw, C)
    out = (torch.cat(parts) if len(parts) > 1 else parts[0]).reshape(k, ph, pw, c)
    if not in_order:
        out = out[torch.argsort(order)]
    return out.permute(0, 3, 1, 2)


def normalized_to_grid(rois: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(index, x1, y1, x2, y2) with coordinates as fractions of the frame → token-grid units."""
    scale = rois.new_tensor([1.0, width, height, width, height])
    return rois * scale


@dataclass
class RoIHeadConfig:
    """The RoI head; defaults follow the official VideoMAE AVA model (7 x 7, adaptive sampling)."""

    num_classes: int = 80
    roi_size: int = 7
    sampling_ratio: int = 0
    aligned: bool = True
    temporal_pool: str = "mean"  # "mean" (official) or "max"
    dropout: float = 0.5
    init_scale: float = 0.001  # head weights scaled at init, as the VideoMAE fine-tuning heads
    box_agnostic: bool = False  # pool the whole frame for every box: the baseline that ignores where a person is
    pre_norm: bool = False  # LayerNorm on the pooled box feature (a classifier's fc_norm can initialise it)
    head_type: str = "linear"  # "linear" or "acar" (actor-context-actor relations, :class:`ACARHead`)
    acar_hidden: int | None = None  # ACAR width (official: the embedding width)
    acar_depth: int = 2  # HR2O layers

    def __post_init__(self) -> None:
        if self.temporal_pool not in ("mean", "max"):
            raise ValueError(f"temporal_pool must be 'mean' or 'max', got {self.temporal_pool!r}")
        if self.head_type not in ("linear", "acar"):
            raise ValueError(f"head_type must be 'linear' or 'acar', got {self.head_type!r}")


class HR2O(nn.Module):
    """ACAR's high-order relation operator (``HR2O_NL``): at every position of the actor-context maps, each actor
    attends to all actors of its clip; the result goes through GroupNorm, ReLU, a conv and dropout 0.2 and is
    added back (InternVideo ``Spatial-Temporal-Action-Localization/modeling_finetune.py``, after ACAR-Net)."""

    def __init__(self, dim: int, kernel_size: int = 3, mlp_1x1: bool = False, dropout: float = 0.2):
        super().__init__()
        pad = kernel_size // 2
        self.conv_q = nn.Conv2d(dim, dim, kernel_size, padding=pad, bias=False)
        self.conv_k = nn.Conv2d(dim, dim, kernel_size, padding=pad, bias=False)
        self.conv_v = nn.Conv2d(dim, dim, kernel_size, padding=pad, bias=False)
        self.conv = nn.Conv2d(dim, dim, 1 if mlp_1x1 else kernel_size, padding=0 if mlp_1x1 else pad, bias=False)
        self.norm = nn.GroupNorm(1, dim)
        self.dp = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (n, C, h, w)``: the ``n`` actors of one clip."""
        q, k, v = self.conv_q(x), self.conv_k(x), self.conv_v(x)
        att = torch.einsum("ichw,jchw->ijhw", q, k).div(x.shape[1] ** 0.5).softmax(dim=1)  # over the other actors
        virtual = torch.einsum("ijhw,jchw->ichw", att, v)
        return x + self.dp(self.conv(torch.relu(self.norm(virtual))))


class ACARHead(nn.Module):
    """The ACAR head the official AVA code offers (``--head_type acar``; ``ACARHead`` in InternVideo's
    ``Spatial-Temporal-Action-Localization/modeling_finetune.py``, after ACAR-Net, Pan et al. 2021).

    Per clip, every actor's pooled feature is tiled over the context map (the time-averaged token grid) and
    concatenated with it: 1 x 1 conv, ReLU, 3 x 3 conv (no padding), ReLU, 3 x 3 max-pool stride 2, ``depth``
    :class:`HR2O` layers relating the actors of the clip, global average pool. The class scores read that and
    the actor's own feature (linear, ReLU) side by side. Parameter names are the official ones.
    """

    def __init__(self, dim: int, num_classes: int, hidden: int, depth: int = 2, dropout: float = 0.0,
                 init_scale: float = 1.0):
        super().__init__()
        self.hidden = hidden
        self.conv1 = nn.Conv2d(dim * 2, hidden, 1, bias=False)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, bias=False)
        self.downsample = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.hr2o = nn.Sequential(*[HR2O(hidden) for _ in range(depth)])
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden * 2, num_classes, bias=False)
        self.dp = nn.Dropout(dropout)
        # The official model re-initialises every Linear (trunc normal, std 0.02) after building the head,
        # which undoes its init_scale; init_scale 1 reproduces that.
        nn.init.trunc_normal_(self.fc1.weight, std=0.02)
        nn.init.trunc_normal_(self.fc2.weight, std=0.02)
        self.fc2.weight.data.mul_(init_scale)

    def forward(self, actors: torch.Tensor, clip_index: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``actors (K, D)`` pooled box features, ``clip_index (K,)``, ``context (B, D, H', W')`` → logits."""
        h, w = context.shape[-2:]
        if h < 3 or w < 3:
            raise ValueError(f"the ACAR head needs a token grid of at least 3 x 3, got {h} x {w}")
        high = actors.new_zeros(len(actors), self.hidden)
        for clip in torch.unique(clip_index).tolist():
            idx = torch.nonzero(clip_index == clip).flatten()
            n = len(idx)
            x = torch.cat([context[clip].expand(n, -1, -1, -1), actors[idx, :, None, None].expand(-1, -1, h, w)],
                          dim=1)
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            x = self.hr2o(self.downsample(x))
            high = high.index_copy(0, idx, x.mean(dim=(2, 3)).to(high.dtype))
        out = torch.cat([torch.relu(self.fc1(actors)), high], dim=1)
        return self.fc2(self.dp(out))


class RoIActionHead(nn.Module):
    """Token grid + person boxes → per-box action logits."""

    def __init__(self, embed_dim: int, grid: tuple[int, int, int], config: RoIHeadConfig):
        super().__init__()
        self.config, self.grid = config, tuple(grid)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6) if config.pre_norm else nn.Identity()
        self.drop = nn.Dropout(config.dropout)
        if config.head_type == "acar":
            self.fc = None
            self.acar = ACARHead(embed_dim, config.num_classes, config.acar_hidden or embed_dim,
                                 config.acar_depth, config.dropout, config.init_scale)
            return
        self.fc = nn.Linear(embed_dim, config.num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)
        self.fc.weight.data.mul_(config.init_scale)

    def context(self, tokens: torch.Tensor, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
        """The token grid pooled over time, ``(B, D, H', W')``; ``grid``: the tokens' ``(T', H', W')`` when the
        clip is not the configured size (aspect-keeping frames)."""
        t, h, w = grid or self.grid
        b, n, d = tokens.shape
        if n != t * h * w:
            raise ValueError(f"expected {t * h * w} tokens (grid {(t, h, w)}), got {n}")
        grid = tokens.reshape(b, t, h, w, d)
        grid = grid.mean(1) if self.config.temporal_pool == "mean" else grid.amax(1)
        return grid.permute(0, 3, 1, 2)

    def pooled(self, tokens: torch.Tensor, rois: torch.Tensor, grid: tuple[int, int, int] | None = None,
               context: torch.Tensor | None = None) -> torch.Tensor:
        """Per-box features ``(K, D)`` from tokens ``(B, T'H'W', D)`` and normalised ``rois (K, 5)``."""
        grid = self.context(tokens, grid) if context is None else context
        h, w = grid.shape[-2:]
        rois = rois.to(grid.dtype)
        if self.config.box_agnostic:
            rois = torch.cat([rois[:, :1], rois.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(len(rois), 4)], dim=1)
        regions = roi_align(grid, normalized_to_grid(rois, h, w), self.config.roi_size,
                            sampling_ratio=self.config.sampling_ratio, aligned=self.config.aligned)
        return regions.amax(dim=(2, 3))

    def forward(self, tokens: torch.Tensor, rois: torch.Tensor, grid: tuple[int, int, int] | None = None
                ) -> torch.Tensor:
        context = self.context(tokens, grid)
        actors = self.norm(self.pooled(tokens, rois, context=context))
        if self.fc is None:
            return self.acar(actors, rois[:, 0].round().long(), context)
        return self.fc(self.drop(actors))


@dataclass
class VideoMAEDetectorConfig(VideoMAEConfig):
    """VideoMAE trunk fields plus the RoI head's (see :class:`RoIHeadConfig`)."""

    num_classes: int = 80
    use_mean_pooling: bool = False  # the trunk ends in the token LayerNorm ``norm``, as the official AVA model
    roi_size: int = 7
    sampling_ratio: int = 0
    aligned: bool = True
    temporal_pool: str = "mean"
    head_dropout: float = 0.5
    box_agnostic: bool = False
    # LayerNorm on the pooled box feature; with use_mean_pooling=True (no token norm) the trunk and this norm
    # have the layout of a VideoMAE classifier's (fc_norm), which then initialises the whole head (from_classifier)
    head_norm: bool = False
    head_type: str = "linear"  # "acar": the official code's actor-context-actor relation head (ACARHead)
    acar_hidden: int | None = None
    acar_depth: int = 2

    def head(self) -> RoIHeadConfig:
        return RoIHeadConfig(num_classes=self.num_classes, roi_size=self.roi_size, sampling_ratio=self.sampling_ratio,
                             aligned=self.aligned, temporal_pool=self.temporal_pool, dropout=self.head_dropout,
                             init_scale=self.init_scale, box_agnostic=self.box_agnostic, pre_norm=self.head_norm,
                             head_type=self.head_type, acar_hidden=self.acar_hidden, acar_depth=self.acar_depth)


class VideoMAEDetector(VideoMAEEncoder):
    """VideoMAE ViT + RoI head: ``forward(video (B, C, T, H, W), rois (K, 5)) -> logits (K, num_classes)``.

    ``rois`` rows are (clip index in the batch, x1, y1, x2, y2) with
    coordinates as fractions of the frame. Parameter names are the VideoMAE
    encoder's, so VideoMAE checkpoints (pretrained or fine-tuned) load into
    the trunk and layer-wise lr decay sees ``blocks.<i>``.
    """

    config_class = VideoMAEDetectorConfig

    def __init__(self, config: VideoMAEDetectorConfig):
        if not isinstance(config, VideoMAEDetectorConfig):
            raise TypeError(f"VideoMAEDetector needs a VideoMAEDetectorConfig, got {type(config).__name__}")
        super().__init__(replace(config, num_classes=0), pretraining=False)
        self.config = config
        self.fc_norm = None
        self.head_drop = None
        self.head = RoIActionHead(config.embed_dim, config.grid, config.head())

    def forward_head(self, tokens: torch.Tensor, rois: torch.Tensor | None = None,  # type: ignore[override]
                     grid: tuple[int, int, int] | None = None) -> torch.Tensor:
        """Logits per box; without ``rois`` one box per clip covering the whole frame (clip-level scores).
        ``grid``: the tokens' ``(T', H', W')`` for clips of another size than the configured one."""
        if rois is None:
            b = tokens.shape[0]
            rois = torch.cat([torch.arange(b, dtype=tokens.dtype, device=tokens.device)[:, None],
                              tokens.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(b, 4)], dim=1)
        return self.head(tokens, rois, grid)

    def embed_tokens(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Frames of any size that tiles into patches (aspect-keeping AVA test clips: e.g. 256 x 464): the
        position table is resized to the clip's grid on the fly, bicubically per time slice, as the official
        AVA model does in every forward (``interpolate_pos_embed_online`` in InternVideo's
        ``Spatial-Temporal-Action-Localization/modeling_finetune.py``). The frame count must match."""
        grid = self.patch_embed.grid(video.shape)
        if keep is not None or grid == self.config.grid or grid[0] != self.config.grid[0]:
            return super().embed_tokens(video, keep)  # the configured size, or an error naming the shapes
        x = self.patch_embed(video)
        return x + interpolate_pos_embed(self.pos_embed, self.config.grid, grid).to(x.dtype)

    def forward(self, video: torch.Tensor, rois: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return self.forward_head(self.forward_features(video), rois, self.patch_embed.grid(video.shape))

    def freeze_backbone(self) -> None:
        """Train the head only (the frozen-backbone option)."""
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith("head."))

    def reset_classifier(self, num_classes: int) -> None:
        self.config = replace(self.config, num_classes=num_classes)
        self.head = RoIActionHead(self.config.embed_dim, self.config.grid, self.config.head())

    @torch.no_grad()
    def init_from_classifier(self, classifier: nn.Module) -> None:
        """Copy a VideoMAE classifier of the same shape, its ``fc_norm`` and ``head`` into the box head.

        For a detector of the classifier's own classes (``use_mean_pooling=True``, ``head_norm=True``): each box
        then starts as the classifier applied to the features inside the box.
        """
        sd = classifier.state_dict()
        mapped = {("head.norm." + k[len("fc_norm."):] if k.startswith("fc_norm.") else
                   "head.fc." + k[len("head."):] if k.startswith("head.") else k): v for k, v in sd.items()}
        own = self.state_dict()
        bad = sorted(k for k, v in mapped.items() if k not in own or own[k].shape != v.shape)
        if bad or set(own) - set(mapped):
            raise ValueError(f"classifier does not fit this detector: {bad or sorted(set(own) - set(mapped))}")
        self.load_state_dict(mapped)


_SIZES = {
    "s": dict(embed_dim=384, depth=12, num_heads=6),
    "b": dict(embed_dim=768, depth=12, num_heads=12),
    "l": dict(embed_dim=1024, depth=24, num_heads=16),
    "h": dict(embed_dim=1280, depth=32, num_heads=16),
}
NAMED_CONFIGS: dict[str, tuple[type[nn.Module], VideoMAEDetectorConfig]] = {
    f"videomae_vit_{s}16_ava": (VideoMAEDetector, VideoMAEDetectorConfig(**kw)) for s, kw in _SIZES.items()}
NAMED_CONFIGS["videomae_tiny_ava"] = (VideoMAEDetector, VideoMAEDetectorConfig(
    img_size=32, patch_size=8, num_frames=8, frame_interval=2, embed_dim=64, depth=2, num_heads=4, num_classes=10,
    roi_size=2, head_dropout=0.2, init_scale=1.0))
MODEL_CLASSES = {"VideoMAEDetector": VideoMAEDetector}
