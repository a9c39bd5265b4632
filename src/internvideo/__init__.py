"""InternVideo: general video foundation models.

The front door: :func:`create_model`, :func:`load_model`, :func:`get_tokenizer`,
:func:`list_models`. See the README for the supported checkpoint formats.
"""
from __future__ import annotations

import os

from torch import nn

from .checkpoints import HeadPolicy, load_model, load_pretrained, save_model
from .models import build_model, list_models

__version__ = "0.1.0"


def create_model(name: str, pretrained: str | os.PathLike | None = None, head: HeadPolicy = "reinit",
                 allow_torchscript: bool = False, **overrides) -> nn.Module:
    """Build a named model (fields overridable by keyword) and optionally load weights.

    ``pretrained`` may be one of our directories, an HF transformers directory or
    an official checkpoint file; its layout is detected from its keys. Weights
    that do not fit are reported by name; a classifier head of another size is
    re-initialised (``head="reinit"``), sliced (``"slice"``) or refused (``"error"``).
    """
    model = build_model(name, **overrides)
    if pretrained is not None:
        load_pretrained(model, pretrained, head=head, allow_torchscript=allow_torchscript)
    return model


def get_tokenizer(name: str = "clip", **kwargs):
    """A callable ``list[str] -> LongTensor (B, context_length)``."""
    from .tokenizer import get_tokenizer as _get

    return _get(name, **kwargs)


__all__ = ["create_model", "get_tokenizer", "list_models", "load_model", "save_model", "__version__"]
