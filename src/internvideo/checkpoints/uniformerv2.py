"""UniFormerV2 classifier checkpoints (OpenGVLab/UniFormerV2: ``k710_*``, ``k400_*`` ``.pyth``/``.pth``)
-> :class:`~internvideo.models.video_clip.InternVideoMMClassifier`.

The layout is that of UniFormerV2's ``slowfast/models/uniformerv2_model.py``,
saved by its slowfast trainer as ``{"model_state": {"backbone." + key}}``:

* ``conv1.weight`` ``(W, 3, 1, p, p)`` (``TEMPORAL_DOWNSAMPLE False``, every
  released K710/K400 recipe; the ``(3, p, p)`` stride-2 stem is refused),
  ``class_embedding``, ``positional_embedding``, ``ln_pre``;
* ``transformer.resblocks.N.*``: CLIP's blocks, with ``lmhra1``/``lmhra2``
  (local MHRA) where ``NO_LMHRA`` is False;
* ``transformer.temporal_cls_token`` (our ``visual.video_query``),
  ``transformer.dpe.J``, ``transformer.dec.J`` (global blocks),
  ``transformer.balance``;
* ``transformer.proj.0`` (LayerNorm) and ``transformer.proj.2`` (Linear) around
  a dropout: the head (our ``fc_norm`` and ``head``).

The tower's names are those of the official InternVideo-MM vision tower without
its ``visual.`` prefix, so :func:`.clip.rename_official` converts them.
What the file does not say: the global blocks read the **last** ``N`` layers
(``RETURN_LIST`` of every released recipe), heads are ``width // 64`` (as the
official builders), and the frame count (any works; 8 by default, set
``num_frames=``). A ``frozen=True`` checkpoint (no ``balance``; the head reads
the query alone) gets ``balance = -1e4``: ``sigmoid`` gives exactly 0 there.
"""
from __future__ import annotations

import logging
import math
import re

import torch

from ..models.video_clip import InternVideoMMClassifier, InternVideoMMClassifierConfig
from .base import CheckpointError, Format, StateDict
from .clip import rename_official

log = logging.getLogger(__name__)

_PREFIX = "backbone."
_HEAD = {"transformer.proj.0.weight": "fc_norm.weight", "transformer.proj.0.bias": "fc_norm.bias",
         "transformer.proj.2.weight": "head.weight", "transformer.proj.2.bias": "head.bias"}


def _strip(sd: StateDict) -> StateDict:
    if any(k.startswith(_PREFIX) for k in sd):
        return {k[len(_PREFIX):]: v for k, v in sd.items() if k.startswith(_PREFIX)}
    return dict(sd)


def is_uniformerv2(state_dict: StateDict) -> bool:
    sd = _strip(state_dict)
    return all(k in sd for k in ("conv1.weight", "transformer.temporal_cls_token", "transformer.proj.2.weight"))


def _count(sd: StateDict, pattern: str) -> int:
    rx = re.compile(pattern)
    ids = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
    return max(ids) + 1 if ids else 0


def infer_uniformerv2_config(state_dict: StateDict) -> InternVideoMMClassifierConfig:
    sd = _strip(state_dict)
    if not is_uniformerv2(sd):
        raise CheckpointError("not a UniFormerV2 checkpoint (expected conv1.weight, transformer.temporal_cls_token, "
                              "transformer.proj.2.weight, possibly under 'backbone.')")
    conv = sd["conv1.weight"]
    if conv.ndim != 5 or conv.shape[2] != 1:
        raise CheckpointError(f"UniFormerV2 conv1.weight of shape {tuple(conv.shape)}: a temporally downsampling "
                              "stem (TEMPORAL_DOWNSAMPLE True) is not supported; the released K710/K400 models "
                              "use a time kernel of 1")
    width, patch = conv.shape[0], conv.shape[-1]
    n_pos = sd["positional_embedding"].shape[0] - 1
    grid = math.isqrt(n_pos)
    if grid * grid != n_pos:
        raise CheckpointError(f"positional_embedding has {n_pos} patch positions, not a square grid")
    n_global = _count(sd, r"transformer\.dec\.(\d+)\.attn\.in_proj_weight$")
    if sd["transformer.temporal_cls_token"].shape[-1] != width:
        raise CheckpointError("UniFormerV2 global blocks of another width (N_DIM) than the backbone are not supported")
    local = sorted({int(m.group(1)) for k in sd
                    for m in [re.match(r"transformer\.resblocks\.(\d+)\.lmhra1\.pos_embed\.1\.weight$", k)] if m})
    layers = _count(sd, r"transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$")
    fields: dict = dict(
        img_size=grid * patch, patch_size=patch, vision_width=width, vision_layers=layers, vision_heads=width // 64,
        mlp_ratio=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width, num_global_layers=n_global,
        num_classes=sd["transformer.proj.2.weight"].shape[0], use_local=bool(local), caption_layers=0)
    if n_global:
        fields["global_mlp_ratio"] = sd["transformer.dec.0.mlp.c_fc.weight"].shape[0] / width
    if local:
        first = f"transformer.resblocks.{local[0]}.lmhra1.pos_embed."
        fields.update(local_blocks=None if local == list(range(layers)) else tuple(local),
                      local_width=sd[first + "1.weight"].shape[0], local_kernel=sd[first + "2.weight"].shape[2],
                      double_local=any(".lmhra2." in k for k in sd))
    return InternVideoMMClassifierConfig(**fields)


def convert_uniformerv2(state_dict: StateDict) -> StateDict:
    """UniFormerV2 state dict -> ours (``InternVideoMMClassifier`` keys); unknown keys keep their names."""
    sd = _strip(state_dict)
    head = {_HEAD[k]: v for k, v in sd.items() if k in _HEAD}
    tower = rename_official({"visual." + k: v for k, v in sd.items() if k not in _HEAD})
    if "visual.balance" not in tower and "visual.video_query" in tower:
        log.info("UniFormerV2 checkpoint without balance (frozen=True): the head reads the video query alone")
        tower["visual.balance"] = torch.full((sd["conv1.weight"].shape[0],), -1e4)
    return {**tower, **head}


FORMATS = (
    Format("UniFormerV2", lambda sd, meta: meta is None and is_uniformerv2(sd),
           lambda sd, meta, target: convert_uniformerv2(sd),
           lambda sd, meta: (InternVideoMMClassifier, infer_uniformerv2_config(sd))),
)

__all__ = ["FORMATS", "convert_uniformerv2", "infer_uniformerv2_config", "is_uniformerv2"]
