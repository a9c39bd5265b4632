"""Training: typed configs (:mod:`.config`), run set-up (:mod:`.setup`), the one loop (:mod:`.loop`),
checkpoint state (:mod:`.state`), optimiser and schedule (:mod:`.optim`), the objectives (:mod:`.objectives`)
and heads fitted on frozen features (:mod:`.heads`).

This package is the only place that trains. A model is trained by the one
loop, with an objective, from a config. Small heads on a frozen backbone whose
outputs are already in memory (the open-set heads, the QA head, the caption
decoder) are fitted by :func:`.heads.fit_head`, a few-line loop sharing
:mod:`.optim` that needs none of the run loop's machinery (run directory,
checkpoints, data loaders, distributed). Evaluations that need such a fit
(``eval openset --head fit``) receive it as a function from the caller
(``cli``, ``demo``, ``experiments``), since tasks never import train.
:mod:`.heads` is imported on its own (``internvideo.train.heads``): it reads
:mod:`internvideo.tasks`, which a plain ``import internvideo.train`` does not need.
"""
from __future__ import annotations

from .config import ConfigError, TrainConfig, load_config, save_config
from .loop import TrainingDiverged, TrainResult, main, train
from .objectives import OBJECTIVES, Objective, make_objective
from .optim import param_groups

__all__ = ["OBJECTIVES", "ConfigError", "Objective", "TrainConfig", "TrainResult", "TrainingDiverged", "load_config",
           "main", "make_objective", "param_groups", "save_config", "train"]
