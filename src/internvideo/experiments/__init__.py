"""Experiments: things that train models and then evaluate them (above both ``train`` and ``tasks``)."""
from __future__ import annotations

from . import fusion_ablation
from .fusion_ablation import run_fusion_ablation

__all__ = ["fusion_ablation", "run_fusion_ablation"]
