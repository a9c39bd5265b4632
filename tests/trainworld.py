"""A tiny two-class video world for trainer tests: a bright square moving left or right.

Direction is only visible across frames, so a model has to use time to classify it.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, direction: int, seed: int, frames: int = 16, size: int = 48) -> None:
    rng = np.random.default_rng(seed)
    container = av.open(str(path), mode="w")
    stream = container.add_stream("libx264", rate=8)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"preset": "ultrafast", "crf": "18"}
    y = int(rng.integers(8, size - 20))
    x0 = int(rng.integers(4, size - 16))
    colour = rng.integers(128, 256, size=3)
    for t in range(frames):
        img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        x = int(np.clip(x0 + direction * (t - frames // 2) * 2, 0, size - 12))
        img[y:y + 12, x:x + 12] = colour
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def make_train_world(root: Path, n: int = 16, bad: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines, text = [], []
    for i in range(n):
        label = i % 2
        name = f"clip{i:03d}.mp4"
        write_clip(root / name, 1 if label else -1, seed=i)
        lines.append(f"{name} {label}")
        text.append({"video": name, "caption": f"a square moving {'right' if label else 'left'}"})
    for j in range(bad):
        name = f"broken{j}.mp4"
        (root / name).write_bytes(b"this is not a video")
        lines.append(f"{name} 0")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "val.txt").write_text("\n".join(lines[:n]) + "\n")
    (root / "classes.txt").write_text("moving left\nmoving right\n")
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in text) + "\n")
    return root
