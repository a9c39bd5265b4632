"""``internvideo demo``: a complete miniature InternVideo on the synthetic world, on a CPU.

:mod:`.pipeline` runs the stages (world, masked pretraining, contrastive
pretraining, supervised training, cross-model attention, benchmark),
:mod:`.report` makes the results table and ``results.md``, :mod:`.figures` the
reconstruction and retrieval figures. Notes on the choices made at this scale
are in ``docs/demo.md``.
"""
from __future__ import annotations

from .pipeline import PRESETS, Preset, add_arguments, main, run_demo

__all__ = ["PRESETS", "Preset", "add_arguments", "main", "run_demo"]
