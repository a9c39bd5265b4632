"""Load any supported checkpoint: detect its layout from its keys, convert it, report every key that does not fit.

Foreign checkpoints (official repositories, HF transformers directories, OpenAI
CLIP) are recognised by the :class:`~.base.Format` entries of the converter
modules, listed in :data:`FORMATS`.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..errors import MissingFile
from ..models import apply_overrides
from . import clip, uniformerv2, videomae
from .base import (
    CONFIG_NAME, WEIGHTS_NAME, CheckpointError, Format, HeadPolicy, LoadReport, StateDict, UnsureArchitecture,
    _build_ours, _is_ours, read_config_json, _read_dir_weights, load_safetensors, load_state_dict_checked, read_state_dict,
)

FORMATS: tuple[Format, ...] = videomae.FORMATS + clip.FORMATS + uniformerv2.FORMATS


def _detect(sd: StateDict, meta: dict | None, source: object) -> Format:
    for fmt in FORMATS:
        if fmt.detect(sd, meta):
            return fmt
    sample = ", ".join(list(sd)[:6])
    raise CheckpointError(f"{source}: unrecognised checkpoint layout (first keys: {sample}); "
                          f"supported: {', '.join(f.name for f in FORMATS)}, or an internvideo directory")


def _read_any(path: Path, allow_torchscript: bool = False) -> tuple[StateDict, dict | None]:
    if not path.exists():
        raise MissingFile(f"checkpoint not found: {path}")
    if path.is_dir():
        cfg = path / CONFIG_NAME
        meta = read_config_json(cfg) if cfg.exists() else None
        return _read_dir_weights(path), meta
    if allow_torchscript:
        return clip.read_openai_clip(path, allow_torchscript=True), None
    return read_state_dict(path), None


#: ``load_pretrained`` refuses weights that fill no more than this share of the model's tensors.
MIN_PRETRAINED_SHARE = 0.5


def load_pretrained(model: nn.Module, path: str | os.PathLike, head: HeadPolicy = "reinit",
                    allow_torchscript: bool = False, allow_partial: bool = False) -> LoadReport:
    """Load weights of any supported layout into an already built ``model``.

    Used by ``create_model(name, pretrained=...)``: the named config decides the
    architecture, the checkpoint only supplies weights (a pretraining checkpoint
    can thus start a classifier; keys that are new are reported). Weights that
    fill half of the model's tensors or fewer (e.g. a checkpoint of another
    model family: training would silently start from random weights) are an
    error unless ``allow_partial``.
    """
    path = Path(path)
    if _is_ours(path):
        sd = load_safetensors(path / WEIGHTS_NAME)
        fmt_name = "internvideo"
        sd = _adapt_ours(sd, model)
    else:
        raw, meta = _read_any(path, allow_torchscript)
        fmt = _detect(raw, meta, path)
        sd, fmt_name = fmt.convert(raw, meta, model), fmt.name
    own = model.state_dict()
    matched = sum(1 for k, v in sd.items() if k in own and (v.shape == own[k].shape or k.endswith("pos_embed")))
    if not allow_partial and matched <= MIN_PRETRAINED_SHARE * len(own):
        raise CheckpointError(
            f"{path} ({fmt_name}) fills only {matched} of the {len(own)} tensors of {type(model).__name__}: it is "
            "probably a checkpoint of another model; training would start from random weights. Pass "
            "allow_partial=True (config: model.allow_partial_pretrained=true) if a partial start is intended")
    return load_state_dict_checked(model, sd, head=head, source=str(path), fmt=fmt_name)


def _adapt_ours(sd: StateDict, model: nn.Module) -> StateDict:
    # Our own pretraining directories can start a classifier, exactly like official ones.
    return videomae.adapt_layout(sd, model)


def load_model(path: str | os.PathLike, head: HeadPolicy = "error", allow_torchscript: bool = False,
               **overrides) -> nn.Module:
    """Build and load a model from a self-describing checkpoint.

    Our directories, HF transformers directories, and foreign state dicts whose
    architecture can be inferred from their keys. Config fields may be
    overridden (e.g. ``num_frames`` for a checkpoint that does not store it).
    ``allow_torchscript`` admits TorchScript archives (OpenAI's CLIP files);
    reading those runs code stored in the file, so it is off by default.
    """
    path = Path(path)
    if _is_ours(path):
        model, sd = _build_ours(path, overrides)
        load_state_dict_checked(model, sd, head=head, source=str(path), strict=not overrides)
        return model
    if path.is_dir() and (path / WEIGHTS_NAME).exists() and not (path / CONFIG_NAME).exists():
        # Our weights alone: guessing the architecture from shapes once loaded a 4-head 32 px model as 1 head 224 px.
        raise CheckpointError(f"{path}: {WEIGHTS_NAME} without its {CONFIG_NAME}: the config (model class, heads, "
                              "frames, size) is missing, and the architecture cannot be read reliably from the "
                              f"weights; restore {CONFIG_NAME}, or build the model and pass the directory as "
                              "pretrained=")
    raw, meta = _read_any(path, allow_torchscript)
    fmt = _detect(raw, meta, path)
    try:
        cls, cfg = fmt.infer(raw, meta)
    except UnsureArchitecture as e:
        if not set(e.fields) <= set(overrides):
            raise CheckpointError(f"{path}: {e}") from None
        cls, cfg = e.cls, e.guess
    model = cls(apply_overrides(cfg, overrides))
    load_state_dict_checked(model, fmt.convert(raw, meta, model), head=head, source=str(path), fmt=fmt.name)
    return model
