"""The input recipe a model is built for: which frames, what size, which normalisation.

It lives on each model's config (so it is saved in every checkpoint) and is
read by training, evaluation and extraction alike (like timm's
``resolve_model_data_config``): a model is never fed clips of another recipe
unless the user overrides it explicitly. It sits below ``models`` and ``data``
(like ``constants``) because both speak it: models carry a recipe,
:func:`internvideo.data.recipe_view` turns one into a sampler and a transform.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

#: How a clip's frames are picked (the one vocabulary: model configs, recipes, samplers, the CLI).
Sampling = Literal["dense", "segment", "uniform"]
SAMPLINGS: tuple[str, ...] = get_args(Sampling)


@dataclass(frozen=True)
class InputRecipe:
    """``num_frames`` frames of ``img_size``², normalised with ``mean``/``std``.

    ``sampling``: ``"dense"`` = consecutive frames every ``frame_interval``
    (VideoMAE, Kinetics); ``"segment"`` = one frame from each of ``num_frames``
    equal parts of the video (TSN; the multimodal model's zero-shot/retrieval
    protocol); ``"uniform"`` = evenly spaced frames over the video.
    """

    num_frames: int
    frame_interval: int
    sampling: Sampling
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def recipe_of(config) -> InputRecipe:
    """The recipe fields of a model config."""
    return InputRecipe(config.num_frames, config.frame_interval, config.sampling, config.img_size,
                       tuple(config.mean), tuple(config.std))


__all__ = ["InputRecipe", "SAMPLINGS", "Sampling", "recipe_of"]
