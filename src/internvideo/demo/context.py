"""What a task family's demo stage is given (kept apart from the pipeline, which imports the stages)."""
from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class DemoContext:
    """What a task family's demo stage gets: the world, its own work folder and the trained backbones."""

    world: Path
    work: Path
    seed: int
    progress: bool
    mae_checkpoint: Path  # the supervised VideoMAE classifier
    mae_pretrain_checkpoint: Path  # the masked autoencoder
    mm_checkpoint: Path  # the multimodal model
    img_size: int
    preset: str  # "default", "quick" or "smoke": scale the stage's steps with it
