"""Cross-model attention (CMA): one video representation from InternVideo's two frozen encoders.

The official code for this part was never published; the paper's text
(arXiv 2212.03191, Sec. 3.3 "Cross-Model Interaction") is the specification.
Two designs are built by :class:`CMAFusion`, chosen by ``FusionConfig.cma``:

``cma="paper"`` (default), as the paper describes it:

* "Both backbones are frozen except the classification layers and the query
  tokens in the multimodal video encoder": the only backbone parameter that
  trains is the multimodal encoder's learnable video query (UniFormerV2's
  ``temporal_cls_token``, our ``mm.visual.video_query``; ``train_mm_query``);
  everything else that trains is new (CMA modules, projections, head).
* "A CMA module is a standard multi-head cross-attention (MHCA) with FFN": the
  shared :class:`~internvideo.models.layers.CrossBlock` (pre-norm cross-attention
  + MLP, no gates).
* Intermediate CMAs: "intermediate tokens of the multimodal video encoder are
  keys and values, tokens of the masked video encoder are queries ... the CMA
  outputs a gradually aligned representation". Our reading (the paper gives no
  more detail): the aligned representation is a side stream ``z`` over the
  masked encoder's tokens, ``z_k = CMA_k(z_{k-1} + P_k(A_{a_k}), Q_k(M_{m_k}))``
  with ``z_0 = 0``, ``A_i``/``M_i`` the two encoders' block-``i`` outputs and
  ``P``/``Q`` LayerNorm + linear projections to ``width``. The CMA outputs are
  *not* written back into the frozen masked encoder (that would make every
  backbone layer after the first CMA depend on trained weights, so the
  backbone's activations could neither be computed without gradients nor
  cached); the side stream keeps both backbones a single frozen forward pass.
* Layer pairing (the paper says "several middle layers", not which): by
  relative depth. With ``K = num_layers`` CMA modules, the ``K - 1``
  intermediate ones read depths ``r_k = 1/2 + k / (2 (K - 1))``, ``k = 1..K-1``,
  evenly spaced over the last half of each encoder and ending at its last
  block (block ``ceil(r_k * depth) - 1`` of each; the same block may serve two
  CMAs in a shallow encoder). ``mae_layers`` / ``mm_layers`` set them explicitly.
* The last CMA: "the query is the class token of the multimodal video encoder,
  keys and values are the tokens of the masked video encoder": the multimodal
  encoder's video token (its global query mixed with the frame-mean CLS through
  ``balance``, before ``ln_post``; recomputed from the stored outputs of the
  global blocks' layers so that the video query trains) reads the aligned
  stream ``z`` (with ``K = 1``: the masked encoder's last-layer tokens),
  projected to the multimodal width; one CrossBlock at that width with the
  multimodal encoder's head count. Its output feeds the classification layer
  (LayerNorm -> dropout -> linear, as UniFormerV2's head).

``cma="gated"``: our earlier design, kept as a variant. Both streams' last-layer
tokens are projected to ``width``; ``num_layers`` layers in which each stream
reads the other with tanh-gated cross-attention + FFN (gates start at zero);
the representation is ``[pool_a, g]`` (VideoMAE's pooled feature, the
multimodal video feature) plus gated read-outs of the fused streams, so a fresh
model is exactly late fusion. Nothing of either backbone trains.

``streams`` selects the ablation baselines with the same code: ``"mae"`` or
``"mm"`` alone (linear head on one pooled feature), ``"both"`` with
``num_layers=0`` (late fusion).

Backbone features (:meth:`CMAFusion.backbone_features`) come from one forward
pass per backbone, intermediate tokens included (``forward_intermediates`` /
``return_layers=``); they can be cached (``data.feature_cache``). A cache is
keyed by :meth:`CMAFusion.feature_key`: both backbones' weights and configs
and the layers it holds, so a changed backbone never reuses stale features.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .layers import CrossBlock, init_weights

CMAKind = Literal["paper", "gated"]


@dataclass
class FusionConfig:
    mae_backbone: str = ""  # directory (or any supported checkpoint) of a VideoMAE classifier/encoder
    mm_backbone: str = ""  # directory of an InternVideoMM model (or of its classifier)
    num_classes: int = 400
    class_names: tuple[str, ...] | None = None  # head row i's class (saved with the checkpoint)
    cma: CMAKind = "paper"
    width: int = 512  # the fused stream's width
    # CMA modules. paper: num_layers - 1 intermediate ones + the last (class token); gated: fusion layers.
    # None: paper 4, gated 2 (the paper gives no number; both ours).
    num_layers: int | None = None
    num_heads: int = 8
    mlp_ratio: float = 4.0
    # paper: the blocks (0-based) whose outputs the intermediate CMAs read; None = by relative depth (docstring)
    mae_layers: tuple[int, ...] | None = None
    mm_layers: tuple[int, ...] | None = None
    train_mm_query: bool = True  # paper: the multimodal encoder's video query trains (its only trained weights)
    use_query_token: bool = True  # gated: the multimodal video feature joins its stream as a token
    streams: Literal["both", "mae", "mm"] = "both"
    head_dropout: float = 0.5  # "heavy dropout before the head"

    def __post_init__(self) -> None:
        if self.cma not in ("paper", "gated"):
            raise ValueError(f"cma must be 'paper' or 'gated', not {self.cma!r}")
        if self.num_layers is not None and self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}")
        for name in ("mae_layers", "mm_layers"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(int(i) for i in value))
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)

    @property
    def resolved_num_layers(self) -> int:
        if self.num_layers is not None:
            return self.num_layers
        return 4 if self.cma == "paper" else 2


def relative_depth_layers(depth: int, count: int) -> tuple[int, ...]:
    """``count`` block indices evenly spaced by relative depth over the last half of a ``depth``-block encoder,
    ending at its last block: block ``ceil(r * depth) - 1`` for ``r = 1/2 + k / (2 count)``, ``k = 1..count``."""
    return tuple(max(0, math.ceil((0.5 + k / (2 * count)) * depth - 1e-9) - 1) for k in range(1, count + 1))


FeatureDict = dict[str, torch.Tensor]


def _projection(d_in: int, d_out: int) -> nn.Sequential:
    # LayerNorm first: intermediate block outputs are the raw residual stream, whose scale grows with depth.
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_out))


class CMAFusion(nn.Module):
    """``forward(video, mm_video=None) -> logits``; ``embed(...)`` the representation the head reads.

    ``video`` is the VideoMAE view (ImageNet-normalised). ``mm_video`` is the
    multimodal view (CLIP-normalised); when omitted it is derived from
    ``video`` by uniform temporal subsampling and re-normalisation.
    The backbones are built by the caller (``internvideo.factory.create_fusion``
    loads them from the paths in the config) and passed in. Their weights and
    configs are part of this model's checkpoint, so a saved fusion model is
    self-contained. ``mm`` is an :class:`~internvideo.models.video_clip.InternVideoMM`
    or an :class:`~internvideo.models.video_clip.InternVideoMMClassifier`.
    """

    def __init__(self, config: FusionConfig, mae: nn.Module, mm: nn.Module):
        super().__init__()
        c = self.config = config
        self.mae, self.mm = mae, mm
        for p in list(self.mae.parameters()) + list(self.mm.parameters()):
            p.requires_grad_(False)
        d_a = mae.config.embed_dim
        d_m = mm.config.vision_width
        e = mm.video_feature_dim
        w = c.width
        k = c.resolved_num_layers
        self.out_dims = {"mae": d_a, "mm": e}
        self.mae_layers: tuple[int, ...] = ()
        self.mm_layers: tuple[int, ...] = ()
        if self.fused and c.cma == "paper":
            if mm.visual.dec is None:
                raise ValueError("cma='paper' needs a multimodal encoder with global blocks (its class token)")
            n_mid = k - 1
            self.mae_layers = self._layers("mae_layers", c.mae_layers, mae.config.depth, n_mid)
            self.mm_layers = self._layers("mm_layers", c.mm_layers, mm.config.vision_layers, n_mid)
            self.proj_a = nn.ModuleList([_projection(d_a, w) for _ in range(n_mid)])
            self.proj_m = nn.ModuleList([_projection(d_m, w) for _ in range(n_mid)])
            self.cma_blocks = nn.ModuleList([CrossBlock(w, c.num_heads, c.mlp_ratio) for _ in range(n_mid)])
            # The last CMA: the class token (width d_m) reads the aligned stream, brought to d_m.
            self.proj_last = _projection(w, d_m) if n_mid else _projection(d_a, d_m)
            self.cma_last = CrossBlock(d_m, mm.config.vision_heads, c.mlp_ratio)
            if c.train_mm_query:
                mm.visual.video_query.requires_grad_(True)
        elif self.fused:
            self.proj_a = nn.Sequential(nn.Linear(d_a, w), nn.LayerNorm(w))
            self.proj_m = nn.Sequential(nn.Linear(d_m, w), nn.LayerNorm(w))
            self.proj_g = nn.Sequential(nn.Linear(e, w), nn.LayerNorm(w)) if c.use_query_token else None
            self.a_reads_m = nn.ModuleList([CrossBlock(w, c.num_heads, c.mlp_ratio, gated=True)
                                            for _ in range(k)])
            self.m_reads_a = nn.ModuleList([CrossBlock(w, c.num_heads, c.mlp_ratio, gated=True)
                                            for _ in range(k)])
            self.read_a, self.read_m = nn.Linear(w, d_a), nn.Linear(w, e)
            self.gate_a, self.gate_m = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        if self.fused and c.cma == "paper":
            dim = d_m
        else:
            dim = {"both": d_a + e, "mae": d_a, "mm": e}[c.streams]
        self.head_norm = nn.LayerNorm(dim)
        self.head_drop = nn.Dropout(c.head_dropout)
        self.head = nn.Linear(dim, c.num_classes)
        for name, module in self.named_children():
            if name not in ("mae", "mm"):
                module.apply(init_weights)
        self.train()

    @staticmethod
    def _layers(name: str, given: tuple[int, ...] | None, depth: int, count: int) -> tuple[int, ...]:
        if given is None:
            return relative_depth_layers(depth, count) if count else ()
        if len(given) != count:
            raise ValueError(f"{name}: {count} intermediate CMA modules (num_layers - 1) need {count} layers, "
                             f"got {list(given)}")
        bad = [i for i in given if not -depth <= i < depth]
        if bad:
            raise ValueError(f"{name}: {bad} out of range for an encoder of {depth} blocks")
        return tuple(i % depth for i in given)

    @property
    def fused(self) -> bool:
        return self.config.streams == "both" and self.config.resolved_num_layers > 0

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

    def feature_spec(self) -> dict:
        """What :meth:`backbone_features` computes (``all_streams=True``): the cache key's non-weight part."""
        paper = self.fused and self.config.cma == "paper"
        return {"mae_layers": list(self.mae_layers), "mm_layers": list(self.mm_layers),
                "mm_global_layers": list(self.mm.visual.global_layers) if paper else [],
                "tokens": "paper" if paper else "last"}

    def feature_key(self) -> str:
        """A key for cached backbone features: both backbones' classes, configs and weights, and :meth:`feature_spec`.

        Any change of either backbone (one weight, one config field) gives another key.
        """
        h = hashlib.sha256(json.dumps(self.feature_spec(), sort_keys=True).encode())
        for name, module in (("mae", self.mae), ("mm", self.mm)):
            h.update(name.encode() + type(module).__name__.encode())
            h.update(json.dumps(dataclasses.asdict(module.config), sort_keys=True, default=str).encode())
            for key, tensor in module.state_dict().items():
                h.update(key.encode() + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
                h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    @torch.no_grad()
    def backbone_features(self, video: torch.Tensor, mm_video: torch.Tensor | None = None,
                          all_streams: bool = False) -> FeatureDict:
        """What fusion needs from the frozen encoders (one forward pass each); cache these to train without videos.

        ``all_streams`` computes both pooled features even for a single-stream
        baseline, so one feature cache serves every ablation variant of a kind.
        """
        if mm_video is None:
            mm_video = self.mm_view(video)
        paper = self.fused and self.config.cma == "paper"
        streams = self.config.streams
        feats: FeatureDict = {}
        if all_streams or streams in ("both", "mae"):
            tokens, layers = self.mae.forward_intermediates(video, self.mae_layers)
            feats["mae_tokens"] = tokens
            feats["mae_pooled"] = self.mae.forward_head(tokens, pre_logits=True)
            feats.update({f"mae_layer{i}": x for i, x in layers.items()})
        if all_streams or streams in ("both", "mm"):
            visual = self.mm.visual
            wanted = set(self.mm_layers) | (set(visual.global_layers) if paper else set())
            out = visual.forward_features(mm_video, return_layers=sorted(wanted))
            feats["mm_pooled"] = self.mm.embed_video_features(out)
            if paper:
                feats["mm_frame_cls"] = out.tokens[:, :, 0].mean(dim=1)
                feats.update({f"mm_layer{i}": x for i, x in out.layers.items()})
            elif self.fused or all_streams:  # baselines store them too: one cache serves them and the gated CMA
                feats["mm_tokens"] = out.tokens.flatten(1, 2)
        return feats

    # ------------------------------------------------------------------ fusion

    def mm_class_token(self, feats: FeatureDict) -> torch.Tensor:
        """The multimodal encoder's video token ``(B, D_m)``, from its stored layer outputs (the query may train)."""
        visual = self.mm.visual
        layers = [feats[f"mm_layer{i}"] for i in visual.global_layers]
        side = math.isqrt(layers[0].shape[2] - 1)
        query = visual.run_global(layers, (side, side))
        return visual.mix(query, feats["mm_frame_cls"])

    def _embed_paper(self, feats: FeatureDict) -> torch.Tensor:
        z = None
        for k, (a_i, m_i) in enumerate(zip(self.mae_layers, self.mm_layers)):
            q = self.proj_a[k](feats[f"mae_layer{a_i}"])
            q = q if z is None else z + q
            kv = self.proj_m[k](feats[f"mm_layer{m_i}"].flatten(1, 2))
            z = self.cma_blocks[k](q, kv)
        kv = self.proj_last(feats["mae_tokens"] if z is None else z)
        cls = self.mm_class_token(feats).unsqueeze(1)
        return self.cma_last(cls, kv)[:, 0]

    def _embed_gated(self, feats: FeatureDict) -> torch.Tensor:
        pool_a, pool_m = feats["mae_pooled"], feats["mm_pooled"]
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

    def embed_features(self, feats: FeatureDict) -> torch.Tensor:
        c = self.config
        if c.streams == "mae":
            return feats["mae_pooled"]
        if c.streams == "mm":
            return feats["mm_pooled"]
        if not self.fused:
            return torch.cat([feats["mae_pooled"], feats["mm_pooled"]], dim=-1)
        return self._embed_paper(feats) if c.cma == "paper" else self._embed_gated(feats)

    def forward_features_cached(self, feats: FeatureDict) -> torch.Tensor:
        return self.head(self.head_drop(self.head_norm(self.embed_features(feats))))

    def embed(self, video: torch.Tensor, mm_video: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed_features(self.backbone_features(video, mm_video))

    def forward(self, video: torch.Tensor, mm_video: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features_cached(self.backbone_features(video, mm_video))

    def no_weight_decay(self) -> set[str]:
        return {"mm.visual.video_query"}  # a token, like every other model's queries

    def input_recipe(self):
        """Fusion models take their masked-video backbone's clips and derive the multimodal view themselves."""
        return self.mae.input_recipe()

    def submodels(self) -> dict[str, nn.Module]:
        """Modules built outside this class (saved with their own configs so a checkpoint is self-contained)."""
        return {"mae": self.mae, "mm": self.mm}


CMAFusion.config_class = FusionConfig  # not a named config: it needs two trained backbones to exist
MODEL_CLASSES = {"CMAFusion": CMAFusion}
