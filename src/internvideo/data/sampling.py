"""Which frames of a video make a clip: index samplers in mmaction2's vocabulary.

Every sampler is a pure function of the video's length (and, for
:class:`FpsSampler`, its frame rate) plus a random generator, returning a 1-D
``int64`` array of frame indices for :func:`internvideo.data.read_frames`.

One rule decides between training and test behaviour: **pass an** ``rng``
(a :class:`numpy.random.Generator`) **for random, training-time sampling; pass**
``None`` **for the deterministic test-time layout**. Randomness therefore only
ever comes from a generator the caller seeded, which makes data loading
reproducible across runs and across ``DataLoader`` workers.

Short videos. A dense clip of ``clip_len`` frames every ``frame_interval``
frames spans ``(clip_len - 1) * frame_interval + 1`` frames. When the video is
shorter than that, ``short`` chooses what happens:

* ``"loop"`` (default): indices wrap around to the start, as if the video
  repeated (mmaction2's ``out_of_bound_opt="loop"``). Motion stays at the
  intended speed; the clip may jump back to the beginning.
* ``"clamp"``: indices past the end repeat the last frame (mmaction2's
  ``"repeat_last"``). No jump, but the clip ends frozen.

Segment and uniform samplers never run out of frames: with fewer frames than
samples some indices simply repeat. A single image (``num_frames == 1``)
becomes a clip of identical frames under every sampler.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol

import numpy as np

__all__ = [
    "Sampler", "DenseSampler", "SegmentSampler", "UniformSampler", "FpsSampler",
    "dense_indices", "segment_indices", "uniform_indices", "fps_indices",
]

ShortPolicy = Literal["loop", "clamp"]


def _check_length(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")


def _fit(indices: np.ndarray, num_frames: int, short: ShortPolicy) -> np.ndarray:
    if short == "loop":
        return indices % num_frames
    if short == "clamp":
        return np.minimum(indices, num_frames - 1)
    raise ValueError(f"short must be 'loop' or 'clamp', not {short!r}")


def dense_indices(num_frames: int, clip_len: int, frame_interval: int = 1, num_clips: int = 1, *,
                  rng: np.random.Generator | None = None, short: ShortPolicy = "loop") -> np.ndarray:
    """``num_clips`` clips of ``clip_len`` frames taken every ``frame_interval`` frames.

    Training (``rng`` given): each clip starts at a uniformly random frame such
    that it fits in the video. Test (``rng=None``): clip starts are evenly
    spaced, each clip centred in its share of the video (one clip = the middle).
    Returns ``num_clips * clip_len`` indices, clip after clip.
    """
    _check_length(num_frames)
    if clip_len < 1 or frame_interval < 1 or num_clips < 1:
        raise ValueError(f"clip_len, frame_interval and num_clips must be >= 1, got "
                         f"{clip_len}, {frame_interval}, {num_clips}")
    span = (clip_len - 1) * frame_interval + 1
    room = max(num_frames - span, 0)  # how far the start may move
    if rng is not None:
        starts = np.sort(rng.integers(0, room + 1, size=num_clips))
    else:
        starts = np.floor(room * (np.arange(num_clips) + 0.5) / num_clips).astype(np.int64)
    offsets = np.arange(clip_len) * frame_interval
    indices = (starts[:, None] + offsets[None, :]).reshape(-1)
    return _fit(indices.astype(np.int64), num_frames, short)


def segment_indices(num_frames: int, num_segments: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN sampling: split the video into ``num_segments`` equal parts, one frame from each.

    Training picks a random frame inside each segment; test takes each
    segment's middle frame. This is how the multimodal (CLIP-based) encoder sees
    a video: 8 frames covering all of it.
    """
    _check_length(num_frames)
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    edges = np.linspace(0.0, num_frames, num_segments + 1)
    lengths = np.diff(edges)
    where = rng.random(num_segments) if rng is not None else np.full(num_segments, 0.5)
    indices = np.floor(edges[:-1] + where * lengths).astype(np.int64)
    return np.clip(indices, 0, num_frames - 1)


def uniform_indices(num_frames: int, num: int) -> np.ndarray:
    """``num`` evenly spaced indices from the first to the last frame (inclusive)."""
    _check_length(num_frames)
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    return np.round(np.linspace(0, num_frames - 1, num)).astype(np.int64)


