"""Data-pipeline throughput: training clips per second on one CPU core.

Measures decode + sample + transform of 16-frame 224 px training clips
(VideoMAE fine-tuning recipe: 16 x 4 dense sampling, random resized crop,
flip, RandAugment m7-n4, normalise, random erasing) from generated h264
sources at 320x240 and 1280x720, against the naive approach of decoding every
frame of the video and then picking 16.

Everything runs on one core (``torch.set_num_threads(1)``, one decoder
thread), the unit a ``DataLoader`` worker gets; multiply by workers for a
machine. Rates are clips per CPU-second of this process, which stays
meaningful on a shared, busy machine; wall-clock rates are printed beside them.
Run: ``python -m benchmarks.bench_data [--clips N] [--out PATH]``.
Writes a table to stdout and JSON to ``benchmarks/results/data.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch

from benchmarks.common import peak_rss_mib, reset_peak_rss, rss_mib
from internvideo.data import DenseSampler, TrainTransformConfig, build_train_transform, probe, read_frames, write_video

SOURCES = {"320x240": (240, 320), "1280x720": (720, 1280)}
NUM_FRAMES, FPS, GOP = 300, 30, 60  # 10 s videos with a keyframe every 2 s (typical of web video)


def make_source(path: Path, height: int, width: int) -> None:
    """A moving texture with a drifting bright square: realistic enough motion for the encoder."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), dtype=np.uint8))
    frames = []
    for i in range(NUM_FRAMES):
        shift = i % 8
        frame = texture[shift:shift + height, shift:shift + width].copy()
        y, x = (i * 3) % (height - 40), (i * 5) % (width - 40)
        frame[y:y + 40, x:x + 40] = 255
        frames.append(frame)
    write_video(path, frames, fps=FPS, options={"g": str(GOP), "bf": "2", "preset": "veryfast", "crf": "23"})


def decode_all(path: Path, indices: np.ndarray) -> np.ndarray:
    """The naive baseline: decode every frame in order, keep the wanted ones."""
    wanted = set(indices.tolist())
    kept = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24")
    return np.stack([kept[int(i)] for i in indices])


def measure(fn: Callable[[int], object], clips: int) -> tuple[float, float, float]:
    """(clips per CPU-second, clips per wall-second, peak MiB) over ``clips`` calls.

    CPU time of this single-threaded process is what one core spends per clip
    and, unlike wall time, barely moves when other processes share the machine.
    The memory is the resident-set high-water mark during the calls less the
    resident set before them. All rows share one process, so pages an earlier
    row left mapped are reused and not counted again: an order of magnitude of
    what a worker adds to its baseline (tens of MiB), not an exact figure.
    """
    fn(0)  # warm up (frame table cache, allocator)
    before = rss_mib()
    reset_peak_rss()
    cpu, wall = time.process_time(), time.perf_counter()
    for k in range(clips):
        fn(k + 1)
    rates = clips / (time.process_time() - cpu), clips / (time.perf_counter() - wall)
    return *rates, max(0.0, peak_rss_mib() - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="clips timed per configuration")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sampler = DenseSampler(16, 4)
    transform = build_train_transform(TrainTransformConfig(img_size=224))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (height, width) in SOURCES.items():
            path = Path(tmp) / f"{name}.mp4"
            make_source(path, height, width)
            num_frames = probe(path).num_frames

            def pipeline(k: int, short_side: int | None = None, naive: bool = False, path: Path = path,
                         num_frames: int = num_frames) -> torch.Tensor:
                rng = np.random.default_rng(k)
                indices = sampler(num_frames, rng=rng)
                frames = decode_all(path, indices) if naive else read_frames(path, indices, short_side=short_side)
                return transform(frames, rng)

            rows = {
                "read_frames + transform": lambda k: pipeline(k),
                "read_frames(short_side=256) + transform": lambda k: pipeline(k, short_side=256),
                "decode every frame + transform": lambda k: pipeline(k, naive=True),
                "read_frames only": lambda k, path=path, n=num_frames: read_frames(
                    path, sampler(n, rng=np.random.default_rng(k))),
            }
            for label, fn in rows.items():
                clips = args.clips if "every" not in label else max(3, args.clips // 4)
                rate, wall_rate, mib = measure(fn, clips)
                results.append({"source": name, "pipeline": label, "clips_per_cpu_s": round(rate, 2),
                                "cpu_ms_per_clip": round(1000 / rate, 1), "clips_per_wall_s": round(wall_rate, 2),
                                "rss_growth_mib": round(mib, 1), "clips_timed": clips})
                print(f"{name:>9}  {label:<42} {rate:7.2f} clips/s per core  {1000 / rate:8.1f} ms/clip"
                      f"  (wall {wall_rate:6.2f} clips/s, +{mib:.0f} MiB peak)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "16x224 training clips (16x4 dense sampling, RRC, flip, RandAugment m7-n4, erasing) per CPU core",
        "source_video": {"frames": NUM_FRAMES, "fps": FPS, "gop": GOP, "codec": "h264", "bframes": 2},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__, "av": av.__version__, "threads": 1},
        "results": results,
    }, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
