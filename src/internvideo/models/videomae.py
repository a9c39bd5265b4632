"""VideoMAE: the masked video encoder of InternVideo.

A ViT over 2×16×16 space-time tubelets. For pretraining, the encoder sees only
the visible tubelets (a tube mask hides ~90 %) and a light decoder reconstructs
the hidden ones; the fine-tuning classifier sees every token and mean-pools.
Parameter names follow the official VideoMAE repository, so its checkpoints
load as they are (see :mod:`internvideo.checkpoints.videomae`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Block, TubeletEmbed, init_weights, interpolate_pos_embed, run_blocks, sinusoid_table

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..recipe import InputRecipe, Sampling, recipe_of



@dataclass
class VideoMAEConfig:
    """Field names follow the official VideoMAE constructors."""

    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    # input recipe (internvideo/recipe.py): 16 frames every 4th, ImageNet statistics, as the official Kinetics recipe
    frame_interval: int = 4
    sampling: Sampling = "dense"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    # fc_norm and decoder.norm: the official code uses 1e-6, HF transformers 1e-5.
    head_norm_eps: float = 1e-6
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    init_values: float | None = None  # layer scale; None/0 = off (official default)
    use_learnable_pos_emb: bool = False
    use_checkpoint: bool = False
    # classifier
    num_classes: int = 400
    use_mean_pooling: bool = True
    fc_drop_rate: float = 0.0
    init_scale: float = 0.001  # head weights scaled at init, as the official fine-tuning
    class_names: tuple[str, ...] | None = None  # head row i's class, saved so evaluation never guesses the mapping
    # pretraining
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    decoder_mlp_ratio: float | None = None  # None: same as the encoder (official); HF configs set their own
    mask_ratio: float = 0.9
    norm_pix_loss: bool = True
    pretrain_final_norm: bool = True

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.num_frames // self.tubelet_size, self.img_size // self.patch_size,
                self.img_size // self.patch_size)

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w


def tube_mask(batch_size: int, grid: tuple[int, int, int], mask_ratio: float = 0.9,
              generator: torch.Generator | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """VideoMAE tube masking: one random spatial mask repeated over every time slice.

    Returns bool ``(B, t*h*w)``, True = hidden. Every sample hides exactly
    ``int(mask_ratio * h * w) * t`` tokens, so visible tokens stack into a dense batch.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    t, h, w = grid
    per_frame = h * w
    num_hidden = int(mask_ratio * per_frame)
    if num_hidden == 0:  # nothing to reconstruct: the loss would be over zero tokens
        raise ValueError(f"mask_ratio {mask_ratio} hides no token of the {h}x{w} patch grid; masked pretraining "
                         f"needs mask_ratio >= {1 / per_frame:.3g} (VideoMAE: 0.9)")
    scores = torch.rand(batch_size, per_frame, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    spatial = ranks < num_hidden
    return spatial.repeat(1, t).to(device)


def patchify(video: torch.Tensor, patch_size: int, tubelet_size: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` → ``(B, N, tubelet*patch*patch, C)`` in token order (t, h, w)."""
    b, c, t, h, w = video.shape
    p, ts = patch_size, tubelet_size
    x = video.reshape(b, c, t // ts, ts, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)
    return x.reshape(b, (t // ts) * (h // p) * (w // p), ts * p * p, c)


def unpatchify(patches: torch.Tensor, video_shape: tuple[int, ...], patch_size: int,
               tubelet_size: int) -> torch.Tensor:
    """Inverse of :func:`patchify` for ``(B, N, ts*p*p*C)`` predictions (used for visualisation)."""
    b, c, t, h, w = video_shape
    p, ts = patch_size, tubelet_size
    x = patches.reshape(b, t // ts, h // p, w // p, ts, p, p, c)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, c, t, h, w)


def reconstruction_target(video: torch.Tensor, patch_size: int, tubelet_size: int, norm_pix: bool = True,
                          mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
                          ) -> torch.Tensor:
    """Per-token regression target, as the official VideoMAE computes it.

    The video (normalised with ``mean``/``std``, the model's input recipe) is
    mapped back to [0, 1] pixels; with ``norm_pix`` every patch is standardised
    per channel with its own mean and unbiased std (+1e-6). Returns
    ``(B, N, tubelet*patch*patch*C)``.
    """
    mean = video.new_tensor(mean).view(1, 3, 1, 1, 1)
    std = video.new_tensor(std).view(1, 3, 1, 1, 1)
    pixels = patchify(video * std + mean, patch_size, tubelet_size)
    if norm_pix:
        pixels = (pixels - pixels.mean(dim=-2, keepdim=True)) / (
            pixels.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return pixels.flatten(2)


class VideoMAEEncoder(nn.Module):
    """The ViT shared by pretraining (visible tokens only) and fine-tuning (all tokens).

    ``pretraining=True`` is the official pretraining encoder: a final ``norm``
    (unless ``pretrain_final_norm`` is off, as in HF checkpoints saved with mean
    pooling) and no pooling or head. Otherwise the official fine-tuning layout:
    ``norm`` only without mean pooling, ``fc_norm`` after pooling, ``head``
    (``num_classes=0``: features only).
    """

    def __init__(self, config: VideoMAEConfig, pretraining: bool = False):
        super().__init__()
        self.config = c = config
        self.pretraining = pretraining
        self.patch_embed = TubeletEmbed(c.patch_size, c.tubelet_size, c.in_chans, c.embed_dim)
        if c.use_learnable_pos_emb:
            self.pos_embed = nn.Parameter(torch.zeros(1, c.num_patches, c.embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            # Fixed table: a non-persistent buffer, as the official checkpoints do not store it.
            self.register_buffer("pos_embed", sinusoid_table(c.num_patches, c.embed_dim), persistent=False)
        self.pos_drop = nn.Dropout(c.drop_rate)
        dpr = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]  # stochastic depth rule
        self.blocks = nn.ModuleList([
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, qkv_bias=c.qkv_bias, drop=c.drop_rate,
                  attn_drop=c.attn_drop_rate, drop_path=dpr[i], init_values=c.init_values, norm_eps=c.norm_eps)
            for i in range(c.depth)
        ])
        self.grad_checkpointing = c.use_checkpoint
        final_norm = c.pretrain_final_norm if pretraining else not c.use_mean_pooling
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps) if final_norm else nn.Identity()
        if pretraining:
            self.fc_norm = self.head_drop = self.head = None
        else:
            self.fc_norm = nn.LayerNorm(c.embed_dim, eps=c.head_norm_eps) if c.use_mean_pooling else nn.Identity()
            self.head_drop = nn.Dropout(c.fc_drop_rate)
            self.head = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(init_weights)
        if isinstance(self.head, nn.Linear):
            self.head.weight.data.mul_(c.init_scale)
            self.head.bias.data.mul_(c.init_scale)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def resize_pos_embed(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """Fit a learnable position table saved for another frame count or resolution.

        The checkpoint's grid is inferred from its token count: same spatial
        size and another frame count if that divides, else same frame count and
        another (square) resolution, as the official fine-tuning assumes.
        """
        t, h, w = self.config.grid
        n = value.shape[1]
        if n % (h * w) == 0:
            old = (n // (h * w), h, w)
        else:
            side = round((n / t) ** 0.5)
            if t * side * side != n:
                raise ValueError(f"{key}: cannot infer the token grid of a {n}-token position table for grid {(t, h, w)}")
            old = (t, side, side)
        return interpolate_pos_embed(value, old, (t, h, w))

    def embed_tokens(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tubelet tokens plus position embedding, ``(B, N, D)``; with ``keep`` (bool ``(B, N)``) only those."""
        grid = self.patch_embed.grid(video.shape)
        if grid != self.config.grid:
            raise ValueError(
                f"video of shape {tuple(video.shape)} gives a token grid {grid}; this model expects "
                f"(B, {self.config.in_chans}, {self.config.num_frames}, {self.config.img_size}, "
                f"{self.config.img_size}) (grid {self.config.grid}). Build the model with matching "
                "num_frames/img_size (learnable position tables are interpolated when loading)."
            )
        x = self.patch_embed(video, keep)
        pos = self.pos_embed.to(x.dtype)
        if keep is not None:
            b, _, d = x.shape
            pos = pos.expand(b, -1, -1)[keep].reshape(b, -1, d)
        return x + pos

    def forward_features(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder tokens ``(B, N, D)``; with ``mask`` (True = hidden) only visible tokens, in order."""
        if mask is not None:
            check_mask(mask, video.shape[0], self.config.num_patches)
        x = self.embed_tokens(video, None if mask is None else ~mask)
        x = self.pos_drop(x)
        x = run_blocks(self.blocks, x, self.grad_checkpointing)
        return self.norm(x)

    def forward_intermediates(self, video: torch.Tensor, layers: Sequence[int]
                              ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """:meth:`forward_features` (all tokens) and, from the same pass, the output tokens ``(B, N, D)`` of the
        blocks in ``layers`` (0-based; negative counts from the end), before any final norm."""
        n = len(self.blocks)
        wanted = set()
        for i in layers:
            if not -n <= int(i) < n:
                raise ValueError(f"layers: {i} is out of range for {n} blocks")
            wanted.add(int(i) % n)
        x = self.pos_drop(self.embed_tokens(video))
        out: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks):
            x = run_blocks([blk], x, self.grad_checkpointing)
            if i in wanted:
                out[i] = x
        return self.norm(x), out

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("the pretraining encoder has no pooling or head; use forward_features")
        x = self.fc_norm(tokens.mean(1)) if self.config.use_mean_pooling else tokens[:, 0]
        return x if pre_logits else self.head(self.head_drop(x))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))

    def input_recipe(self) -> InputRecipe:
        """The clips this model expects (see :mod:`internvideo.recipe`)."""
        return recipe_of(self.config)


def check_mask(mask: torch.Tensor, batch_size: int, num_tokens: int) -> None:
    if mask.dtype != torch.bool or mask.shape != (batch_size, num_tokens):
        raise ValueError(
            f"mask must be a bool tensor of shape (B, N) = ({batch_size}, {num_tokens}) with True = hidden, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    hidden = mask.sum(1)
    if (hidden != hidden[0]).any():
        raise ValueError(f"every sample must hide the same number of tokens; got counts {hidden.tolist()}")


class VideoMAEClassifier(VideoMAEEncoder):
    """Fine-tuning model: all tokens, mean pooling + ``fc_norm`` + ``head``."""

    def __init__(self, config: VideoMAEConfig):
        super().__init__(config, pretraining=False)


class VideoMAEPretrain(nn.Module):
    """Masked video autoencoder: ``forward(video, mask) -> {"loss", "pred"}``.

    ``pred`` holds the decoder's predictions for the hidden tokens only, in the
    order they appear in the token sequence, ``(B, N_hidden, tubelet*patch²*3)``.
    """

    def __init__(self, config: VideoMAEConfig):
        super().__init__()
        self.config = c = config
        self.encoder = VideoMAEEncoder(c, pretraining=True)
        self.encoder_to_decoder = nn.Linear(c.embed_dim, c.decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", sinusoid_table(c.num_patches, c.decoder_embed_dim),
                             persistent=False)
        self.decoder = _Decoder(c)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        init_weights(self.encoder_to_decoder)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.grad_checkpointing = self.decoder.grad_checkpointing = enable

    def input_recipe(self) -> InputRecipe:
        """The clips this model expects (see :mod:`internvideo.recipe`)."""
        return recipe_of(self.config)

    def no_weight_decay(self) -> set[str]:
        return {"encoder.pos_embed", "mask_token"}

    def resize_pos_embed(self, key: str, value: torch.Tensor) -> torch.Tensor:
        return self.encoder.resize_pos_embed(key, value)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        visible = self.encoder_to_decoder(self.encoder.forward_features(video, mask))
        b, _, d = visible.shape
        pos = self.decoder_pos_embed.to(visible.dtype).expand(b, -1, -1)
        # Visible tokens first, then one mask token per hidden position, each with its position.
        x = torch.cat([visible + pos[~mask].reshape(b, -1, d),
                       self.mask_token.to(visible.dtype) + pos[mask].reshape(b, -1, d)], dim=1)
        num_hidden = x.shape[1] - visible.shape[1]
        pred = self.decoder(x, num_hidden)
        with torch.no_grad():
            target = reconstruction_target(video.float(), c.patch_size, c.tubelet_size, c.norm_pix_loss, c.mean, c.std)
            target = target[mask].reshape(b, num_hidden, -1)
        loss = F.mse_loss(pred.float(), target)
        return {"loss": loss, "pred": pred}


class _Decoder(nn.Module):
    def __init__(self, c: VideoMAEConfig):
        super().__init__()
        self.blocks = nn.ModuleList([
            Block(c.decoder_embed_dim, c.decoder_num_heads, c.decoder_mlp_ratio or c.mlp_ratio, qkv_bias=c.qkv_bias,
                  init_values=c.init_values, norm_eps=c.norm_eps)
            for _ in range(c.decoder_depth)
        ])
        self.norm = nn.LayerNorm(c.decoder_embed_dim, eps=c.head_norm_eps)
        self.head = nn.Linear(c.decoder_embed_dim, c.tubelet_size * c.patch_size ** 2 * c.in_chans)
        self.grad_checkpointing = c.use_checkpoint
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, num_hidden: int) -> torch.Tensor:
        x = run_blocks(self.blocks, x, self.grad_checkpointing)
        return self.head(self.norm(x[:, -num_hidden:]))


def _cfg(**kw) -> VideoMAEConfig:
    return VideoMAEConfig(**kw)


# Paper shapes (official VideoMAE scripts). Decoder widths per size follow
# pretrain_videomae_{small,base,large,huge}_patch16_224.
_SIZES = {
    "s": dict(embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=192, decoder_num_heads=3),
    "b": dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=384, decoder_num_heads=6),
    "l": dict(embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=512, decoder_num_heads=8),
    "h": dict(embed_dim=1280, depth=32, num_heads=16, decoder_embed_dim=640, decoder_num_heads=8),
}
_TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
             decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, num_classes=10)

NAMED_CONFIGS: dict[str, tuple[type[nn.Module], VideoMAEConfig]] = {}
for _s, _kw in _SIZES.items():
    NAMED_CONFIGS[f"videomae_vit_{_s}16"] = (VideoMAEClassifier, _cfg(**_kw))
    NAMED_CONFIGS[f"videomae_vit_{_s}16_pretrain"] = (VideoMAEPretrain, _cfg(**_kw))
NAMED_CONFIGS["videomae_tiny"] = (VideoMAEClassifier, _cfg(**_TINY))
NAMED_CONFIGS["videomae_tiny_pretrain"] = (VideoMAEPretrain, _cfg(**_TINY))

MODEL_CLASSES = {cls.__name__: cls for cls in (VideoMAEClassifier, VideoMAEPretrain)}
