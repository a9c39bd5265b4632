"""InternVideo's multimodal model: a CLIP-initialised video encoder, CLIP's text encoder, a caption decoder.

Video encoder (the InternVideo-MM / UniFormerV2 design):

* CLIP's ViT runs on every frame: patch embedding as a Conv3d with kernel
  ``(1, p, p)`` (2-D CLIP weights inflate into it), class token, a spatial
  position table shared by all frames, ``ln_pre``, pre-norm blocks.
* **Local temporal modules** (UniFormerV2 local MHRA) inside chosen blocks, one
  before the attention and one before the MLP: BatchNorm3d -> 1x1x1 conv to a
  reduced width -> depthwise temporal conv ``(3, 1, 1)`` -> 1x1x1 conv back, added
  to the patch tokens. The last conv starts at zero, so a fresh model computes
  exactly what CLIP computes on each frame.
* **Global spatiotemporal blocks** after the last ``num_global_layers`` layers:
  a depthwise 3x3x3 conv position encoding is added to that layer's patch
  tokens, then one learnable video query cross-attends to every token of every
  frame (attention + MLP, output projections zero-initialised); the query is
  carried from one global block to the next.
* The video feature mixes the query with the frame-averaged CLS token through a
  learnable per-channel sigmoid ``balance``, then ``ln_post`` and the projection
  into the joint space. With ``num_global_layers=0`` there is no query and the
  video embedding is CLIP's image embedding averaged over frames.

Token layout inside the encoder: ``(B * T, 1 + h * w, D)``, i.e. attention is
per frame; only the local and global modules mix time.

Parameter names follow the project's shared blocks; :mod:`internvideo.checkpoints.clip`
converts OpenAI, HF transformers and official InternVideo-MM layouts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .caption import IGNORE_INDEX, CaptionDecoder, Strategy, beam_search, caption_targets, greedy_search
from .layers import Activation, Block, CrossBlock, KVCache, TubeletEmbed, init_weights, interpolate_pos_embed
from .text import TextTransformer, init_clip_blocks

from ..constants import CLIP_MEAN, CLIP_STD
from ..recipe import InputRecipe, Sampling, recipe_of


def _resize_frame_pos_embed(key: str, value: torch.Tensor, grid_size: int) -> torch.Tensor:
    """A per-frame position table (CLS + a square grid) interpolated to ``grid_size`` x ``grid_size``."""
    n = value.shape[-2] - 1
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{key}: {n} patch positions do not form a square grid")
    return interpolate_pos_embed(value.reshape(1, n + 1, -1), (1, side, side), (1, grid_size, grid_size), 1)


@dataclass
class InternVideoMMConfig:
    """Field names follow CLIP's / the official InternVideo constructors where they exist."""

    # vision tower: CLIP ViT applied per frame
    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 8  # the training clip length; any frame count runs (no temporal position table)
    in_chans: int = 3
    # input recipe (internvideo/recipe.py): TSN segments over the whole video, CLIP statistics (official protocol)
    frame_interval: int = 4  # only used with sampling="dense"
    sampling: Sampling = "segment"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    # local temporal modules (UniFormerV2 local MHRA)
    use_local: bool = True
    local_blocks: tuple[int, ...] | None = None  # which blocks carry them; None = every block
    local_width: int | None = None  # reduced width; None = int(vision_width // 1.5), UniFormerV2's default
    local_kernel: int = 3
    double_local: bool = True  # a second module before the MLP (UniFormerV2's double_lmhra)
    # global spatiotemporal blocks on the last layers
    num_global_layers: int = 4
    global_mlp_ratio: float = 4.0
    # Dropout inside the global blocks (attention output and MLP); the official code drops 0.5 of the
    # MLP hidden layer only. 0 by default: exact, deterministic features for retrieval and tests.
    global_dropout: float = 0.0
    global_drop_path_rate: float = 0.0
    # joint embedding space
    embed_dim: int = 512
    logit_scale_init: float = math.log(1 / 0.07)
    # text tower
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    text_mlp_ratio: float = 4.0
    text_mask_embedding: bool = True
    # caption decoder (CoCa-style); 0 layers = none
    caption_layers: int = 0
    caption_queries: int = 256
    # A closed caption vocabulary: the token ids the decoder can emit (its head has one row per id; the end token
    # is always added). Empty: CLIP's whole vocabulary. A demo-scale choice: a head over a few hundred ids costs
    # a fraction of one over 49k on a CPU (train/config.py: model.caption_vocab=train picks the training captions').
    caption_vocab: tuple[int, ...] = ()
    # shared
    norm_eps: float = 1e-5
    act: Activation = "quick_gelu"

    def __post_init__(self) -> None:
        if self.num_global_layers > self.vision_layers:
            raise ValueError(f"num_global_layers={self.num_global_layers} exceeds vision_layers={self.vision_layers}")
        if self.local_blocks is not None:
            self.local_blocks = tuple(int(i) for i in self.local_blocks)
            bad = [i for i in self.local_blocks if not 0 <= i < self.vision_layers]
            if bad:
                raise ValueError(f"local_blocks {bad} out of range for {self.vision_layers} vision layers")
        if self.caption_vocab:
            ids = sorted({int(i) for i in self.caption_vocab} | {self.eot_token_id})
            if ids[0] < 0 or ids[-1] >= self.vocab_size:
                raise ValueError(f"caption_vocab: token ids must lie in [0, {self.vocab_size}), got {ids[0]}..{ids[-1]}")
            self.caption_vocab = tuple(ids)
        else:
            self.caption_vocab = ()

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def resolved_local_blocks(self) -> tuple[int, ...]:
        if not self.use_local:
            return ()
        return tuple(range(self.vision_layers)) if self.local_blocks is None else tuple(sorted(self.local_blocks))

    @property
    def resolved_local_width(self) -> int:
        return self.local_width or int(self.vision_width // 1.5)

    @property
    def sot_token_id(self) -> int:
        return self.vocab_size - 2  # CLIP's vocabulary ends with <start_of_text>, <end_of_text>

    @property
    def eot_token_id(self) -> int:
        return self.vocab_size - 1


class LocalTemporalMHRA(nn.Module):
    """UniFormerV2's local MHRA: a bottlenecked depthwise temporal conv over patch tokens ``(B, D, T, h, w)``.

    Returns the residual branch only; the output conv starts at zero so the
    module is an identity at initialisation.
    """

    def __init__(self, dim: int, reduced: int, kernel: int = 3):
        super().__init__()
        self.norm = nn.BatchNorm3d(dim)
        self.down = nn.Conv3d(dim, reduced, kernel_size=1)
        self.temporal = nn.Conv3d(reduced, reduced, kernel_size=(kernel, 1, 1), padding=(kernel // 2, 0, 0),
                                  groups=reduced)
        self.up = nn.Conv3d(reduced, dim, kernel_size=1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.temporal(self.down(self.norm(x))))


@dataclass
class VideoFeatures:
    """What the video encoder computes before pooling.

    ``tokens``: last-layer tokens ``(B, T, 1 + h*w, D)`` (per frame: CLS then
    patches in row order), before ``ln_post``. ``query``: the global video query
    ``(B, D)`` after the last global block, or None with ``num_global_layers=0``.
    """

    tokens: torch.Tensor
    query: torch.Tensor | None
    # ``return_layers=`` of :meth:`VideoEncoder.forward_features`: block index -> that block's output tokens
    # ``(B, T, 1 + h*w, D)``, taken from the same forward pass (no second pass for intermediate tokens).
    layers: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)


class VideoEncoder(nn.Module):
    """The video tower. ``projection=False`` leaves out ``ln_post`` and ``proj`` (a classifier has its own head)."""

    def __init__(self, config: InternVideoMMConfig, projection: bool = True):
        super().__init__()
        c = self.config = config
        width = c.vision_width
        self.patch_embed = TubeletEmbed(c.patch_size, 1, c.in_chans, width, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + c.grid_size ** 2, width) * width ** -0.5)
        self.ln_pre = nn.LayerNorm(width, eps=c.norm_eps)
        rates = torch.linspace(0, c.drop_path_rate, c.vision_layers, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(width, c.vision_heads, c.mlp_ratio, qkv_bias="qkv", norm_eps=c.norm_eps, act=c.act,
                  drop_path=rates[i])
            for i in range(c.vision_layers)
        )
        local = c.resolved_local_blocks
        reduced = c.resolved_local_width
        # Keyed by block index (ModuleDict keys are strings) so that any subset of blocks can carry them.
        self.lmhra1 = nn.ModuleDict({str(i): LocalTemporalMHRA(width, reduced, c.local_kernel) for i in local})
        self.lmhra2 = nn.ModuleDict(
            {str(i): LocalTemporalMHRA(width, reduced, c.local_kernel) for i in local} if c.double_local else {}
        )
        n_global = c.num_global_layers
        self.first_global = c.vision_layers - n_global
        if n_global:
            self.video_query = nn.Parameter(torch.zeros(1, 1, width))
            self.dpe = nn.ModuleList(
                nn.Conv3d(width, width, kernel_size=3, padding=1, groups=width) for _ in range(n_global)
            )
            global_rates = torch.linspace(0, c.global_drop_path_rate, n_global, device="cpu").tolist()
            self.dec = nn.ModuleList(
                CrossBlock(width, c.vision_heads, c.global_mlp_ratio, qkv_bias="qkv", drop=c.global_dropout,
                           drop_path=global_rates[j], norm_eps=c.norm_eps, act=c.act)
                for j in range(n_global)
            )
            self.balance = nn.Parameter(torch.zeros(width))
        else:
            self.video_query = self.dpe = self.dec = self.balance = None
        if projection:
            self.ln_post = nn.LayerNorm(width, eps=c.norm_eps)
            self.proj = nn.Linear(width, c.embed_dim, bias=False)
        else:
            self.ln_post = self.proj = None
        self.grad_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        init_clip_blocks(self.blocks, self.config.vision_width)
        if self.proj is not None:
            nn.init.normal_(self.proj.weight, std=self.config.vision_width ** -0.5)
        if self.dec is not None:
            for conv in self.dpe:
                nn.init.zeros_(conv.bias)
            for blk in self.dec:
                blk.apply(init_weights)
                # As the official global blocks: xavier inputs, zero outputs, so a fresh query stays at zero.
                nn.init.xavier_uniform_(blk.cross_attn.qkv.weight)
                nn.init.xavier_uniform_(blk.mlp.fc1.weight)
                for layer in (blk.cross_attn.proj, blk.mlp.fc2):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------ pieces

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        g = self.config.grid_size
        if (h, w) == (g, g):
            return self.pos_embed
        return interpolate_pos_embed(self.pos_embed, (1, g, g), (1, h, w), num_prefix_tokens=1)

    @staticmethod
    def _apply_local(module: nn.Module, drop_path: nn.Module, x: torch.Tensor, grid: tuple[int, int, int, int]
                     ) -> torch.Tensor:
        # x: (B*T, 1+h*w, D). The temporal conv needs (B, D, T, h, w); CLS tokens are left alone.
        b, t, h, w = grid
        cls, patches = x[:, :1], x[:, 1:]
        d = x.shape[-1]
        p = patches.reshape(b, t, h, w, d).permute(0, 4, 1, 2, 3)
        p = p + drop_path(module(p))
        return torch.cat([cls, p.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, d)], dim=1)

    def _layer(self, i: int, x: torch.Tensor, grid: tuple[int, int, int, int]) -> torch.Tensor:
        blk, key = self.blocks[i], str(i)
        if key in self.lmhra1:
            x = self._apply_local(self.lmhra1[key], blk.drop_path, x, grid)
        x = blk.attn_residual(x)
        if key in self.lmhra2:
            x = self._apply_local(self.lmhra2[key], blk.drop_path, x, grid)
        return blk.mlp_residual(x)

    def _global(self, j: int, tokens: torch.Tensor, query: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        # tokens: (B, T, 1+h*w, D), one layer's output
        b, t, _, d = tokens.shape
        h, w = hw
        patches = tokens[:, :, 1:]
        pos = self.dpe[j](patches.permute(0, 3, 1, 2).reshape(b, d, t, h, w))
        patches = patches + pos.flatten(3).permute(0, 2, 3, 1)
        # The query reads every frame's CLS and (position-encoded) patch tokens, frame by frame.
        context = torch.cat([tokens[:, :, :1], patches], dim=2).flatten(1, 2)
        return self.dec[j](query, context)

    # ------------------------------------------------------------------ public

    @property
    def global_layers(self) -> tuple[int, ...]:
        """The blocks whose outputs the global blocks read (UniFormerV2's ``return_list``)."""
        return tuple(range(self.first_global, self.config.vision_layers)) if self.dec is not None else ()

    def forward_features(self, video: torch.Tensor, return_layers: Sequence[int] = ()) -> VideoFeatures:
        """Video ``(B, C, T, H, W)`` (or images ``(B, C, H, W)``) -> :class:`VideoFeatures`.

        ``return_layers``: block indices (0-based, negative counts from the end)
        whose output tokens are also returned, in ``VideoFeatures.layers``.
        """
        if video.ndim == 4:
            video = video.unsqueeze(2)
        n = self.config.vision_layers
        wanted = set()
        for i in return_layers:
            if not -n <= int(i) < n:
                raise ValueError(f"return_layers: {i} is out of range for {n} vision layers")
            wanted.add(int(i) % n)
        t, h, w = self.patch_embed.grid(video.shape)
        b = video.shape[0]
        grid = (b, t, h, w)
        x = self.patch_embed(video)  # (B, T*h*w, D) in (t, row, column) order
        d = x.shape[-1]
        x = x.reshape(b * t, h * w, d)
        cls = self.class_embedding.to(x.dtype).expand(b * t, 1, d)
        x = torch.cat([cls, x], dim=1) + self._pos_embed(h, w).to(x.dtype)
        x = self.ln_pre(x)
        global_inputs = []
        layers: dict[int, torch.Tensor] = {}
        for i in range(len(self.blocks)):
            if self.grad_checkpointing and torch.is_grad_enabled():
                # The recomputation also updates the local modules' BatchNorm running statistics a second time
                # (with the same batch), which only shortens their averaging window.
                x = checkpoint(self._layer, i, x, grid, use_reentrant=False)
            else:
                x = self._layer(i, x, grid)
            if self.dec is not None and i >= self.first_global:
                global_inputs.append(x.reshape(b, t, 1 + h * w, d))
            if i in wanted:
                layers[i] = x.reshape(b, t, 1 + h * w, d)
        query = self.run_global(global_inputs, (h, w)) if self.dec is not None else None
        return VideoFeatures(tokens=x.reshape(b, t, 1 + h * w, d), query=query, layers=layers)

    def run_global(self, layer_tokens: Sequence[torch.Tensor], hw: tuple[int, int],
                   query: torch.Tensor | None = None) -> torch.Tensor:
        """The global blocks on the outputs of :attr:`global_layers` (each ``(B, T, 1+h*w, D)``) -> query ``(B, D)``.

        Separate from the backbone so that a model whose backbone is frozen can
        still train the video query (``query``, default :attr:`video_query`)
        from stored layer outputs.
        """
        if self.dec is None:
            raise RuntimeError("this video encoder has no global blocks (num_global_layers=0)")
        if len(layer_tokens) != len(self.dec):
            raise ValueError(f"run_global needs the outputs of {len(self.dec)} layers, got {len(layer_tokens)}")
        b, _, _, d = layer_tokens[0].shape
        q = (self.video_query if query is None else query).to(layer_tokens[0].dtype).expand(b, 1, d)
        for j, tokens in enumerate(layer_tokens):
            q = self._global(j, tokens, q, hw)
        return q[:, 0]

    def video_token(self, feats: VideoFeatures) -> torch.Tensor:
        """The video's class token ``(B, D)`` before ``ln_post``: the global query mixed with the frame-mean CLS
        through the learnable ``balance`` (UniFormerV2), or the frame-mean CLS without global blocks."""
        return self.mix(feats.query, feats.tokens[:, :, 0].mean(dim=1))

    def mix(self, query: torch.Tensor | None, frame_cls: torch.Tensor) -> torch.Tensor:
        """``(1 - sigmoid(balance)) * query + sigmoid(balance) * frame_cls`` (``frame_cls``: the frame-mean CLS)."""
        if query is None:
            return frame_cls
        weight = torch.sigmoid(self.balance).to(frame_cls.dtype)
        return (1 - weight) * query + weight * frame_cls

    def pool(self, feats: VideoFeatures, project: bool = True) -> torch.Tensor:
        """Projected video embedding ``(B, embed_dim)`` from :meth:`forward_features`' output.

        ``project=False``: the feature before the projection ``(B, vision_width)``.
        """
        if project and self.proj is None:
            raise RuntimeError("this video encoder has no projection (a classifier's tower)")
        proj = self.proj if project else nn.Identity()
        if feats.query is None:
            return proj(self.ln_post(feats.tokens[:, :, 0])).mean(dim=1)
        return proj(self.ln_post(self.video_token(feats)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(video))


class InternVideoMM(nn.Module):
    """Video encoder + text encoder (+ caption decoder) in a joint space with a learnable temperature.

    * ``encode_video(video)`` / ``encode_image(images)`` / ``encode_text(ids)``:
      projected, **not** normalised embeddings ``(B, embed_dim)``.
      ``encode_video(video, return_tokens=True)`` also returns the last-layer
      tokens ``(B, T * (1 + h*w), vision_width)``; ``visual.forward_features``
      gives them per frame together with the global video query.
    * ``forward(video, ids)`` -> dict with ``video_emb``, ``text_emb``,
      ``logit_scale`` (the log-scale parameter; losses exponentiate and clamp it)
      and, with a caption decoder, ``caption_logits`` ``(B, L-1, vocab)`` and
      ``caption_targets`` ``(B, L-1)`` (-100 where ignored). ``video`` may also be
      a list of tensors with different frame counts (e.g. images as 1-frame
      videos next to clips); their embeddings are concatenated in order.
    * ``generate(video, max_len, strategy)``: greedy or beam-search captions
      (key/value-cached decoding); ``generate_caption`` is the greedy default.
    """

    # Parameters that plain CLIP weights do not provide; a loader may leave them freshly initialised.
    NEW_PARAMETER_PREFIXES = ("visual.lmhra1.", "visual.lmhra2.", "visual.video_query", "visual.dpe.", "visual.dec.",
                              "visual.balance", "text.mask_embedding", "caption.")

    def __init__(self, config: InternVideoMMConfig):
        super().__init__()
        c = self.config = config
        self.visual = VideoEncoder(c)
        self.text = TextTransformer(
            vocab_size=c.vocab_size, context_length=c.context_length, width=c.text_width, layers=c.text_layers,
            heads=c.text_heads, embed_dim=c.embed_dim, mlp_ratio=c.text_mlp_ratio, norm_eps=c.norm_eps, act=c.act,
            mask_embedding=c.text_mask_embedding,
        )
        self.caption = CaptionDecoder(
            c.text_width, c.vision_width, c.text_heads, c.caption_layers, c.caption_queries,
            len(c.caption_vocab) or c.vocab_size, mlp_ratio=c.text_mlp_ratio, norm_eps=c.norm_eps, act=c.act,
        ) if c.caption_layers else None
        # Closed vocabulary: head row -> token id, and token id -> head row (-1: not in the vocabulary).
        ids = torch.tensor(c.caption_vocab, dtype=torch.long)
        rows = torch.full((c.vocab_size if len(ids) else 0,), -1, dtype=torch.long)
        if len(ids):
            rows[ids] = torch.arange(len(ids))
        self.register_buffer("caption_ids", ids, persistent=False)
        self.register_buffer("caption_rows", rows, persistent=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(c.logit_scale_init)))

    # ------------------------------------------------------------------ encoders

    def input_recipe(self) -> InputRecipe:
        """The clips this model expects (see :mod:`internvideo.recipe`)."""
        return recipe_of(self.config)

    def encode_video(self, video: torch.Tensor, return_tokens: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self.visual.forward_features(video)
        emb = self.visual.pool(feats)
        return (emb, feats.tokens.flatten(1, 2)) if return_tokens else emb

    def embed_video_features(self, feats: VideoFeatures) -> torch.Tensor:
        """The video feature from :meth:`VideoEncoder.forward_features`' output (here: the projected embedding)."""
        return self.visual.pool(feats)

    @property
    def video_feature_dim(self) -> int:
        return self.config.embed_dim

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` as 1-frame videos."""
        if images.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
        return self.visual(images.unsqueeze(2))

    def encode_text(self, ids: torch.Tensor, masked: torch.Tensor | None = None, return_tokens: bool = False
                    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tokens = self.text.forward_tokens(ids, masked)
        emb = self.text.pool(tokens, ids)
        return (emb, tokens) if return_tokens else emb

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Last-layer video tokens ``(B, T * (1 + h*w), vision_width)``, frame by frame, before ``ln_post``."""
        return self.visual.forward_features(video).tokens.flatten(1, 2)

    # ------------------------------------------------------------------ training

    def forward(self, video: torch.Tensor | Sequence[torch.Tensor], text_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        groups = [video] if isinstance(video, torch.Tensor) else list(video)
        feats = [self.visual.forward_features(g) for g in groups]
        video_emb = torch.cat([self.visual.pool(f) for f in feats])
        if video_emb.shape[0] != text_ids.shape[0]:
            raise ValueError(f"{video_emb.shape[0]} videos but {text_ids.shape[0]} captions")
        text_tokens = self.text.forward_tokens(text_ids)
        out = {"video_emb": video_emb, "text_emb": self.text.pool(text_tokens, text_ids),
               "logit_scale": self.logit_scale}
        if self.caption is not None:
            # Pooled queries have a fixed count, so groups of different frame counts concatenate here.
            pooled = torch.cat([self.caption.pool_video(f.tokens.flatten(1, 2)) for f in feats])
            out["caption_logits"] = self.caption(text_tokens[:, :-1], pooled)
            out["caption_targets"] = self.caption_head_targets(caption_targets(text_ids))
        return out

    def caption_head_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Token-id targets as rows of the caption head: unchanged for CLIP's whole vocabulary; with a closed
        vocabulary, its row, and ignored (-100) for a token outside it (a caption the vocabulary was not made from)."""
        if not len(self.caption_ids):
            return targets
        rows = self.caption_rows[targets.clamp(min=0)]
        return torch.where((targets == IGNORE_INDEX) | (rows < 0), IGNORE_INDEX, rows)

    @torch.no_grad()
    def generate(self, video: torch.Tensor, max_len: int = 30, strategy: Strategy = "greedy", num_beams: int = 4,
                 length_penalty: float = 1.0, use_cache: bool = True,
                 allowed_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Caption ids ``(B, <= 1 + max_len)``: start token, generated ids (end token included), zeros after.

        ``strategy``: ``"greedy"`` or ``"beam"`` (``num_beams`` wide, scores
        divided by ``length ** length_penalty``). ``use_cache=False`` re-runs
        the whole prefix at every step (the reference the cache is tested
        against). ``allowed_tokens`` (ids) restricts the output further, e.g. to
        the tokens of the training captions (the end token is always allowed); a
        model built with ``caption_vocab`` emits only those ids anyway. Decode
        with ``get_tokenizer("clip").batch_decode``.
        """
        return self.generate_from_tokens(self.visual.forward_features(video).tokens.flatten(1, 2), max_len, strategy,
                                         num_beams, length_penalty, use_cache, allowed_tokens)

    @torch.no_grad()
    def generate_from_tokens(self, video_tokens: torch.Tensor, max_len: int = 30, strategy: Strategy = "greedy",
                             num_beams: int = 4, length_penalty: float = 1.0, use_cache: bool = True,
                             allowed_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`generate` from last-layer video tokens ``(B, N, vision_width)`` already computed."""
        if self.caption is None:
            raise RuntimeError("this model has no caption decoder (caption_layers=0)")
        if strategy not in ("greedy", "beam"):
            raise ValueError(f"strategy must be 'greedy' or 'beam', not {strategy!r}")
        c = self.config
        pooled = self.caption.pool_video(video_tokens)
        stepper = _CaptionStepper(self, pooled, use_cache, allowed_tokens)
        max_len = min(max_len, c.context_length - 1)  # the start token takes the first position
        if strategy == "greedy":
            return greedy_search(stepper, pooled.shape[0], c.sot_token_id, c.eot_token_id, max_len, pooled.device)
        return beam_search(stepper, pooled.shape[0], c.sot_token_id, c.eot_token_id, max_len, pooled.device,
                           num_beams=num_beams, length_penalty=length_penalty)

    def generate_caption(self, video: torch.Tensor, max_len: int = 30) -> torch.Tensor:
        """Greedy captions (:meth:`generate` with its defaults)."""
        return self.generate(video, max_len)

    # ------------------------------------------------------------------ utilities

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.grad_checkpointing = self.text.grad_checkpointing = enable
        if self.caption is not None:
            self.caption.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        names = {"logit_scale", "visual.class_embedding", "visual.pos_embed", "text.pos_embed"}
        optional = ("visual.video_query", "visual.balance", "text.mask_embedding", "caption.queries")
        params = dict(self.named_parameters())
        return names | {n for n in optional if n in params}

    def resize_pos_embed(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """Fit a checkpoint's position table to this model (called by the checkpoint loader)."""
        if key == "visual.pos_embed":
            return _resize_frame_pos_embed(key, value, self.config.grid_size)
        if key == "text.pos_embed":
            # Positions are absolute and causal: a longer table's prefix is exactly the shorter one.
            if value.shape[0] >= self.config.context_length:
                return value[: self.config.context_length]
            raise ValueError(f"{key}: checkpoint has {value.shape[0]} text positions, model needs "
                             f"{self.config.context_length}; build the model with context_length={value.shape[0]}")
        raise ValueError(f"no rule to resize {key} of shape {tuple(value.shape)}")


class _CaptionStepper:
    """Text encoder then caption decoder, one step at a time, with or without key/value caches."""

    def __init__(self, model: InternVideoMM, pooled: torch.Tensor, use_cache: bool,
                 allowed_tokens: torch.Tensor | None = None):
        self.model, self.pooled = model, pooled
        self.blocked = None
        if allowed_tokens is not None:
            self.blocked = torch.ones(model.config.vocab_size, dtype=torch.bool, device=pooled.device)
            self.blocked[allowed_tokens.to(pooled.device)] = False
            self.blocked[model.config.eot_token_id] = False
        self.text_cache = [KVCache() for _ in model.text.blocks] if use_cache else None
        self.caption_cache = [KVCache() for _ in model.caption.blocks] if use_cache else None
        self.ids: torch.Tensor | None = None

    def step(self, new_ids: torch.Tensor) -> torch.Tensor:
        if self.text_cache is not None:
            tokens = self.model.text.forward_tokens(new_ids, cache=self.text_cache)
            logits = self.model.caption(tokens, self.pooled, cache=self.caption_cache)[:, -1]
        else:
            self.ids = new_ids if self.ids is None else torch.cat([self.ids, new_ids], dim=1)
            logits = self.model.caption(self.model.text.forward_tokens(self.ids), self.pooled)[:, -1]
        ids = self.model.caption_ids
        if len(ids):  # a closed vocabulary's rows back to token ids; every other id impossible
            logits = logits.new_full((logits.shape[0], self.model.config.vocab_size), float("-inf")).index_copy_(
                1, ids, logits)
        return logits if self.blocked is None else logits.masked_fill(self.blocked, float("-inf"))

    def reorder(self, index: torch.Tensor) -> None:
        self.pooled = self.pooled.index_select(0, index)
        if self.ids is not None:
            self.ids = self.ids.index_select(0, index)
        for cache in (self.text_cache or []) + (self.caption_cache or []):
            cache.reorder(index)


@dataclass
class InternVideoMMClassifierConfig(InternVideoMMConfig):
    """The video tower's fields (those of :class:`InternVideoMMConfig`; the text fields are unused) plus a head."""

    num_classes: int = 400
    head_dropout: float = 0.5  # UniFormerV2's CLS_DROPOUT in every released recipe
    class_names: tuple[str, ...] | None = None  # head row i's class (saved with the checkpoint)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)


class InternVideoMMClassifier(nn.Module):
    """The multimodal video encoder as a classifier: InternVideo's supervised branch (UniFormerV2 K710/K400).

    The video tower of :class:`InternVideoMM` (no text tower, no ``ln_post``/``proj``); the head is
    UniFormerV2's ``transformer.proj``: the global blocks' video token (the query mixed with the frame-mean
    CLS, :meth:`VideoEncoder.video_token`) -> LayerNorm -> dropout (0.5) -> linear.

    * ``forward_features(video)`` -> tokens ``(B, 1 + T * (1 + h*w), D)``: the video token first, then every
      frame's last-layer tokens (CLS, patches), so the classifier protocol of the other models holds.
    * ``forward_head(tokens, pre_logits=False)`` reads token 0: normalised, then dropout + linear.

    Weights of a contrastive :class:`InternVideoMM` (ours or official) start it: ``create_model(
    "internvideo_mm_l14_cls", pretrained=...)`` fills ``visual.*``; the head is new.
    """

    NEW_PARAMETER_PREFIXES = InternVideoMM.NEW_PARAMETER_PREFIXES + ("fc_norm.", "head.")

    def __init__(self, config: InternVideoMMClassifierConfig):
        super().__init__()
        c = self.config = config
        self.visual = VideoEncoder(c, projection=False)
        self.fc_norm = nn.LayerNorm(c.vision_width, eps=c.norm_eps)
        self.head_drop = nn.Dropout(c.head_dropout)
        self.head = nn.Linear(c.vision_width, c.num_classes) if c.num_classes else nn.Identity()
        if isinstance(self.head, nn.Linear):
            init_weights(self.head)

    def input_recipe(self) -> InputRecipe:
        return recipe_of(self.config)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        feats = self.visual.forward_features(video)
        return torch.cat([self.visual.video_token(feats).unsqueeze(1), feats.tokens.flatten(1, 2)], dim=1)

    def embed_video_features(self, feats: VideoFeatures) -> torch.Tensor:
        """The video feature from :meth:`VideoEncoder.forward_features`' output (here: the head's pre-logits)."""
        return self.fc_norm(self.visual.video_token(feats))

    @property
    def video_feature_dim(self) -> int:
        return self.config.vision_width

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc_norm(tokens[:, 0])
        return x if pre_logits else self.head(self.head_drop(x))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        names = {"visual.class_embedding", "visual.pos_embed"}
        params = dict(self.named_parameters())
        return names | {n for n in ("visual.video_query", "visual.balance") if n in params}

    def resize_pos_embed(self, key: str, value: torch.Tensor) -> torch.Tensor:
        if key != "visual.pos_embed":
            raise ValueError(f"no rule to resize {key} of shape {tuple(value.shape)}")
        return _resize_frame_pos_embed(key, value, self.config.grid_size)


InternVideoMMClassifier.config_class = InternVideoMMClassifierConfig


_L14 = dict(img_size=224, patch_size=14, num_frames=8, vision_width=1024, vision_layers=24, vision_heads=16,
            num_global_layers=4)
_B16 = dict(img_size=224, patch_size=16, num_frames=8, vision_width=768, vision_layers=12, vision_heads=12,
            num_global_layers=4)
_TINY = dict(img_size=32, patch_size=8, num_frames=4, vision_width=64, vision_layers=4, vision_heads=4,
             num_global_layers=2)

NAMED_CONFIGS: dict[str, tuple[type[nn.Module], InternVideoMMConfig]] = {
    # Small enough for unit tests and the synthetic demo; uses CLIP's real vocabulary so the tokenizer fits.
    "internvideo_mm_tiny": (InternVideoMM, InternVideoMMConfig(
        **_TINY, embed_dim=32, text_width=64, text_layers=2, text_heads=4, caption_layers=2, caption_queries=8)),
    # ViT-B/16 CLIP with global blocks on layers 8-11 (official B/16 return_list), UniFormerV2's "only global".
    "internvideo_mm_b16": (InternVideoMM, InternVideoMMConfig(
        **_B16, use_local=False, embed_dim=512, text_width=512, text_layers=12, text_heads=8,
        caption_layers=4, caption_queries=256)),
    # The released InternVideo-MM-L-14: ViT-L/14 CLIP, global blocks on layers 20-23, 1024 -> 768 projection, and
    # no local MHRA (UniFormerV2's "only global" variant, NO_LMHRA: True in its K710 L/14 recipe).
    "internvideo_mm_l14": (InternVideoMM, InternVideoMMConfig(
        **_L14, use_local=False, embed_dim=768, text_width=768, text_layers=12, text_heads=12,
        caption_layers=4, caption_queries=256)),
    # The paper's text ("UniFormerV2 ... along with extra local spatiotemporal modeling modules"): local MHRA in
    # every block (UniFormerV2's double L_MHRA, reduction 1.5), zero-initialised so CLIP weights start it exactly.
    "internvideo_mm_l14_lmhra": (InternVideoMM, InternVideoMMConfig(
        **_L14, use_local=True, embed_dim=768, text_width=768, text_layers=12, text_heads=12,
        caption_layers=4, caption_queries=256)),
    # Classifiers (the supervised branch; UniFormerV2 exp/k710/k710_{l14,b16}_f8x224/config.yaml: 710 classes,
    # 8 frames x 224, NO_LMHRA, TEMPORAL_DOWNSAMPLE False, CLS_DROPOUT 0.5).
    "internvideo_mm_tiny_cls": (InternVideoMMClassifier, InternVideoMMClassifierConfig(
        **_TINY, num_classes=10, embed_dim=32, text_width=64, text_layers=2, text_heads=4)),
    "internvideo_mm_b16_cls": (InternVideoMMClassifier, InternVideoMMClassifierConfig(
        **_B16, use_local=False, num_classes=710, embed_dim=512)),
    "internvideo_mm_l14_cls": (InternVideoMMClassifier, InternVideoMMClassifierConfig(
        **_L14, use_local=False, num_classes=710, embed_dim=768, text_width=768, text_heads=12)),
}
MODEL_CLASSES: dict[str, type[nn.Module]] = {"InternVideoMM": InternVideoMM,
                                              "InternVideoMMClassifier": InternVideoMMClassifier}

__all__ = ["CLIP_MEAN", "CLIP_STD", "InternVideoMM", "InternVideoMMClassifier", "InternVideoMMClassifierConfig",
           "InternVideoMMConfig", "LocalTemporalMHRA", "MODEL_CLASSES",
           "NAMED_CONFIGS", "VideoEncoder", "VideoFeatures"]
