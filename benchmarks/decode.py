"""Video decoders compared on the project's real use: clips per second on one core, and the frames they give.

Clips: 16 frames at interval 4 (VideoMAE's dense sampling) and 8 TSN segments
(segment centres), from 10-s H.264 videos (30 fps, a keyframe every 2 s, two
B-frames) at 360p and 720p, short side resized to 224 during decoding. Every
clip opens its file afresh, as a dataset item does, and our per-process frame
table cache is cleared before each clip: at WebVid scale a worker never sees
the same video twice in an epoch.

Backends: PyAV (ours, :func:`internvideo.data.read_frames`), decord
(``VideoReader`` + ``get_batch``) and torchcodec (``VideoDecoder``) where they
import; a backend that does not is reported with the reason. Correctness: the
full-resolution frames of each backend are compared with ours pixel by pixel
(identical, or the largest difference), and the 224-px frames by their mean
absolute difference (each backend scales with its own filter).

One process, one thread (``torch.set_num_threads(1)``, one decoder thread): the
unit a ``DataLoader`` worker gets; rates are clips per CPU-second of this
process (meaningful on a busy machine), wall-clock rates beside them. Backends
alternate within each round; medians over ``--rounds`` (>= 5).

Run: ``python -m benchmarks.decode [--rounds 5] [--out benchmarks/results/decode.json]`` (decord/torchcodec
installed in the same environment to include them).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_data import FPS, GOP, NUM_FRAMES, make_source
from internvideo.data import read_frames, segment_indices
from internvideo.data import video as video_mod

SOURCES = {"360p": (360, 640), "720p": (720, 1280)}
SHORT_SIDE = 224
STARTS = (0, 57, 123, 180, 230)  # dense clip starts (frames) spread over the video, one clip each per round


def clips() -> dict[str, list[np.ndarray]]:
    dense = [np.arange(s, s + 16 * 4, 4) for s in STARTS]
    tsn = [np.asarray(segment_indices(NUM_FRAMES, 8, rng=None))]
    return {"16x4 dense": dense, "8 TSN segments": tsn}


def _scaled(height: int, width: int) -> tuple[int, int]:
    return video_mod._scaled_size(width, height, SHORT_SIDE)


def pyav_backend() -> Callable[[str, np.ndarray, int | None], np.ndarray]:
    def run(path: str, idx: np.ndarray, short: int | None) -> np.ndarray:
        video_mod._cached_scan.cache_clear()  # a video seen for the first time, as at scale
        return read_frames(path, idx, short_side=short)
    return run


def decord_backend() -> Callable[[str, np.ndarray, int | None], np.ndarray]:
    import decord

    def run(path: str, idx: np.ndarray, short: int | None) -> np.ndarray:
        size = {}
        if short is not None:
            h, w = SOURCE_SIZE[path]
            size = dict(zip(("width", "height"), _scaled(h, w)))
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, **size)
        return vr.get_batch(idx.tolist()).asnumpy()
    return run


def torchcodec_backend() -> Callable[[str, np.ndarray, int | None], np.ndarray]:
    from torchcodec.decoders import VideoDecoder

    def run(path: str, idx: np.ndarray, short: int | None) -> np.ndarray:
        transforms = None
        if short is not None:
            from torchcodec.transforms import Resize

            h, w = SOURCE_SIZE[path]
            transforms = [Resize(size=_scaled(h, w)[::-1])]
        dec = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC",
                           **({"transforms": transforms} if transforms else {}))
        return dec.get_frames_at(idx.tolist()).data.numpy()
    return run


SOURCE_SIZE: dict[str, tuple[int, int]] = {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/decode.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    backends, missing = {"pyav (ours)": pyav_backend()}, {}
    for name, make in (("decord", decord_backend), ("torchcodec", torchcodec_backend)):
        try:
            run = make()
            backends[f"{name} {__import__(name).__version__}"] = run
        except Exception as e:  # noqa: BLE001 - an import of a native extension fails in many ways
            missing[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
    versions = {"av": __import__("av").__version__, "torch": torch.__version__}
    for mod in ("decord", "torchcodec"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for source, (h, w) in SOURCES.items():
            path = str(Path(tmp) / f"{source}.mp4")
            make_source(Path(path), h, w)
            SOURCE_SIZE[path] = (h, w)
            for layout, idx_list in clips().items():
                ref_full = [backends["pyav (ours)"](path, i, None) for i in idx_list]
                ref_small = [backends["pyav (ours)"](path, i, SHORT_SIDE) for i in idx_list]
                row: dict = {"source": source, "clips": layout, "backends": {}}
                for name, run in backends.items():
                    full = [run(path, i, None) for i in idx_list]
                    small = [run(path, i, SHORT_SIDE) for i in idx_list]
                    diff = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(full, ref_full))
                    same = all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(full, ref_full))
                    small_mad = float(np.mean([np.abs(a.astype(np.float32) - b).mean() if a.shape == b.shape
                                               else np.nan for a, b in zip(small, ref_small)]))
                    row["backends"][name] = {"identical_full_res": same, "max_abs_diff_full_res": diff,
                                             "mean_abs_diff_224": round(small_mad, 3), "cpu_s": [], "wall_s": []}
                for _ in range(args.rounds):
                    for name, run in backends.items():
                        c0, w0 = time.process_time(), time.perf_counter()
                        for idx in idx_list:
                            run(path, idx, SHORT_SIDE)
                        row["backends"][name]["cpu_s"].append((time.process_time() - c0) / len(idx_list))
                        row["backends"][name]["wall_s"].append((time.perf_counter() - w0) / len(idx_list))
                for b in row["backends"].values():
                    b["clips_per_cpu_s"] = round(1 / statistics.median(b["cpu_s"]), 2)
                    b["clips_per_wall_s"] = round(1 / statistics.median(b["wall_s"]), 2)
                results.append(row)
    report = {"machine": {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "processor": platform.processor()
                          or platform.machine(), "python": platform.python_version(), **versions,
                          "note": "shared machine (other jobs running): CPU-time rates are the comparable ones"},
              "video": {"frames": NUM_FRAMES, "fps": FPS, "gop": GOP, "codec": "h264 (libx264 veryfast crf 23, 2 B)"},
              "rounds": args.rounds, "unavailable": missing, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"cpu capability {report['machine']['cpu_capability']}; one core; medians of {args.rounds} rounds")
    print(f"{'source':7s} {'clips':15s} {'backend':12s} {'clips/cpu-s':>11s} {'clips/s wall':>12s} "
          f"{'full-res frames':>22s} {'224px MAD':>9s}")
    for row in results:
        for name, b in row["backends"].items():
            same = "identical" if b["identical_full_res"] else f"max diff {b['max_abs_diff_full_res']}"
            print(f"{row['source']:7s} {row['clips']:15s} {name:12s} {b['clips_per_cpu_s']:11.1f} "
                  f"{b['clips_per_wall_s']:12.1f} {same:>22s} {b['mean_abs_diff_224']:9.2f}")
    for name, why in missing.items():
        print(f"{name}: not measured ({why})")


if __name__ == "__main__":
    main()
