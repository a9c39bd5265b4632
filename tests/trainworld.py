"""A two-class slice of the synthetic world for trainer tests: shapes moving left or right.

The clips are rendered by :mod:`internvideo.data.synthetic` (the one synthetic
world), restricted to two actions so a tiny model learns them in a few steps;
direction is only visible across frames, so a model has to use time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from internvideo.data import ACTIONS, write_video
from internvideo.data.synthetic import _random_actor, render_clip

LEFT, RIGHT = ACTIONS.index("moving left"), ACTIONS.index("moving right")


def make_train_world(root: Path, n: int = 16, bad: int = 0, size: int = 48, frames: int = 16) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines, text = [], []
    for i in range(n):
        label = i % 2
        rng = np.random.default_rng([0, i])
        actor = _random_actor(rng, RIGHT if label else LEFT)
        name = f"clip{i:03d}.mp4"
        write_video(root / name, render_clip(rng, [actor], size, frames), fps=8)
        lines.append(f"{name} {label}")
        text.append({"video": name, "caption": f"a {actor.color} {actor.shape} moving {'right' if label else 'left'}"})
    for j in range(bad):
        name = f"broken{j}.mp4"
        (root / name).write_bytes(b"this is not a video")
        lines.append(f"{name} 0")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "val.txt").write_text("\n".join(lines[:n]) + "\n")
    (root / "classes.txt").write_text("moving left\nmoving right\n")
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in text) + "\n")
    return root
