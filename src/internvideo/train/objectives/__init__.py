"""Training objectives: each is a model + datasets + loss for the one loop in :mod:`internvideo.train.loop`.

:class:`~.base.Objective` is the contract; :data:`OBJECTIVES` maps the
``objective:`` value of a training config to its class: the one list of
objective names. A new task family adds one module here and one line to the
table (and, if it has settings of its own, a section to
:class:`internvideo.train.config.TrainConfig`).
"""
from __future__ import annotations

from ..config import ConfigError, TrainConfig
from .ava import AVAObjective
from .base import Objective, VideoObjective
from .contrastive import ContrastiveObjective
from .language import OpenSetObjective, QAObjective
from .localization import LocalizeObjective
from .video import ClassifyObjective, FusionObjective, LinearProbeObjective, MaskedVideoObjective
from .vln import VLNObjective

OBJECTIVES: dict[str, type] = {
    "mae": MaskedVideoObjective,
    "classify": ClassifyObjective,
    "linear_probe": LinearProbeObjective,
    "contrastive": ContrastiveObjective,
    "fusion": FusionObjective,
    "localize": LocalizeObjective,
    "openset": OpenSetObjective,
    "qa": QAObjective,
    "ava": AVAObjective,
    "vln": VLNObjective,
}


def check_objective(name: str) -> None:
    if name not in OBJECTIVES:
        raise ConfigError(f"objective: {name!r} is not one of {list(OBJECTIVES)}")


def make_objective(cfg: TrainConfig) -> Objective:
    check_objective(cfg.objective)
    return OBJECTIVES[cfg.objective](cfg)


__all__ = ["OBJECTIVES", "AVAObjective", "ClassifyObjective", "ContrastiveObjective", "FusionObjective",
           "LinearProbeObjective", "LocalizeObjective", "MaskedVideoObjective", "Objective", "OpenSetObjective",
           "QAObjective", "VLNObjective", "VideoObjective", "check_objective", "make_objective"]