def fps_indices(num_frames: int, video_fps: float, target_fps: float = 1.0, max_frames: int | None = None, *,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Frames at a fixed rate in seconds (e.g. one per second), at most ``max_frames``.

    The video is cut into windows of ``1 / target_fps`` seconds; test takes the
    middle frame of each window, training a random frame in it. Videos longer
    than ``max_frames`` windows keep ``max_frames`` evenly spaced windows, and
    every video yields at least one frame. Variable-frame-rate videos are
    treated as if they ran at their average rate ``video_fps``.
    """
    _check_length(num_frames)
    if video_fps <= 0 or target_fps <= 0:
        raise ValueError(f"frame rates must be positive, got video_fps={video_fps}, target_fps={target_fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    window = video_fps / target_fps  # frames per window
    count = max(int(num_frames // window), 1)
    chosen = np.arange(count)
    if max_frames is not None and count > max_frames:
        chosen = np.round(np.linspace(0, count - 1, max_frames)).astype(np.int64)
    where = rng.random(len(chosen)) if rng is not None else np.full(len(chosen), 0.5)
    length = min(window, float(num_frames))
    indices = np.floor((chosen + where) * length).astype(np.int64)
    return np.clip(indices, 0, num_frames - 1)


class Sampler(Protocol):
    """Anything that turns a video's length into frame indices.

    ``rng`` given means training-time (random) sampling, ``None`` test-time.
    ``fps`` is the video's frame rate; only rate-based samplers use it.
    ``clips(training)`` says into how many equal clips the result splits, so a
    dataset can cut a multi-clip test sample into its clips.
    """

    def __call__(self, num_frames: int, *, rng: np.random.Generator | None = None,
                 fps: float | None = None) -> np.ndarray: ...

    def clips(self, training: bool) -> int: ...


@dataclasses.dataclass(frozen=True)
class DenseSampler:
    """Dense clips: ``clip_len`` frames every ``frame_interval`` (VideoMAE: 16 x 4).

    ``num_clips`` > 1 is meant for test-time multi-view evaluation; it applies
    only when sampling without an ``rng`` unless ``train_clips`` says otherwise.
    """

    clip_len: int = 16
    frame_interval: int = 4
    num_clips: int = 1
    train_clips: int = 1
    short: ShortPolicy = "loop"

    def __call__(self, num_frames: int, *, rng: np.random.Generator | None = None,
                 fps: float | None = None) -> np.ndarray:
        clips = self.train_clips if rng is not None else self.num_clips
        return dense_indices(num_frames, self.clip_len, self.frame_interval, clips, rng=rng, short=self.short)

    def clips(self, training: bool) -> int:
        return self.train_clips if training else self.num_clips


@dataclasses.dataclass(frozen=True)
class SegmentSampler:
    """TSN segments: one frame from each of ``num_segments`` equal parts (CLIP model: 8)."""

    num_segments: int = 8

    def __call__(self, num_frames: int, *, rng: np.random.Generator | None = None,
                 fps: float | None = None) -> np.ndarray:
        return segment_indices(num_frames, self.num_segments, rng=rng)

    def clips(self, training: bool) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class UniformSampler:
    """``num`` evenly spaced frames including first and last; the same in training and test."""

    num: int = 8

    def __call__(self, num_frames: int, *, rng: np.random.Generator | None = None,
                 fps: float | None = None) -> np.ndarray:
        return uniform_indices(num_frames, self.num)

    def clips(self, training: bool) -> int:
        return 1


@dataclasses.dataclass(frozen=True)
class FpsSampler:
    """``target_fps`` frames per second of video, at most ``max_frames`` (retrieval: 1 fps, 12)."""

    target_fps: float = 1.0
    max_frames: int | None = 12
    #: Repeat the last index up to ``max_frames`` so every clip has the same
    #: length and clips batch together (repeats add no information).
    pad: bool = True
    default_fps: float = 30.0  # used when the caller does not know the video's rate

    def __call__(self, num_frames: int, *, rng: np.random.Generator | None = None,
                 fps: float | None = None) -> np.ndarray:
        indices = fps_indices(num_frames, fps or self.default_fps, self.target_fps, self.max_frames, rng=rng)
        if self.pad and self.max_frames is not None and len(indices) < self.max_frames:
            indices = np.concatenate([indices, np.full(self.max_frames - len(indices), indices[-1])])
        return indices

    def clips(self, training: bool) -> int:
        return 1
