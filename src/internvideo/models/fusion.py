"""Cross-model attention (CMA): one video representation from the two frozen InternVideo encoders.

The official code for this part was never published; this is our definition,
following the paper's description (light cross-attention between the frozen
masked-modeling and multimodal backbones) with Flamingo-style zero-initialised
gates so that a fresh model is exactly late fusion:

1. Backbones (frozen, eval mode, run under ``no_grad``): VideoMAE tokens ``a``
   ``(B, N_a, D_a)`` from 16 dense frames, and the multimodal encoder's tokens
   ``m`` ``(B, N_m, D_m)`` plus its video feature ``g`` ``(B, E)`` from 8 uniform
   frames of the same clip.
2. Each stream is projected to a common width (linear + LayerNorm); optionally
   the multimodal stream is prefixed with its video feature as a token.
3. ``num_layers`` fusion layers: stream A reads stream B with gated
   cross-attention + FFN (:class:`~internvideo.models.layers.CrossBlock`,
   ``gated=True``), and B reads A the same way (both from the layer's inputs).
4. Unified representation: ``[pool_a, g]`` (pool_a = VideoMAE's own pooled
   feature, ``fc_norm(mean(a))``) plus, per stream, ``tanh(gate) *`` a linear
   read-out of the fused tokens. All gates start at zero, so at initialisation
   :meth:`embed` equals the concatenation of the two backbones' pooled features.
5. Head: LayerNorm → heavy dropout → linear.

``streams`` selects the ablation baselines with the same code: ``"mae"`` or
``"mm"`` alone (linear head on one pooled feature), ``"both"`` with
``num_layers=0`` (late fusion), ``"both"`` with ``num_layers > 0`` (CMA).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .layers import CrossBlock, init_weights



@dataclass
class FusionConfig:
    mae_backbone: str = ""  # directory (or any supported checkpoint) of a VideoMAE classifier/encoder
    mm_backbone: str = ""  # directory of an InternVideoMM model
    num_classes: int = 400
    class_names: tuple[str, ...] | None = None  # head row i's class (saved with the checkpoint)
    width: int = 512
    num_layers: int = 2  # the paper does not say; 2 is our default, ablated in the README
    num_heads: int = 8
    mlp_ratio: float = 4.0
    use_query_token: bool = True  # the multimodal video feature joins its stream as a token
    streams: Literal["both", "mae", "mm"] = "both"
    head_dropout: float = 0.5  # "heavy dropout before the head"


FeatureDict = dict[str, torch.Tensor]


class CMAFusion(nn.Module):
    """``forward(video, mm_video=None) -> logits``; ``embed(...)`` the unified representation.

    ``video`` is the VideoMAE view (ImageNet-normalised). ``mm_video`` is the
    multimodal view (CLIP-normalised); when omitted it is derived from
    ``video`` by uniform temporal subsampling and re-normalisation.
    The backbones are built by the caller (``internvideo.factory.create_fusion``
    loads them from the paths in the config) and passed in. Their weights and
    configs are part of this model's checkpoint (frozen), so a saved fusion
    model is self-contained.
    """

    def __init__(self, config: FusionConfig, mae: nn.Module, mm: nn.Module):
        super().__init__()
        c = self.config = config
        self.mae, self.mm = mae, mm
        for p in list(self.mae.parameters()) + list(self.mm.parameters()):
            p.requires_grad_(False)
        d_a = mae.config.embed_dim
        d_m = mm.config.vision_width
        e = mm.config.embed_dim
        w = c.width
        self.out_dims = {"mae": d_a, "mm": e}
        if c.streams == "both" and c.num_layers > 0:
            self.proj_a = nn.Sequential(nn.Linear(d_a, w), nn.LayerNorm(w))
            self.proj_m = nn.Sequential(nn.Linear(d_m, w), nn.LayerNorm(w))
            self.proj_g = nn.Sequential(nn.Linear(e, w), nn.LayerNorm(w)) if c.use_query_token else None
            self.a_reads_m = nn.ModuleList([CrossBlock(w, c.num_heads, c.mlp_ratio, gated=True)
                                            for _ in range(c.num_layers)])
            self.m_reads_a = nn.ModuleList([CrossBlock(w, c.num_heads, c.mlp_ratio, gated=True)
                                            for _ in range(c.num_layers)])
            self.read_a, self.read_m = nn.Linear(w, d_a), nn.Linear(w, e)
            self.gate_a, self.gate_m = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        dim = {"both": d_a + e, "mae": d_a, "mm": e}[c.streams]
        self.head_norm = nn.LayerNorm(dim)
        self.head_drop = nn.Dropout(c.head_dropout)
        self.head = nn.Linear(dim, c.num_classes)
        for name, module in self.named_children():
            if name not in ("mae", "mm"):
                module.apply(init_weights)
        self.train()

    @property
    def fused(self) -> bool:
        return self.config.streams == "both" and self.config.num_layers > 0

    def train(self, mode: bool = True) -> CMAFusion:
        super().train(mode)
        self.mae.eval()  # frozen backbones never see dropout or batch-norm updates
        self.mm.eval()
        return self

    # ------------------------------------------------------------------ backbones

    def mm_view(self, video: torch.Tensor) -> torch.Tensor:
        """The multimodal view of a VideoMAE clip: uniform frames, re-normalised to the multimodal statistics."""
        t = video.shape[2]
        idx = torch.linspace(0, t - 1, self.mm.config.num_frames, device=video.device).round().long()
        x = video.index_select(2, idx)
        a, m = self.mae.config, self.mm.config
        mean_in, std_in = (x.new_tensor(v).view(1, 3, 1, 1, 1) for v in (a.mean, a.std))
        mean_out, std_out = (x.new_tensor(v).view(1, 3, 1, 1, 1) for v in (m.mean, m.std))
        return ((x * std_in + mean_in) - mean_out) / std_out

    @torch.no_grad()
    def backbone_features(self, video: torch.Tensor, mm_video: torch.Tensor | None = None,
                          all_streams: bool = False) -> FeatureDict:
        """What fusion needs from the frozen encoders; cache these to train without videos.

        ``all_streams`` computes both streams even for a single-stream baseline,
        so one feature cache serves every ablation variant.
        """
        if mm_video is None:
            mm_video = self.mm_view(video)
        feats: FeatureDict = {}
        if all_streams or self.config.streams in ("both", "mae"):
            tokens = self.mae.forward_features(video)
            feats["mae_tokens"] = tokens
            feats["mae_pooled"] = self.mae.forward_head(tokens, pre_logits=True)
        if all_streams or self.config.streams in ("both", "mm"):
            emb, tokens = self.mm.encode_video(mm_video, return_tokens=True)
            feats["mm_tokens"], feats["mm_pooled"] = tokens, emb
        return feats

    # ------------------------------------------------------------------ fusion

    def embed_features(self, feats: FeatureDict) -> torch.Tensor:
        c = self.config
        if c.streams == "mae":
            return feats["mae_pooled"]
        if c.streams == "mm":
            return feats["mm_pooled"]
        pool_a, pool_m = feats["mae_pooled"], feats["mm_pooled"]
        if self.fused:
            x = self.proj_a(feats["mae_tokens"])
            y = self.proj_m(feats["mm_tokens"])
            if self.proj_g is not None:
                y = torch.cat([self.proj_g(pool_m).unsqueeze(1), y], dim=1)
            for a_blk, m_blk in zip(self.a_reads_m, self.m_reads_a):
                x, y = a_blk(x, y), m_blk(y, x)
            pool_a = pool_a + torch.tanh(self.gate_a) * self.read_a(x.mean(1))
            read_y = y[:, 0] if self.proj_g is not None else y.mean(1)
            pool_m = pool_m + torch.tanh(self.gate_m) * self.read_m(read_y)
        return torch.cat([pool_a, pool_m], dim=-1)

    def forward_features_cached(self, feats: FeatureDict) -> torch.Tensor:
        return self.head(self.head_drop(self.head_norm(self.embed_features(feats))))

    def embed(self, video: torch.Tensor, mm_video: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed_features(self.backbone_features(video, mm_video))

    def forward(self, video: torch.Tensor, mm_video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features_cached(self.backbone_features(video, mm_video))

    def input_recipe(self):
        """Fusion models take their masked-video backbone's clips and derive the multimodal view themselves."""
        return self.mae.input_recipe()

    def submodels(self) -> dict[str, nn.Module]:
        """Modules built outside this class (saved with their own configs so a checkpoint is self-contained)."""
        return {"mae": self.mae, "mm": self.mm}


CMAFusion.config_class = FusionConfig  # not a named config: it needs two trained backbones to exist
MODEL_CLASSES = {"CMAFusion": CMAFusion}
