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

import dataclasses
import json
import re

import torch
from torch import nn

from ..models.videomae import VideoMAEClassifier, VideoMAEConfig, VideoMAEPretrain
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from .base import CheckpointError, Format, StateDict, UnsureArchitecture

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


#: Our config fields HF's VideoMAEConfig has no slot for; the export keeps them in config.json's "internvideo" entry.
_HF_LESS_FIELDS = ("frame_interval", "sampling", "mean", "std", "head_norm_eps", "drop_path_rate", "fc_drop_rate",
                   "init_scale", "mask_ratio", "use_checkpoint", "decoder_mlp_ratio", "pretrain_final_norm")
# A pretraining model's config also holds the classifier fields a fine-tuning would start from; HF's does not.
_HF_LESS_PRETRAIN = ("num_classes", "use_mean_pooling", "class_names")


def _recipe_from_preprocessor(pre: dict) -> dict:
    # An HF directory's preprocessor_config.json holds the normalisation and crop size its model was trained with.
    out: dict = {}
    if pre.get("image_mean") and pre.get("image_std"):
        out.update(mean=tuple(pre["image_mean"]), std=tuple(pre["image_std"]))
    return out


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
        drop_rate=m.get("hidden_dropout_prob", 0.0), attn_drop_rate=m.get("attention_probs_dropout_prob", 0.0),
        class_names=_class_names(m.get("id2label")) if classifier else None,
    )
    if m.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"HF VideoMAE config: hidden_act {m.get('hidden_act')!r} is not supported (only 'gelu')")
    extra = {**_recipe_from_preprocessor(m.get("preprocessor") or {}), **(m.get("internvideo") or {})}
    kept = _HF_LESS_FIELDS + (_HF_LESS_PRETRAIN if pretrain else ())
    extra = {k: tuple(v) if isinstance(v, list) else v for k, v in extra.items() if k in kept}
    return (VideoMAEPretrain if pretrain else VideoMAEClassifier), dataclasses.replace(cfg, **extra)


def _class_names(id2label: dict | None) -> tuple[str, ...] | None:
    """Class names in head order; None for HF's placeholders (``LABEL_0``, ...), which name nothing."""
    if not id2label:
        return None
    names = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    return None if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names


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


# ----------------------------------------------------------------------------- ours -> HF transformers


class NotExportable(CheckpointError):
    """The model uses a feature HF transformers' VideoMAE cannot express; the message names the config field."""


def _hf_block_weights(sd: StateDict, src: str, dst: str, out: StateDict) -> None:
    # The inverse of _hf_blocks: fused qkv split into query/key/value, q/v biases as Linear biases (no key bias).
    for i in range(_count_blocks(sd, src)):
        s, d = f"{src}{i}.", f"{dst}{i}."
        a = f"{d}attention.attention."
        for name, w in zip(("query", "key", "value"), sd[f"{s}attn.qkv.weight"].chunk(3, dim=0)):
            out[f"{a}{name}.weight"] = w.clone()
        for ours, hf in (("q_bias", "query.bias"), ("v_bias", "value.bias")):
            if f"{s}attn.{ours}" in sd:
                out[f"{a}{hf}"] = sd[f"{s}attn.{ours}"]
        for hf, mine in _HF_BLOCK:
            for p in ("weight", "bias"):
                out[f"{d}{hf}{p}"] = sd[f"{s}{mine}{p}"]


