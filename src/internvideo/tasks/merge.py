"""Merging a video-language model with CLIP before evaluating it, as the official InternVideo evaluations do.

The official zero-shot, multiple-choice, QA and retrieval code loads the
InternVideo-MM weights and then, for the parameters that also exist in OpenAI's
CLIP, uses ``coef * clip + (1 - coef) * internvideo`` ("wise-ft"; ``coef`` =
``clip_wiseft_coef`` / ``--mergeweight``, 0.5 in the released scripts, 0.25 for
MSVD retrieval). Two rules decide which parameters count as CLIP's
(:data:`~internvideo.checkpoints.clip.MERGE_RULE_SOURCES`):

* ``clip_param_keys`` (CoTrain: zero-shot recognition, multiple choice, QA):
  the names in ``clip_param_keys.py``, which list ViT-B's 12 blocks, so with
  ViT-L/14 visual blocks 12-23 keep the InternVideo weights; ``logit_scale`` is
  not merged.
* ``shared_names`` (Video-Text-Retrieval): every parameter both models name
  alike, ``logit_scale`` included, but the visual projection and its LayerNorm
  (renamed before the merge there).

``internvideo merge MODEL --with CLIP --alpha 0.5 --out DIR`` writes the merged
model; ``--clip CLIP`` on ``eval zeroshot / multiple-choice / retrieval`` merges
in memory before evaluating.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from torch import nn

from .. import argtypes
from ..checkpoints import CheckpointError, load_model, save_model
from ..checkpoints.clip import MERGE_RULE_SOURCES, MergeRule, merge_with_clip
from ..errors import MissingFile, UserError
from ..models.video_clip import InternVideoMM
from . import common

__all__ = ["MergeError", "MergeReport", "merge_models", "load_clip", "merge_checkpoint", "add_merge_arguments",
           "merge_from_args", "add_arguments", "main"]


class MergeError(UserError, ValueError):
    """Models that cannot be merged (another family, tensors of other shapes); the message names the model/tensor."""


@dataclasses.dataclass
class MergeReport:
    """What a merge did; written into results JSON under ``"merge"``."""

    clip: str
    coef: float  # CLIP's share
    rule: str
    source: str  # the official file the rule comes from
    num_merged: int
    num_tensors: int  # the model's floating-point tensors
    merged: list[str] = dataclasses.field(repr=False, default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        del d["merged"]
        return d


def _require_clip_family(model: nn.Module, what: str) -> None:
    if not isinstance(model, InternVideoMM):
        raise MergeError(f"{what} is a {type(model).__name__}, not a CLIP-family video-language model "
                         "(InternVideoMM): only those merge with CLIP")


def merge_models(model: nn.Module, clip: nn.Module, coef: float = 0.5, rule: MergeRule = "clip_param_keys", *,
                 clip_name: str = "CLIP", model_name: str = "the model") -> MergeReport:
    """Merge ``clip`` into ``model`` in place (:func:`~internvideo.checkpoints.clip.merge_with_clip`)."""
    _require_clip_family(model, model_name)
    _require_clip_family(clip, clip_name)
    own = model.state_dict()
    try:
        merged_sd, keys = merge_with_clip(own, clip.state_dict(), coef, rule)
    except (CheckpointError, UserError) as e:  # shape mismatch (names the tensor) or a coefficient out of range
        raise MergeError(f"merging {clip_name} into {model_name}: {e}") from None
    if not keys:
        raise MergeError(f"{clip_name} shares no parameter with {model_name} under the {rule} rule: nothing to merge")
    model.load_state_dict(merged_sd)
    return MergeReport(clip_name, float(coef), rule, MERGE_RULE_SOURCES[rule], len(keys),
                       sum(1 for v in own.values() if v.is_floating_point()), keys)


def load_clip(path: str | os.PathLike, allow_torchscript: bool = False) -> nn.Module:
    """CLIP from its usual files: an OpenAI state dict (or, if allowed, OpenAI's TorchScript ``.pt``), an HF
    ``CLIPModel`` directory, or one of our directories."""
    if not os.path.exists(path):
        raise MissingFile(f"no CLIP model at {path!r}")
    return load_model(path, allow_torchscript=allow_torchscript)


def merge_checkpoint(model: str | os.PathLike | nn.Module, clip: str | os.PathLike | nn.Module, out: str | os.PathLike,
                     coef: float = 0.5, rule: MergeRule = "clip_param_keys", allow_torchscript: bool = False
                     ) -> MergeReport:
    """Load, merge and save to ``out`` (our directory format)."""
    m = common.load_model_arg(model)
    c = clip if isinstance(clip, nn.Module) else load_clip(clip, allow_torchscript)
    report = merge_models(m, c, coef, rule, clip_name=str(clip) if not isinstance(clip, nn.Module) else "CLIP",
                          model_name=str(model) if not isinstance(model, nn.Module) else "the model")
    save_model(m, out)
    return report


# ----------------------------------------------------------------------------- CLI


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    """``--clip`` / ``--merge-coef`` / ``--allow-torchscript`` of the evaluations that may merge first."""
    parser.add_argument("--clip", default=None, help="merge this CLIP model into --model before evaluating, as the "
                                                      "official evaluation (OpenAI state dict, HF directory or ours)")
    parser.add_argument("--merge-coef", type=argtypes.unit_interval, default=0.5,
                        help="CLIP's share in the merge (official clip_wiseft_coef / --mergeweight)")
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="read OpenAI's TorchScript CLIP files (runs code stored in the file)")


def merge_from_args(model: nn.Module, args: argparse.Namespace, rule: MergeRule) -> dict[str, Any] | None:
    """Merge ``args.clip`` into ``model`` if given; the report for the results JSON (``None``: no merge)."""
    if getattr(args, "clip", None) is None:
        return None
    report = merge_models(model, load_clip(args.clip, args.allow_torchscript), args.merge_coef, rule,
                          clip_name=str(args.clip), model_name=str(args.model))
    common.log.info("merged %d of %d tensors with %s (CLIP share %.2f, rule %s)", report.num_merged,
                    report.num_tensors, args.clip, report.coef, rule)
    return report.as_dict()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo merge``."""
    parser.add_argument("model", help="the video-language model (our directory or an official checkpoint)")
    parser.add_argument("--with", dest="clip", required=True, help="CLIP: an OpenAI state dict, an HF CLIPModel "
                                                                    "directory or one of ours")
    parser.add_argument("--alpha", type=argtypes.unit_interval, default=0.5, help="CLIP's share: alpha * clip + (1 - alpha) * model")
    parser.add_argument("--rule", choices=sorted(MERGE_RULE_SOURCES), default="clip_param_keys",
                        help="which parameters count as CLIP's: clip_param_keys (the official zero-shot, multiple "
                             "choice and QA code) or shared_names (the official retrieval code)")
    parser.add_argument("--out", required=True, help="directory for the merged model")
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="read OpenAI's TorchScript CLIP files (runs code stored in the file)")


def main(args: argparse.Namespace) -> int:
    report = merge_checkpoint(args.model, args.clip, args.out, args.alpha, args.rule, args.allow_torchscript)
    print(f"merged {report.num_merged} of {report.num_tensors} tensors: {report.coef:g} * {args.clip} + "
          f"{1 - report.coef:g} * {args.model} (rule {report.rule}: {report.source})")
    print(f"merged model written to {args.out}")
    return 0

