"""Training: typed configs (:mod:`.config`), run set-up (:mod:`.setup`), the one loop (:mod:`.loop`),
checkpoint state (:mod:`.state`), optimiser and schedule (:mod:`.optim`) and the objectives (:mod:`.objectives`).
"""
from __future__ import annotations

from .config import ConfigError, TrainConfig, load_config, save_config
from .loop import TrainingDiverged, TrainResult, main, train
from .objectives import OBJECTIVES, Objective, make_objective
from .optim import param_groups

__all__ = ["OBJECTIVES", "ConfigError", "Objective", "TrainConfig", "TrainResult", "TrainingDiverged", "load_config",
           "main", "make_objective", "param_groups", "save_config", "train"]