def to_hf(model: nn.Module) -> tuple[StateDict, dict]:
    """Our VideoMAE classifier/pretraining model as an HF transformers state dict and ``config.json`` dict.

    The inverse of the HF converter above: a classifier becomes
    ``VideoMAEForVideoClassification`` (``VideoMAEModel`` without a head), a
    pretraining model ``VideoMAEForPreTraining``. Config fields HF has no slot
    for (the input recipe, ``head_norm_eps``, ...) travel in the ``internvideo``
    entry of the config, so importing the export back rebuilds the same model.
    Raises :class:`NotExportable` for layer scale or learnable position tables,
    which HF's VideoMAE does not have.
    """
    c = model.config
    if not isinstance(model, (VideoMAEClassifier, VideoMAEPretrain)):
        raise NotExportable(f"{type(model).__name__} is not a VideoMAE model; HF export covers VideoMAEClassifier "
                            "and VideoMAEPretrain")
    if c.init_values:
        raise NotExportable(f"config init_values={c.init_values}: HF transformers' VideoMAE has no layer scale")
    if c.use_learnable_pos_emb:
        raise NotExportable("config use_learnable_pos_emb=true: HF transformers' VideoMAE has only the fixed "
                            "sin/cos position table")
    pretrain = isinstance(model, VideoMAEPretrain)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    enc = "encoder." if pretrain else ""
    out: StateDict = {
        "videomae.embeddings.patch_embeddings.projection.weight": sd[f"{enc}patch_embed.proj.weight"],
        "videomae.embeddings.patch_embeddings.projection.bias": sd[f"{enc}patch_embed.proj.bias"],
    }
    _hf_block_weights(sd, f"{enc}blocks.", "videomae.encoder.layer.", out)
    pairs = [(f"{enc}norm.", "videomae.layernorm.")] + ([] if pretrain else [("fc_norm.", "fc_norm."),
                                                                               ("head.", "classifier.")])
    for mine, hf in pairs:
        for p in ("weight", "bias"):
            if f"{mine}{p}" in sd:
                out[f"{hf}{p}"] = sd[f"{mine}{p}"]
    if pretrain:
        out["encoder_to_decoder.weight"] = sd["encoder_to_decoder.weight"]
        out["mask_token"] = sd["mask_token"]
        _hf_block_weights(sd, "decoder.blocks.", "decoder.decoder_layers.", out)
        for p in ("norm.weight", "norm.bias", "head.weight", "head.bias"):
            out[f"decoder.{p}"] = sd[f"decoder.{p}"]
        arch = "VideoMAEForPreTraining"
        # HF adds the encoder's final LayerNorm exactly when it does not mean-pool.
        use_mean_pooling = not c.pretrain_final_norm
    else:
        arch = "VideoMAEForVideoClassification" if c.num_classes else "VideoMAEModel"
        use_mean_pooling = c.use_mean_pooling
        if not c.num_classes:  # VideoMAEModel's own keys carry no "videomae." prefix
            out = {k[len("videomae."):]: v for k, v in out.items()}
    dec_ratio = c.decoder_mlp_ratio or c.mlp_ratio
    config = {
        "architectures": [arch], "model_type": "videomae", "dtype": "float32",
        "image_size": c.img_size, "patch_size": c.patch_size, "num_channels": c.in_chans,
        "num_frames": c.num_frames, "tubelet_size": c.tubelet_size, "hidden_size": c.embed_dim,
        "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads,
        "intermediate_size": int(round(c.embed_dim * c.mlp_ratio)), "hidden_act": "gelu",
        "hidden_dropout_prob": c.drop_rate, "attention_probs_dropout_prob": c.attn_drop_rate,
        "initializer_range": 0.02, "layer_norm_eps": c.norm_eps, "qv_bias": bool(c.qkv_bias),
        "use_mean_pooling": use_mean_pooling, "decoder_num_attention_heads": c.decoder_num_heads,
        "decoder_hidden_size": c.decoder_embed_dim, "decoder_num_hidden_layers": c.decoder_depth,
        "decoder_intermediate_size": int(round(c.decoder_embed_dim * dec_ratio)), "norm_pix_loss": c.norm_pix_loss,
        "internvideo": {k: getattr(c, k) for k in _HF_LESS_FIELDS + (_HF_LESS_PRETRAIN if pretrain else ())},
    }
    if arch == "VideoMAEForVideoClassification":
        names = c.class_names or tuple(f"LABEL_{i}" for i in range(c.num_classes))
        config["id2label"] = {str(i): n for i, n in enumerate(names)}
        config["label2id"] = {n: i for i, n in enumerate(names)}
    return out, json.loads(json.dumps(config))  # tuples -> lists, as config.json holds them


def hf_differences(model: nn.Module) -> list[str]:
    """Where HF transformers computes something else than our model does (empty: the same arithmetic)."""
    c = model.config
    notes = []
    uses_head_norm = isinstance(model, VideoMAEPretrain) or (c.use_mean_pooling and c.num_classes)
    if uses_head_norm and c.head_norm_eps != 1e-5:
        notes.append(f"HF fixes the LayerNorm eps of fc_norm/decoder.norm at 1e-5; this model uses head_norm_eps="
                     f"{c.head_norm_eps:g} (outputs differ slightly; importing the export back restores it)")
    if isinstance(model, VideoMAEClassifier) and not c.num_classes and c.use_mean_pooling:
        notes.append("a features-only classifier (num_classes=0) becomes HF's VideoMAEModel, which has no fc_norm: "
                     "its fc_norm weights are not exported (the encoder tokens are)")
    if isinstance(model, VideoMAEPretrain) and (tuple(c.mean), tuple(c.std)) != (IMAGENET_MEAN, IMAGENET_STD):
        notes.append("HF's pretraining loss un-normalises pixels with the ImageNet mean/std; this model's recipe "
                     f"uses mean={tuple(c.mean)}, std={tuple(c.std)} (its loss differs)")
    return notes


FORMATS = (
    Format("official VideoMAE", _is_official, _convert_official, _infer_official),
    Format("HF transformers VideoMAE", _is_hf, _convert_hf, _infer_hf),
)
