"""Shared set-up of the search tests: a small folder of synthetic videos, tiny models, a briefly trained one."""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import internvideo
from internvideo.data import make_world

SEARCH_WORLD_CLIPS = 20


@pytest.fixture(scope="session")
def search_world(tmp_path_factory) -> Path:
    """20 clips (8 frames, 32 px, 8 fps: 1 s each) and one long video (~6 s), built once."""
    return Path(make_world(tmp_path_factory.mktemp("search_world"), num_videos=SEARCH_WORLD_CLIPS, seed=5, size=32,
                           num_frames=8, num_long=1, num_ava=0, num_images=0).root)


def video_folder(world: Path, dest: Path, clips: int = 4, long: bool = True) -> Path:
    """A fresh folder to index: ``clips`` clips under ``clips/`` and the long video at the top."""
    (dest / "clips").mkdir(parents=True)
    for i in range(clips):
        shutil.copy(world / "videos" / f"clip_{i:05d}.mp4", dest / "clips" / f"clip_{i:05d}.mp4")
    if long:
        shutil.copy(world / "localization" / "long_00000.mp4", dest / "long.mp4")
    return dest


def tiny_model_dir(dest: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = internvideo.create_model("internvideo_mm_tiny")
    internvideo.save_model(model, dest)
    return dest


@pytest.fixture(scope="session")
def search_model(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("search_model"), seed=0)


def world_captions(world: Path) -> dict[str, list[str]]:
    with open(world / "captions_train.jsonl") as f:
        records = [json.loads(line) for line in f]
    for split in ("val", "test"):
        with open(world / f"captions_{split}.jsonl") as f:
            records += [json.loads(line) for line in f]
    return {r["video"]: list(r["caption"]) for r in records}


def distinct_clips(world: Path, count: int) -> list[str]:
    """``count`` clips whose colours all differ, so a caption names exactly one of them."""
    facts = json.loads((world / "world.json").read_text())["clips"]
    chosen, colours = [], set()
    for clip in facts:
        if clip["color"] not in colours:
            chosen.append(clip["video"])
            colours.add(clip["color"])
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"the world has fewer than {count} colours")


def composite_videos(world: Path, dest: Path, count: int) -> list[tuple[str, list[tuple[int, str]]]]:
    """``count`` 2-second videos, each two clips of distinct colours back to back.

    Returns ``[(file name, [(first frame, clip video), ...]), ...]``: which
    world clip fills each second of each video.
    """
    from internvideo.data import probe, read_frames, write_video

    clips = distinct_clips(world, 2 * count)
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        parts, frames, at = [], [], 0
        for clip in clips[2 * i:2 * i + 2]:
            n = probe(world / clip).num_frames
            frames.append(read_frames(world / clip, range(n)))
            parts.append((at, clip))
            at += n
        name = f"scene_{i}.mp4"
        write_video(dest / name, np.concatenate(frames), fps=8)
        made.append((name, parts))
    return made


def train_tiny_search_model(samples: list[tuple[Path, int, int, list[str]]], dest: Path, steps: int = 60,
                            seed: int = 0) -> Path:
    """A tiny multimodal model trained contrastively for a few seconds: ``(video, first frame, frames, captions)``.

    Not a useful model, only one that has learnt which caption goes with which
    of a handful of windows, seen through the same input pipeline the index
    uses, so that a search for a caption should find its window.
    """
    from internvideo.data import read_frames, segment_indices
    from internvideo.losses import ClipLoss
    from internvideo.tasks.common import eval_view
    from internvideo.search.query import SEARCH_TEMPLATES

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: per-op overhead dominates, a second thread only contends
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = internvideo.create_model("internvideo_mm_tiny")
    view = eval_view(model)
    t = model.config.num_frames
    clips = torch.stack([view.transform(read_frames(path, start + segment_indices(length, t)))
                         for path, start, length, _ in samples])
    tokenizer = internvideo.get_tokenizer("clip", context_length=model.config.context_length)
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        texts = [SEARCH_TEMPLATES[rng.integers(len(SEARCH_TEMPLATES))].replace("{}", caps[rng.integers(len(caps))])
                 for *_, caps in samples]
        loss = loss_fn(model.encode_video(clips), model.encode_text(tokenizer(texts)), model.logit_scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    torch.set_num_threads(threads)
    internvideo.save_model(model, dest)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving an app on 127.0.0.1 in a thread; waits (bounded) for it to start."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        for _ in range(200):  # at most 10 s
            if self.server.started:
                return self
            time.sleep(0.05)
        raise AssertionError("the server did not start within 10 s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
