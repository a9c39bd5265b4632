"""CLIP-family checkpoint layouts -> :class:`~internvideo.models.video_clip.InternVideoMM`.

Three layouts are understood, each recognised from its keys and converted to
ours with the architecture inferred from tensor shapes:

* **OpenAI CLIP** state dicts (``visual.conv1.weight``, ``visual.transformer.
  resblocks.N.attn.in_proj_weight``, ``text_projection`` ...), as OpenAI's
  ``build_model`` reads them. The 2-D patch embedding is inflated to our Conv3d
  with a time kernel of 1. OpenAI ships TorchScript archives; reading those runs
  code stored in the file, so :func:`read_openai_clip` refuses unless asked.
* **HF transformers** ``CLIPModel`` directories (``config.json`` + weights);
  separate q/k/v projections are fused into ``qkv``.
* **Official InternVideo-MM** checkpoints (``{"state_dict": {"clip." + key}}``):
  OpenAI's names plus the video modules of the official ``clip_utils`` code —
  ``visual.transformer.temporal_cls_token`` (our ``visual.video_query``),
  ``visual.transformer.dpe.J`` (3x3x3 depthwise position convs),
  ``visual.transformer.dec.J`` (global blocks: ``ln_1`` on the query, ``ln_3``
  on the frame tokens, ``ln_2`` before the MLP), ``visual.transformer.balance``,
  ``visual_ln_post``, ``visual_proj``, ``text_mask_embedding``; and, where a
  checkpoint has them, UniFormerV2's local modules
  ``visual.transformer.resblocks.N.lmhra{1,2}.pos_embed.{0..3}`` (BatchNorm3d,
  1x1x1 conv, temporal depthwise conv, 1x1x1 conv). Keys outside ``clip.``
  (the official caption decoder, a momentum encoder) have no counterpart here
  and are left out, with a log line saying which.

Heads are not stored by any of these layouts: they are ``width // 64``, as in
OpenAI's and the official builders.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path
from collections.abc import Collection
from typing import Callable, Literal

import torch

from ..errors import MissingFile, UsageError
from ..models.video_clip import InternVideoMM, InternVideoMMConfig
from .base import CheckpointError, Format, StateDict, is_torchscript, read_config_json, read_state_dict

log = logging.getLogger(__name__)

OFFICIAL_PREFIX = "clip."
# Scalars that OpenAI's TorchScript archives store next to the weights; build_model drops them too.
_OPENAI_METADATA = ("input_resolution", "context_length", "vocab_size")

# Residual block: OpenAI / official name -> our name (the shared Block).
_BLOCK = [
    ("attn.in_proj_weight", "attn.qkv.weight"), ("attn.in_proj_bias", "attn.qkv.bias"),
    ("attn.out_proj.weight", "attn.proj.weight"), ("attn.out_proj.bias", "attn.proj.bias"),
    ("ln_1.weight", "norm1.weight"), ("ln_1.bias", "norm1.bias"),
    ("ln_2.weight", "norm2.weight"), ("ln_2.bias", "norm2.bias"),
    ("mlp.c_fc.weight", "mlp.fc1.weight"), ("mlp.c_fc.bias", "mlp.fc1.bias"),
    ("mlp.c_proj.weight", "mlp.fc2.weight"), ("mlp.c_proj.bias", "mlp.fc2.bias"),
]
# Official global block ("Extractor") -> the shared CrossBlock.
_GLOBAL_BLOCK = [
    ("attn.in_proj_weight", "cross_attn.qkv.weight"), ("attn.in_proj_bias", "cross_attn.qkv.bias"),
    ("attn.out_proj.weight", "cross_attn.proj.weight"), ("attn.out_proj.bias", "cross_attn.proj.bias"),
    ("ln_1.weight", "norm_q.weight"), ("ln_1.bias", "norm_q.bias"),
    ("ln_3.weight", "norm_kv.weight"), ("ln_3.bias", "norm_kv.bias"),
    ("ln_2.weight", "norm2.weight"), ("ln_2.bias", "norm2.bias"),
    ("mlp.c_fc.weight", "mlp.fc1.weight"), ("mlp.c_fc.bias", "mlp.fc1.bias"),
    ("mlp.c_proj.weight", "mlp.fc2.weight"), ("mlp.c_proj.bias", "mlp.fc2.bias"),
]
# UniFormerV2 local MHRA: an nn.Sequential named pos_embed -> named submodules.
_LOCAL = [(f"pos_embed.{idx}.{p}", f"{name}.{p}")
          for idx, name, params in ((0, "norm", ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
                                    (1, "down", ("weight", "bias")), (2, "temporal", ("weight", "bias")),
                                    (3, "up", ("weight", "bias")))
          for p in params]


def _rules(official: bool) -> list[tuple[str, str]]:
    """(foreign, ours) key templates; ``{i}`` stands for a block index."""
    rules = [
        ("visual.conv1.weight", "visual.patch_embed.proj.weight"),
        ("visual.class_embedding", "visual.class_embedding"),
        ("visual.positional_embedding", "visual.pos_embed"),
        ("visual.ln_pre.weight", "visual.ln_pre.weight"), ("visual.ln_pre.bias", "visual.ln_pre.bias"),
        ("token_embedding.weight", "text.token_embedding.weight"),
        ("positional_embedding", "text.pos_embed"),
        ("ln_final.weight", "text.ln_final.weight"), ("ln_final.bias", "text.ln_final.bias"),
        ("text_projection", "text.proj.weight"),
        ("logit_scale", "logit_scale"),
    ]
    rules += [(f"visual.transformer.resblocks.{{i}}.{a}", f"visual.blocks.{{i}}.{b}") for a, b in _BLOCK]
    rules += [(f"transformer.resblocks.{{i}}.{a}", f"text.blocks.{{i}}.{b}") for a, b in _BLOCK]
    if official:
        rules += [
            ("visual_ln_post.weight", "visual.ln_post.weight"), ("visual_ln_post.bias", "visual.ln_post.bias"),
            ("visual_proj", "visual.proj.weight"),
            ("text_mask_embedding", "text.mask_embedding"),
            ("visual.transformer.temporal_cls_token", "visual.video_query"),
            ("visual.transformer.balance", "visual.balance"),
            ("visual.transformer.dpe.{i}.weight", "visual.dpe.{i}.weight"),
            ("visual.transformer.dpe.{i}.bias", "visual.dpe.{i}.bias"),
        ]
        rules += [(f"visual.transformer.dec.{{i}}.{a}", f"visual.dec.{{i}}.{b}") for a, b in _GLOBAL_BLOCK]
        rules += [(f"visual.transformer.resblocks.{{i}}.lmhra{n}.{a}", f"visual.lmhra{n}.{{i}}.{b}")
                  for n in (1, 2) for a, b in _LOCAL]
    else:
        rules += [
            ("visual.ln_post.weight", "visual.ln_post.weight"), ("visual.ln_post.bias", "visual.ln_post.bias"),
            ("visual.proj", "visual.proj.weight"),
        ]
    return rules


def _compile(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(\d+)") + "$")


class _Renamer:
    """Both directions of one rule table: ``forward`` foreign -> ours, ``backward`` ours -> foreign."""

    def __init__(self, rules: list[tuple[str, str]]):
        self._fwd = [(_compile(a), b) for a, b in rules]
        self._bwd = [(_compile(b), a) for a, b in rules]

    @staticmethod
    def _apply(table: list[tuple[re.Pattern, str]], key: str) -> str | None:
        for pattern, template in table:
            m = pattern.match(key)
            if m:
                return template.replace("{i}", m.group(1)) if m.groups() else template
        return None

    def forward(self, key: str) -> str | None:
        return self._apply(self._fwd, key)

    def backward(self, key: str) -> str | None:
        return self._apply(self._bwd, key)


_OPENAI = _Renamer(_rules(official=False))
_OFFICIAL = _Renamer(_rules(official=True))
_TRANSPOSED = ("visual.proj.weight", "text.proj.weight")  # CLIP keeps x @ W parameters, we keep Linear weights


def _to_ours(sd: StateDict, renamer: _Renamer) -> StateDict:
    """Rename and reshape; keys without a rule keep their name so the loader reports them as unexpected."""
    out: StateDict = {}
    for key, value in sd.items():
        if key in _OPENAI_METADATA:
            continue
        new = renamer.forward(key)
        if new is None:
            out[key] = value
            continue
        if new in _TRANSPOSED:
            value = value.t()
        elif new == "visual.patch_embed.proj.weight" and value.ndim == 4:
            value = value.unsqueeze(2)  # inflate the 2-D patch embedding: a time kernel of 1
        elif new == "visual.pos_embed":
            value = value.unsqueeze(0)
        out[new] = value.contiguous()
    return out


def rename_official(state_dict: StateDict) -> StateDict:
    """Official InternVideo-MM names (without the ``clip.`` prefix) -> ours; the video tower's names are
    UniFormerV2's under ``visual.`` (used by :mod:`.uniformerv2`). Keys without a rule keep their name."""
    return _to_ours(state_dict, _OFFICIAL)


