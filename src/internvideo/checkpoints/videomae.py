"""VideoMAE checkpoint layouts: the official repository's and HF transformers'.

Official (MCG-NJU/VideoMAE, and InternVideo's VideoMAE-H): our parameter names
are the official ones, so conversion only strips wrappers/prefixes and moves
between the pretraining layout (``encoder.``/``decoder.``) and the fine-tuning
layout. Position tables are not stored there (fixed sin/cos).

HF transformers (``VideoMAEForPreTraining`` / ``VideoMAEForVideoClassification``
/ ``VideoMAEModel`` ``save_pretrained`` directories): separate query/key/value
projections are fused into ``qkv``; names are mapped below.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..models.videomae import VideoMAEClassifier, VideoMAEConfig, VideoMAEPretrain
from .base import Format, StateDict, UnsureArchitecture

# Official widths → heads (the official constructors fix heads per size; shapes cannot tell).
_HEADS_BY_WIDTH = {192: 3, 384: 6, 512: 8, 640: 8, 768: 12, 1024: 16, 1280: 16, 1408: 16}
_DECODER_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token")
_WRAPPER_PREFIXES = ("module.", "backbone.", "_orig_mod.")


def _strip_wrappers(sd: StateDict) -> StateDict:
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in _WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def adapt_layout(sd: StateDict, model: nn.Module | None) -> StateDict:
    """Move between the pretraining layout (``encoder.*`` + decoder) and the classifier layout.

    A pretraining checkpoint loaded into a classifier keeps the encoder only: the
    decoder is dropped and the pretraining ``encoder.norm`` is dropped when the
    classifier mean-pools (it has no final norm there; its ``fc_norm`` is new),
    as the official fine-tuning does.
    """
    if model is None or isinstance(model, VideoMAEPretrain):
        return sd
    if not any(k.startswith("encoder.") for k in sd):
        return sd
    out = {}
    for k, v in sd.items():
        if k.startswith(_DECODER_PREFIXES):
            continue
        if k.startswith("encoder."):
            k = k[len("encoder."):]
            if k.startswith("norm.") and isinstance(getattr(model, "norm", None), nn.Identity):
                continue
            out[k] = v
    return out


# ----------------------------------------------------------------------------- official


def _is_official(sd: StateDict, meta: dict | None) -> bool:
    if meta is not None:
        return False
    keys = _strip_wrappers(sd)
    w = keys.get("encoder.patch_embed.proj.weight", keys.get("patch_embed.proj.weight"))
    return w is not None and w.ndim == 5 and any(".attn.qkv.weight" in k for k in keys)


def _count_blocks(sd: StateDict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for k in sd for m in [pat.match(k)] if m}
    return max(ids) + 1 if ids else 0


def _heads(width: int, field: str, unsure: list[str]) -> int:
    if width not in _HEADS_BY_WIDTH:  # no official size has this width: any head count would be a guess
        unsure.append(field)
    return _HEADS_BY_WIDTH.get(width, max(1, width // 64))


def _infer_official(sd: StateDict, meta: dict | None) -> tuple[type[nn.Module], VideoMAEConfig]:
    sd = _strip_wrappers(sd)
    pretrain = "encoder.patch_embed.proj.weight" in sd
    enc = "encoder." if pretrain else ""
    patch_w = sd[f"{enc}patch_embed.proj.weight"]
    width = patch_w.shape[0]
    unsure: list[str] = []
    kw: dict = dict(
        embed_dim=width, in_chans=patch_w.shape[1], tubelet_size=patch_w.shape[2], patch_size=patch_w.shape[3],
        depth=_count_blocks(sd, f"{enc}blocks."), num_heads=_heads(width, "num_heads", unsure),
        mlp_ratio=sd[f"{enc}blocks.0.mlp.fc1.weight"].shape[0] / width,
        qkv_bias=f"{enc}blocks.0.attn.q_bias" in sd,
        init_values=1.0 if f"{enc}blocks.0.gamma_1" in sd else None,
        use_learnable_pos_emb=f"{enc}pos_embed" in sd,
    )
    if kw["use_learnable_pos_emb"]:
        # The table fixes the token count only; assume the official 16 frames and solve for the size.
        n, t = sd[f"{enc}pos_embed"].shape[1], 16 // kw["tubelet_size"]
        side = round((n / t) ** 0.5)
        if t * side * side == n:
            kw["img_size"] = side * kw["patch_size"]
    if pretrain:
        dw = sd["decoder.head.weight"].shape[1]
        kw.update(decoder_embed_dim=dw, decoder_depth=_count_blocks(sd, "decoder.blocks."),
                  decoder_num_heads=_heads(dw, "decoder_num_heads", unsure), num_classes=0,
                  decoder_mlp_ratio=sd["decoder.blocks.0.mlp.fc1.weight"].shape[0] / dw)
        cls: type[nn.Module] = VideoMAEPretrain
    else:
        head = sd.get("head.weight")
        kw.update(num_classes=0 if head is None else head.shape[0], use_mean_pooling="fc_norm.weight" in sd)
        cls = VideoMAEClassifier
    if unsure:
        raise UnsureArchitecture(f"width {width} is not an official VideoMAE size, so the number of attention heads "
                                 f"cannot be read from the weights; pass {', '.join(f + '=...' for f in unsure)} "
                                 "(e.g. load_model(path, num_heads=H)), or load a directory with its config.json",
                                 unsure, cls, VideoMAEConfig(**kw))
    return cls, VideoMAEConfig(**kw)


def _convert_official(sd: StateDict, meta: dict | None, model: nn.Module | None) -> StateDict:
    sd = _strip_wrappers(sd)
    if model is None or isinstance(model, VideoMAEPretrain) or "encoder.patch_embed.proj.weight" in sd:
        return adapt_layout(sd, model)
    return sd


# ----------------------------------------------------------------------------- HF transformers

_HF_BLOCK = [
    ("attention.output.dense.", "attn.proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
]


def _is_hf(sd: StateDict, meta: dict | None) -> bool:
    return meta is not None and meta.get("model_type") == "videomae"


def _infer_hf(sd: StateDict, meta: dict | None) -> tuple[type[nn.Module], VideoMAEConfig]:
    m = meta or {}
    archs = m.get("architectures") or []
    pretrain = "VideoMAEForPreTraining" in archs or any(k.startswith("decoder.") for k in sd)
    classifier = "VideoMAEForVideoClassification" in archs or "classifier.weight" in sd
    width = m.get("hidden_size", 768)
    use_mean_pooling = m.get("use_mean_pooling", True)
    cfg = VideoMAEConfig(
        img_size=m.get("image_size", 224), patch_size=m.get("patch_size", 16), num_frames=m.get("num_frames", 16),
        tubelet_size=m.get("tubelet_size", 2), in_chans=m.get("num_channels", 3), embed_dim=width,
        depth=m.get("num_hidden_layers", 12), num_heads=m.get("num_attention_heads", 12),
        mlp_ratio=m.get("intermediate_size", 4 * width) / width, qkv_bias=m.get("qv_bias", m.get("qkv_bias", True)),
        norm_eps=m.get("layer_norm_eps", 1e-12), head_norm_eps=1e-5, use_mean_pooling=use_mean_pooling,
        num_classes=(len(m.get("id2label") or {}) or m.get("num_labels", 2)) if classifier else 0,
        decoder_embed_dim=m.get("decoder_hidden_size", 384), decoder_depth=m.get("decoder_num_hidden_layers", 4),
        decoder_num_heads=m.get("decoder_num_attention_heads", 6),
        decoder_mlp_ratio=m.get("decoder_intermediate_size", 1536) / m.get("decoder_hidden_size", 384),
        norm_pix_loss=m.get("norm_pix_loss", True),
        pretrain_final_norm=not use_mean_pooling,
    )
    if m.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"HF VideoMAE config: hidden_act {m.get('hidden_act')!r} is not supported (only 'gelu')")
    return (VideoMAEPretrain if pretrain else VideoMAEClassifier), cfg


def _hf_blocks(sd: StateDict, src: str, dst: str, out: StateDict) -> None:
    n = _count_blocks(sd, src)
    for i in range(n):
        s, d = f"{src}{i}.", f"{dst}{i}."
        a = f"{s}attention.attention."
        out[f"{d}attn.qkv.weight"] = torch.cat(
            [sd[f"{a}query.weight"], sd[f"{a}key.weight"], sd[f"{a}value.weight"]], dim=0)
        # transformers ≥ 4.4x keeps the q/v biases as Linear biases; older versions as q_bias/v_bias.
        for ours, names in (("q_bias", ("query.bias", "q_bias")), ("v_bias", ("value.bias", "v_bias"))):
            for name in names:
                if f"{a}{name}" in sd:
                    out[f"{d}attn.{ours}"] = sd[f"{a}{name}"]
        for hf, mine in _HF_BLOCK:
            for p in ("weight", "bias"):
                if f"{s}{hf}{p}" in sd:
                    out[f"{d}{mine}{p}"] = sd[f"{s}{hf}{p}"]


def _convert_hf(sd: StateDict, meta: dict | None, model: nn.Module | None) -> StateDict:
    sd = {k[len("videomae."):] if k.startswith("videomae.") else k: v for k, v in sd.items()}
    out: StateDict = {}
    out["patch_embed.proj.weight"] = sd["embeddings.patch_embeddings.projection.weight"]
    out["patch_embed.proj.bias"] = sd["embeddings.patch_embeddings.projection.bias"]
    _hf_blocks(sd, "encoder.layer.", "blocks.", out)
    for hf, mine in (("layernorm.", "norm."), ("fc_norm.", "fc_norm."), ("classifier.", "head.")):
        for p in ("weight", "bias"):
            if f"{hf}{p}" in sd:
                out[f"{mine}{p}"] = sd[f"{hf}{p}"]
    if "encoder_to_decoder.weight" in sd:
        out = {f"encoder.{k}": v for k, v in out.items()}
        out["encoder_to_decoder.weight"] = sd["encoder_to_decoder.weight"]
        out["mask_token"] = sd["mask_token"]
        _hf_blocks(sd, "decoder.decoder_layers.", "decoder.blocks.", out)
        for p in ("norm.weight", "norm.bias", "head.weight", "head.bias"):
            out[f"decoder.{p}"] = sd[f"decoder.{p}"]
    return adapt_layout(out, model)


FORMATS = (
    Format("official VideoMAE", _is_official, _convert_official, _infer_official),
    Format("HF transformers VideoMAE", _is_hf, _convert_hf, _infer_hf),
)
