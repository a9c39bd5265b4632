"""The front door: named configs → models, pretrained weights, fusion backbones.

``internvideo/__init__.py`` only re-exports from here. Model modules never load
weights themselves: a fusion model's two frozen backbones are loaded here and
passed in (:func:`create_fusion`).
"""
from __future__ import annotations

import os

from torch import nn

from .checkpoints import HeadPolicy, load_model, load_pretrained, save_model
from .models import build_model, list_models
from .models.fusion import CMAFusion, FusionConfig
from .tokenizer import get_tokenizer


def create_model(name: str, pretrained: str | os.PathLike | None = None, head: HeadPolicy = "reinit",
                 allow_torchscript: bool = False, allow_partial: bool = False, **overrides) -> nn.Module:
    """Build a named model (fields overridable by keyword) and optionally load weights.

    ``pretrained`` may be one of our directories, an HF transformers directory or
    an official checkpoint file; its layout is detected from its keys. Weights
    that do not fit are reported by name; a classifier head of another size is
    re-initialised (``head="reinit"``), sliced (``"slice"``) or refused (``"error"``).
    Weights that fill half of the model's tensors or fewer are refused unless ``allow_partial``.
    """
    model = build_model(name, **overrides)
    if pretrained is not None:
        load_pretrained(model, pretrained, head=head, allow_torchscript=allow_torchscript, allow_partial=allow_partial)
    return model


def create_fusion(config: FusionConfig) -> CMAFusion:
    """Cross-model attention over the two backbones named by ``config.mae_backbone`` / ``config.mm_backbone``."""
    if not (config.mae_backbone and config.mm_backbone):
        raise ValueError("a fusion model needs mae_backbone and mm_backbone (checkpoint directories)")
    return CMAFusion(config, load_model(config.mae_backbone), load_model(config.mm_backbone))


__all__ = ["create_fusion", "create_model", "get_tokenizer", "list_models", "load_model", "save_model"]
