"""Saving and loading weights: our format, and converters from foreign layouts.

* :mod:`.base`: our directory format (``config.json`` + ``model.safetensors``), raw weight readers,
  the :class:`Format` of a foreign layout, checked loading with a :class:`LoadReport`;
* :mod:`.videomae`, :mod:`.clip`, :mod:`.uniformerv2`: one converter module per family of foreign layouts;
* :mod:`.loading`: layout detection and the two entry points :func:`load_pretrained`, :func:`load_model`.
"""
from __future__ import annotations

from .base import (
    CheckpointError, Format, HeadPolicy, LoadReport, StateDict, load_state_dict_checked, read_state_dict, save_model,
)
from .loading import FORMATS, load_model, load_pretrained

__all__ = ["FORMATS", "CheckpointError", "Format", "HeadPolicy", "LoadReport", "StateDict", "load_model",
           "load_pretrained", "load_state_dict_checked", "read_state_dict", "save_model"]
