"""Model families and their named configs.

Each model module declares ``NAMED_CONFIGS`` (name → (model class, config)) and
``MODEL_CLASSES`` (class name → class, for self-describing checkpoints); this
package merges them. Nothing here is looked up by string at build time other
than the public model names themselves.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from . import fusion, localization, qa, roi_head, video_clip, videomae, vln
from .layers import count_parameters
from .protocols import Captioner, Detector, FusionModel, Localizer, MaskedVideoModel, TokenEncoder, VideoClassifier, \
    VideoLanguageModel, VideoModel

NAMED_CONFIGS: dict[str, tuple[type[nn.Module], object]] = {**videomae.NAMED_CONFIGS, **video_clip.NAMED_CONFIGS,
                                                             **roi_head.NAMED_CONFIGS, **localization.NAMED_CONFIGS}
MODEL_CLASSES: dict[str, type[nn.Module]] = {**videomae.MODEL_CLASSES, **video_clip.MODEL_CLASSES,
                                              **fusion.MODEL_CLASSES, **localization.MODEL_CLASSES,
                                              **qa.MODEL_CLASSES, **roi_head.MODEL_CLASSES, **vln.MODEL_CLASSES}


def list_models() -> list[str]:
    return sorted(NAMED_CONFIGS)


def apply_overrides(config, overrides: dict, what: str = "config"):
    """``dataclasses.replace`` with an error that names a bad field and lists the valid ones."""
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"unknown {what} field(s) {unknown} for {type(config).__name__}; valid: {sorted(fields)}")
    return dataclasses.replace(config, **overrides)


def get_config(name: str, **overrides):
    if name not in NAMED_CONFIGS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    cls, cfg = NAMED_CONFIGS[name]
    return cls, apply_overrides(cfg, overrides, f"model {name!r}")


def build_model(name: str, **overrides) -> nn.Module:
    """A randomly initialised model from a named config, fields overridable by keyword."""
    cls, cfg = get_config(name, **overrides)
    return cls(cfg)


__all__ = ["NAMED_CONFIGS", "MODEL_CLASSES", "apply_overrides", "build_model", "count_parameters", "get_config",
           "list_models", "Captioner", "Detector", "FusionModel", "Localizer", "MaskedVideoModel", "TokenEncoder",
           "VideoClassifier", "VideoLanguageModel", "VideoModel"]
