"""The held-out-pair open-set experiment on a small world with a random multimodal model (the plumbing only)."""
from __future__ import annotations

import dataclasses

import torch

from internvideo.data import make_world
from internvideo.experiments.openset_pairs import held_out_pairs, markdown
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)


def test_every_reversed_pair_is_held_out_once(tmp_path):
    world = make_world(tmp_path / "w", num_videos=80, seed=1, size=32, num_frames=8, num_long=1, num_ava=1,
                       num_images=2)
    torch.manual_seed(0)
    model = InternVideoMM(dataclasses.replace(NAMED_CONFIGS["internvideo_mm_tiny"][1], caption_layers=0)).eval()
    result = held_out_pairs(model, world.root, hidden=0, steps=5, progress=False)
    pairs = [tuple(r["held_out"]) for r in result["rows"]]
    assert pairs == [("moving left", "moving right"), ("moving up", "moving down"), ("growing", "shrinking"),
                     ("rotating clockwise", "rotating counterclockwise"), ("appearing", "disappearing")]
    scored = [r for r in result["rows"] if r["auroc"]]
    assert scored and all(0 <= v <= 100 for r in scored for v in r["auroc"].values())
    table = markdown(result)
    assert "appearing / disappearing (the world's)" in table and table.count("\n") == 6