def _count(sd: StateDict, pattern: str) -> int:
    rx = re.compile(pattern)
    ids = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
    return max(ids) + 1 if ids else 0


def _require(sd: StateDict, keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise CheckpointError(f"not a complete {what} state dict: missing {missing}")


# ----------------------------------------------------------------------------- OpenAI CLIP


def is_openai_clip(state_dict: StateDict) -> bool:
    """OpenAI's ViT CLIP layout (not the ResNet variants, not the official InternVideo-MM layout)."""
    return ("visual.conv1.weight" in state_dict and "visual.proj" in state_dict
            and "text_projection" in state_dict and "visual.transformer.resblocks.0.attn.in_proj_weight" in state_dict)


def _infer_clip(sd: StateDict, what: str) -> dict:
    """Architecture fields shared by OpenAI's and the official layout, from shapes (as OpenAI's build_model)."""
    _require(sd, ("visual.conv1.weight", "visual.positional_embedding", "text_projection", "positional_embedding",
                  "token_embedding.weight", "ln_final.weight"), what)
    conv = sd["visual.conv1.weight"]
    width, patch = conv.shape[0], conv.shape[-1]
    n_pos = sd["visual.positional_embedding"].shape[0] - 1
    grid = math.isqrt(n_pos)
    if grid * grid != n_pos:
        raise CheckpointError(f"visual.positional_embedding has {n_pos} patch positions, not a square grid")
    text_width = sd["ln_final.weight"].shape[0]
    return dict(
        img_size=grid * patch, patch_size=patch, in_chans=conv.shape[1], vision_width=width,
        vision_layers=_count(sd, r"visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$"),
        vision_heads=width // 64,
        mlp_ratio=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
        embed_dim=sd["text_projection"].shape[1],
        context_length=sd["positional_embedding"].shape[0], vocab_size=sd["token_embedding.weight"].shape[0],
        text_width=text_width, text_layers=_count(sd, r"transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$"),
        text_heads=text_width // 64,
        text_mlp_ratio=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width,
    )


def infer_openai_clip_config(state_dict: StateDict) -> InternVideoMMConfig:
    """Plain CLIP: no local/global video modules, no mask embedding, no caption decoder.

    Turn the video modules on with config overrides (e.g. ``create_model("internvideo_mm_b16",
    pretrained=...)``); they start as identities / fresh queries.
    """
    if "visual.attnpool.c_proj.weight" in state_dict:
        raise CheckpointError("ResNet CLIP checkpoints are not supported: the video encoder is a ViT")
    fields = _infer_clip(state_dict, "OpenAI CLIP")
    return InternVideoMMConfig(**fields, use_local=False, num_global_layers=0, text_mask_embedding=False,
                               caption_layers=0)


def convert_openai_clip(state_dict: StateDict) -> tuple[InternVideoMMConfig, StateDict]:
    """OpenAI CLIP state dict -> (inferred config, our state dict)."""
    if not is_openai_clip(state_dict):
        raise CheckpointError("not an OpenAI ViT CLIP state dict (expected visual.conv1.weight, visual.proj, "
                              "text_projection, visual.transformer.resblocks.*)")
    return infer_openai_clip_config(state_dict), _to_ours(state_dict, _OPENAI)


def read_openai_clip(path: str | os.PathLike, allow_torchscript: bool = False) -> StateDict:
    """Weights of an OpenAI CLIP file: a plain state dict, or (if allowed) one of OpenAI's TorchScript archives."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"checkpoint not found: {path}")
    if is_torchscript(path):
        if not allow_torchscript:
            raise CheckpointError(
                f"{path} is a TorchScript archive (as OpenAI ships CLIP). Reading it runs code stored in the file, "
                "so it is refused by default; if you trust the file, call read_openai_clip(path, "
                "allow_torchscript=True) once and save the returned state dict (e.g. with safetensors)."
            )
        return {k: v for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
    return read_state_dict(path)


# ----------------------------------------------------------------------------- official InternVideo-MM


def _strip_official(state_dict: StateDict) -> StateDict:
    inner = state_dict.get("state_dict", state_dict)
    if not isinstance(inner, dict):
        raise CheckpointError("official InternVideo-MM checkpoint: 'state_dict' is not a dict")
    if not any(k.startswith(OFFICIAL_PREFIX) for k in inner):
        return dict(inner)  # already without the Lightning module's "clip." prefix
    others = Counter(k.split(".")[0] for k in inner if not k.startswith(OFFICIAL_PREFIX))
    if others:
        log.info("official InternVideo-MM checkpoint: leaving out keys outside 'clip.' with no counterpart here: %s",
                 ", ".join(f"{name}.* ({n})" for name, n in sorted(others.items())))
    return {k[len(OFFICIAL_PREFIX):]: v for k, v in inner.items() if k.startswith(OFFICIAL_PREFIX)}


def is_official_internvideo_mm(state_dict: StateDict) -> bool:
    """The official multimodal checkpoint, wrapped (``{"state_dict": {"clip." ...}}``) or not."""
    inner = state_dict.get("state_dict", state_dict)
    if not isinstance(inner, dict):
        return False
    return any(k in inner for k in ("clip.visual_ln_post.weight", "visual_ln_post.weight"))


def infer_official_internvideo_mm_config(state_dict: StateDict) -> InternVideoMMConfig:
    sd = _strip_official(state_dict)
    _require(sd, ("visual_proj", "visual_ln_post.weight"), "official InternVideo-MM")
    fields = _infer_clip(sd, "official InternVideo-MM")
    fields["embed_dim"] = sd["visual_proj"].shape[1]
    width = fields["vision_width"]
    n_global = _count(sd, r"visual\.transformer\.dec\.(\d+)\.attn\.in_proj_weight$")
    local = sorted({int(m.group(1)) for k in sd
                    for m in [re.match(r"visual\.transformer\.resblocks\.(\d+)\.lmhra1\.pos_embed\.1\.weight$", k)] if m})
    extra: dict = dict(num_global_layers=n_global, use_local=bool(local),
                       text_mask_embedding="text_mask_embedding" in sd, caption_layers=0)
    if n_global:
        extra["global_mlp_ratio"] = sd["visual.transformer.dec.0.mlp.c_fc.weight"].shape[0] / width
    if local:
        first = f"visual.transformer.resblocks.{local[0]}.lmhra1.pos_embed."
        extra.update(
            local_blocks=None if local == list(range(fields["vision_layers"])) else tuple(local),
            local_width=sd[first + "1.weight"].shape[0], local_kernel=sd[first + "2.weight"].shape[2],
            double_local=any(".lmhra2." in k for k in sd),
        )
    return InternVideoMMConfig(**fields, **extra)


def convert_official_internvideo_mm(state_dict: StateDict) -> tuple[InternVideoMMConfig, StateDict]:
    """Official InternVideo-MM checkpoint -> (inferred config, our state dict)."""
    if not is_official_internvideo_mm(state_dict):
        raise CheckpointError("not an official InternVideo-MM checkpoint (expected clip.visual_ln_post.weight)")
    config = infer_official_internvideo_mm_config(state_dict)
    return config, _to_ours(_strip_official(state_dict), _OFFICIAL)


def to_official_internvideo_mm(state_dict: StateDict) -> dict[str, StateDict]:
    """Our state dict -> the official layout ``{"state_dict": {"clip." + key}}`` (the inverse of the converter).

    Our caption decoder has no official counterpart and is left out.
    """
    out: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith("caption."):
            continue
        name = _OFFICIAL.backward(key)
        if name is None:
            raise CheckpointError(f"{key}: no official InternVideo-MM name")
        if key in _TRANSPOSED:
            value = value.t()
        elif key == "visual.pos_embed":
            value = value.squeeze(0)
        out[OFFICIAL_PREFIX + name] = value.contiguous()
    return {"state_dict": out}


# ----------------------------------------------------------------------------- HF transformers


def is_hf_clip_dir(path: str | os.PathLike) -> bool:
    """A ``CLIPModel.save_pretrained`` directory."""
    path = Path(path)
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.exists()):
        return False
    try:
        return read_config_json(cfg).get("model_type") == "clip"
    except json.JSONDecodeError:
        return False


def _hf_tower(meta: dict, name: str, defaults: dict) -> dict:
    return {**defaults, **(meta.get(name) or {})}


# transformers' CLIPTextConfig / CLIPVisionConfig defaults, for config.json files that leave fields out.
_HF_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5)
_HF_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def infer_hf_clip_config(meta: dict) -> InternVideoMMConfig:
    """Plain CLIP config from an HF ``CLIPConfig`` dict (as :func:`infer_openai_clip_config`)."""
    text = _hf_tower(meta, "text_config", _HF_TEXT_DEFAULTS)
    vision = _hf_tower(meta, "vision_config", _HF_VISION_DEFAULTS)
    for field in ("hidden_act", "layer_norm_eps"):
        if text[field] != vision[field]:
            raise CheckpointError(f"HF CLIP config: text and vision towers differ in {field} "
                                  f"({text[field]!r} vs {vision[field]!r}); one value is supported")
    if text["hidden_act"] not in ("quick_gelu", "gelu"):
        raise CheckpointError(f"HF CLIP config: hidden_act {text['hidden_act']!r} is not supported")
    return InternVideoMMConfig(
        img_size=vision["image_size"], patch_size=vision["patch_size"], in_chans=vision["num_channels"],
        vision_width=vision["hidden_size"], vision_layers=vision["num_hidden_layers"],
        vision_heads=vision["num_attention_heads"], mlp_ratio=vision["intermediate_size"] / vision["hidden_size"],
        embed_dim=meta.get("projection_dim", 512), context_length=text["max_position_embeddings"],
        vocab_size=text["vocab_size"], text_width=text["hidden_size"], text_layers=text["num_hidden_layers"],
        text_heads=text["num_attention_heads"], text_mlp_ratio=text["intermediate_size"] / text["hidden_size"],
        norm_eps=text["layer_norm_eps"], act=text["hidden_act"],
        use_local=False, num_global_layers=0, text_mask_embedding=False, caption_layers=0,
    )


_HF_LAYER = [("self_attn.out_proj.", "attn.proj."), ("layer_norm1.", "norm1."), ("layer_norm2.", "norm2."),
             ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2.")]
_HF_TOP = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.patch_embed.proj.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.pos_embed",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight", "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "visual_projection.weight": "visual.proj.weight",
    "text_model.embeddings.token_embedding.weight": "text.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "text.pos_embed",
    "text_model.final_layer_norm.weight": "text.ln_final.weight",
    "text_model.final_layer_norm.bias": "text.ln_final.bias",
    "text_projection.weight": "text.proj.weight",
    "logit_scale": "logit_scale",
}


def convert_hf_clip_state_dict(state_dict: StateDict) -> StateDict:
    """HF ``CLIPModel`` weights -> our layout (q/k/v fused into ``qkv``)."""
    out: StateDict = {}
    layer_rx = re.compile(r"(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)$")
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue  # a buffer of 0..n-1, not a weight
        if key in _HF_TOP:
            new = _HF_TOP[key]
            if new == "visual.patch_embed.proj.weight":
                value = value.unsqueeze(2)
            elif new == "visual.pos_embed":
                value = value.unsqueeze(0)
            out[new] = value
            continue
        m = layer_rx.match(key)
        if m is None:
            out[key] = value  # unknown: reported as unexpected by the loader
            continue
        tower, i, rest = m.groups()
        prefix = f"{'visual' if tower == 'vision' else 'text'}.blocks.{i}."
        if rest.startswith(("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.")):
            if rest.startswith("self_attn.q_proj."):
                p = rest.rsplit(".", 1)[1]
                base = f"{tower}_model.encoder.layers.{i}.self_attn."
                out[f"{prefix}attn.qkv.{p}"] = torch.cat(
                    [state_dict[f"{base}{x}_proj.{p}"] for x in ("q", "k", "v")], dim=0)
            continue
        for hf, ours in _HF_LAYER:
            if rest.startswith(hf):
                out[prefix + ours + rest[len(hf):]] = value
                break
        else:
            out[key] = value
    return out


def _read_hf_weights(path: Path) -> StateDict:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).exists():
            return read_state_dict(path / name)
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")


def convert_hf_clip(path: str | os.PathLike) -> tuple[InternVideoMMConfig, StateDict]:
    """HF ``CLIPModel`` directory -> (config, our state dict)."""
    path = Path(path)
    if not is_hf_clip_dir(path):
        raise CheckpointError(f"{path}: not an HF CLIPModel directory (config.json with model_type 'clip')")
    meta = read_config_json(path / "config.json")
    return infer_hf_clip_config(meta), convert_hf_clip_state_dict(_read_hf_weights(path))


# ----------------------------------------------------------------------------- weight averaging and loading


def average_weights(sd_a: StateDict, sd_b: StateDict, alpha: float = 0.5,
                    keys: Collection[str] | None = None) -> StateDict:
    """``alpha * a + (1 - alpha) * b`` for every floating-point tensor present in both (or only for ``keys``).

    The result has ``sd_a``'s keys: keys only in ``a`` (e.g. InternVideo's video
    modules when ``b`` is plain CLIP) are kept as they are. Convert both to our
    layout first. Shapes that differ are an error naming the first such key.
    """
    out: StateDict = {}
    for key, a in sd_a.items():
        b = sd_b.get(key)
        if b is None or not a.is_floating_point() or (keys is not None and key not in keys):
            out[key] = a
            continue
        if a.shape != b.shape:
            raise CheckpointError(f"cannot average {key}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        out[key] = (alpha * a.float() + (1 - alpha) * b.float()).to(a.dtype)
    return out


# The official CoTrain code (zero-shot recognition, multiple choice, QA) merges the parameters whose names contain
# one of these (CoTrain/modules/clip_param_keys.py, matched by substring on the Lightning module's "clip." names):
# OpenAI CLIP ViT-B's parameter list, 12 visual and 12 text blocks. With a deeper visual tower (ViT-L/14: 24 blocks)
# blocks 12 and up match none of them and keep the InternVideo weights; CLIP_PARAM_KEYS reproduces that.
_CLIP_PARAM_TOP = ("positional_embedding", "text_projection", "visual.class_embedding", "visual.positional_embedding",
                   "visual.conv1.weight", "visual.ln_pre.weight", "visual.ln_pre.bias", "visual.ln_post.weight",
                   "visual.ln_post.bias", "visual_ln_post.weight", "visual_ln_post.bias", "token_embedding.weight",
                   "visual.proj", "visual_proj", "ln_final.weight", "ln_final.bias")
CLIP_PARAM_KEYS: frozenset[str] = frozenset(
    _CLIP_PARAM_TOP + tuple(f"{tower}transformer.resblocks.{i}.{name}" for tower in ("", "visual.")
                            for i in range(12) for name, _ in _BLOCK))

MergeRule = Literal["clip_param_keys", "shared_names"]
#: Where each merge rule comes from in the official repository (InternVideo1/Downstream/...).
MERGE_RULE_SOURCES = {
    "clip_param_keys": "multi-modalities-downstream/CoTrain/modules/clip_module.py (clip_wiseft_coef) with "
                       "clip_param_keys.py",
    "shared_names": "Video-Text-Retrieval/modules/clip_evl/model.py (build_model, mergeclip/mergeweight)",
}
# The retrieval code renames InternVideo's visual.proj / visual.ln_post to visual_proj / visual_ln_post before it
# merges, while OpenAI's CLIP keeps the dotted names, so these two never share a name there and are not merged.
_RENAMED_BY_RETRIEVAL = ("visual.proj.weight", "visual.ln_post.weight", "visual.ln_post.bias")


def clip_merge_keys(model_sd: StateDict, clip_sd: StateDict, rule: MergeRule = "clip_param_keys") -> list[str]:
    """The keys (our names) of ``model_sd`` that the official code averages with CLIP, in ``model_sd``'s order.

    ``clip_param_keys``: the official name of the key contains one of
    :data:`CLIP_PARAM_KEYS` (CoTrain: zero-shot, multiple choice, QA).
    ``shared_names``: every key CLIP has too, but the visual projection and
    its LayerNorm (Video-Text-Retrieval). Both need the key in ``clip_sd``.
    """
    if rule not in MERGE_RULE_SOURCES:
        raise UsageError(f"merge rule must be one of {sorted(MERGE_RULE_SOURCES)}, not {rule!r}")
    keys = []
    for key in model_sd:
        if key not in clip_sd:
            continue
        if rule == "shared_names":
            if key not in _RENAMED_BY_RETRIEVAL:
                keys.append(key)
            continue
        name = _OFFICIAL.backward(key)
        if name is not None and any(k in name for k in CLIP_PARAM_KEYS):
            keys.append(key)
    return keys


def merge_with_clip(model_sd: StateDict, clip_sd: StateDict, coef: float = 0.5,
                    rule: MergeRule = "clip_param_keys") -> tuple[StateDict, list[str]]:
    """The official weight merge ("wise-ft"): ``coef * clip + (1 - coef) * model`` on :func:`clip_merge_keys`.

    Both state dicts in our layout. Returns the merged state dict (``model_sd``'s
    keys) and the merged keys. ``coef`` is CLIP's share (official
    ``clip_wiseft_coef`` / ``--mergeweight``: 0.5; MSVD retrieval 0.25).
    """
    if not 0.0 <= coef <= 1.0:
        raise UsageError(f"the merge coefficient is CLIP's share and must lie in [0, 1], not {coef}")
    keys = clip_merge_keys(model_sd, clip_sd, rule)
    return average_weights(model_sd, clip_sd, 1.0 - coef, keys=set(keys)), keys


# ----------------------------------------------------------------------------- format registry entries


def _format(detect: Callable[[StateDict, dict | None], bool],
            convert: Callable[[StateDict, dict | None], StateDict],
            infer: Callable[[StateDict, dict | None], InternVideoMMConfig], name: str) -> Format:
    # CLIP layouts convert the same way whatever the target model is (extra modules stay fresh).
    return Format(name, detect, lambda sd, meta, target: convert(sd, meta),
                  lambda sd, meta: (InternVideoMM, infer(sd, meta)))


FORMATS = (
    _format(lambda sd, meta: meta is None and is_official_internvideo_mm(sd),
            lambda sd, meta: convert_official_internvideo_mm(sd)[1],
            lambda sd, meta: infer_official_internvideo_mm_config(sd), "official InternVideo-MM"),
    _format(lambda sd, meta: meta is None and is_openai_clip(sd),
            lambda sd, meta: _to_ours(sd, _OPENAI),
            lambda sd, meta: infer_openai_clip_config(sd), "OpenAI CLIP"),
    _format(lambda sd, meta: meta is not None and meta.get("model_type") == "clip",
            lambda sd, meta: convert_hf_clip_state_dict(sd),
            lambda sd, meta: infer_hf_clip_config(meta or {}), "HF transformers CLIP"),
)

__all__ = [
    "CLIP_PARAM_KEYS", "FORMATS", "MERGE_RULE_SOURCES", "MergeRule", "average_weights", "clip_merge_keys",
    "merge_with_clip", "convert_hf_clip", "convert_hf_clip_state_dict",
    "convert_official_internvideo_mm", "convert_openai_clip", "infer_hf_clip_config",
    "infer_official_internvideo_mm_config", "infer_openai_clip_config", "is_hf_clip_dir",
    "is_official_internvideo_mm", "is_openai_clip", "read_openai_clip", "rename_official", "to_official_internvideo_mm",
]
