"""InternVideo: general video foundation models.

The front door: :func:`create_model`, :func:`load_model`, :func:`get_tokenizer`,
:func:`list_models`, :func:`save_model` (all defined in :mod:`internvideo.factory`).
See the README for the supported checkpoint formats.
"""
from __future__ import annotations

from .factory import create_model, get_tokenizer, list_models, load_model, save_model

__version__ = "0.1.0"

__all__ = ["create_model", "get_tokenizer", "list_models", "load_model", "save_model", "__version__"]
