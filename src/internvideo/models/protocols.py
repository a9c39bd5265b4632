"""The model kinds, as the rest of the library tells them apart: small runtime-checkable Protocols.

Tasks, training and the CLI ask ``isinstance(model, VideoLanguageModel)``
rather than probing for attributes one by one, so a kind is defined in one
place and a model of ours (or a user's stand-in with the same methods) is
recognised by what it can do. ``isinstance`` on a Protocol checks that the
members exist, not their signatures; the docstrings give the contract.

Kinds overlap where the models do: a :class:`Detector` is a
:class:`VideoClassifier` (without boxes it scores the whole frame), and most
kinds are :class:`VideoModel` s (fed decoded clips). A :class:`Localizer` is
not: it reads feature sequences.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from ..recipe import InputRecipe


@runtime_checkable
class VideoModel(Protocol):
    """Fed decoded clips ``(B, C, T, H, W)``; says which (frames, size, normalisation: saved in its checkpoint)."""

    def input_recipe(self) -> InputRecipe: ...


@runtime_checkable
class TokenEncoder(Protocol):
    """``forward_features(video) -> tokens (B, N, D)``: the last layer's tokens of a clip."""

    def forward_features(self, video: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class VideoClassifier(VideoModel, TokenEncoder, Protocol):
    """``forward(video) -> logits (B, num_classes)`` = ``forward_head(forward_features(video))``.

    ``forward_head(tokens, pre_logits=True)`` gives the pooled features the
    head reads; ``head`` is the classifier layer (``None`` only for a
    pretraining encoder); ``config.num_classes`` its width, ``config.class_names``
    the label order where the checkpoint saved it.
    """

    config: Any
    head: torch.nn.Module | None

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...


@runtime_checkable
class MaskedVideoModel(VideoModel, Protocol):
    """Masked video pretraining: ``forward(video, mask) -> {"loss", "pred"}``; ``encoder`` gives the tokens."""

    encoder: TokenEncoder


@runtime_checkable
class VideoLanguageModel(Protocol):
    """Videos and token ids embedded into one space: ``encode_video``, ``encode_text`` (projected, not normalised).

    ``logit_scale`` is the log of the similarity temperature (CLIP's; callers
    exponentiate it and clamp at 100).
    """

    logit_scale: torch.Tensor

    def encode_video(self, video: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Captioner(VideoLanguageModel, Protocol):
    """A video-language model with a caption decoder: ``generate(video) -> token ids``.

    ``caption`` is the decoder module, ``None`` when the model was built without one.
    """

    caption: torch.nn.Module | None

    def generate(self, video: torch.Tensor, max_len: int = 30) -> torch.Tensor: ...


@runtime_checkable
class FusionModel(VideoModel, Protocol):
    """Cross-model attention over frozen backbones: ``embed(video) -> (B, D)``, the input of its ``head``.

    ``submodels()`` names the backbones built outside it (saved with their own configs).
    """

    def embed(self, video: torch.Tensor, mm_video: torch.Tensor | None = None) -> torch.Tensor: ...

    def submodels(self) -> dict[str, torch.nn.Module]: ...


@runtime_checkable
class Localizer(Protocol):
    """Temporal action localization over feature sequences (not clips).

    ``pad(sequences) -> (feats (B, T, D), mask (B, T))``; ``forward(feats, mask)``
    gives per-level outputs that ``loss`` trains and ``predict`` turns into
    segments; ``config.input_dim`` is the feature width it reads.
    """

    config: Any

    def pad(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def loss(self, out: dict, segments: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> dict: ...

    def predict(self, out: dict, index: int) -> Any: ...


@runtime_checkable
class Detector(VideoClassifier, Protocol):
    """Spatio-temporal action detection (AVA): ``forward(video, rois (K, 5)) -> logits (K, num_classes)``.

    ``rois`` rows are (clip index, x1, y1, x2, y2) as fractions of the frame;
    without them each clip gets one whole-frame box (hence a :class:`VideoClassifier`).
    """

    def freeze_backbone(self) -> None: ...

    def init_from_classifier(self, classifier: torch.nn.Module) -> None: ...


def saved_class_names(model: Any) -> tuple[str, ...] | None:
    """The label order a model's checkpoint saved (``config.class_names``), or None where it saved none."""
    names = getattr(getattr(model, "config", None), "class_names", None)
    return tuple(names) if names else None


__all__ = ["Captioner", "Detector", "FusionModel", "Localizer", "MaskedVideoModel", "TokenEncoder", "VideoClassifier",
           "VideoLanguageModel", "VideoModel", "saved_class_names"]
