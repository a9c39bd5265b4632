"""Which frames of a video make a clip: index samplers in mmaction2's vocabulary.

Every sampler is a pure function of the video's length (and, for
:class:`FpsSampler`, its frame rate) plus a random generator, returning a 1-D
``int64`` array of frame indices for :func:`internvideo.data.read_frames`.

One rule decides between training and test behaviour: **pass an** ``rng``
(a :class:`numpy.random.Generator`) **for random, training-time sampling; pass**
``None`` **for the deterministic test-time layout**. Randomness therefore only
ever comes from a generator the caller seeded, which makes data loading
reproducible across runs and across ``DataLoader`` workers.

Test-time clip layout. With ``num_clips`` > 1 (multi-view testing) the clip
starts follow ``layout``:

* ``"videomae"`` (default): the official VideoMAE / InternVideo test loader.
  The video is first subsampled to every ``frame_interval``-th frame
  (``0, k, 2k, ...``, padded by repeating its last frame up to ``clip_len``);
  clip ``i`` is the ``clip_len`` consecutive subsampled frames from
  ``int(i * step)``, ``step = (L - clip_len) / (num_clips - 1)`` over the
  ``L`` subsampled frames. Clips run from the first frame to the last
  possible start, and every index is a multiple of ``frame_interval``.
* ``"mmaction"``: mmaction2's ``SampleFrames(test_mode=True)``: starts
  ``round(i * max_offset / (num_clips - 1))`` (NumPy rounding, halves to even)
  in raw frames, ``max_offset = num_frames - ((clip_len - 1) * frame_interval + 1)``.
* ``"centred"``: each clip centred in its ``1 / num_clips`` share of the spare
  room (this library's layout before 0.2). With little room it repeats whole
  clips (3 frames, 2 clips of 2: starts 0 and 0, where the official layouts
  give 0 and 1).

A single test clip (``num_clips == 1``) is the centre of the video in every
layout: start ``max_offset // 2``, as mmaction2 (VideoMAE's test loader has no
single-clip mode: its formula divides by ``num_clips - 1``).

Short videos. A dense clip of ``clip_len`` frames every ``frame_interval``
frames spans ``(clip_len - 1) * frame_interval + 1`` frames. When the video is
shorter than that, ``short`` chooses what happens to the indices past its end:

* ``"loop"``: they wrap around to the start, as if the video repeated
  (mmaction2's ``out_of_bound_opt="loop"``, its default). Motion stays at the
  intended speed; the clip may jump back to the beginning.
* ``"repeat_last"``: they repeat the clip's last *sampled* in-range frame
  (mmaction2's ``"repeat_last"``; the VideoMAE test loader pads the same way):
  65 frames, 16 every 5th end ``..., 55, 60, 60, 60, 60``. No jump, the stride
  is kept, the clip ends frozen.
* ``"clamp"``: they become the video's last frame (``..., 55, 60, 64, 64, 64``),
  which breaks the stride once; no reference loader does this.
* ``None`` (default): the layout's own rule: ``"repeat_last"`` for the
  ``"videomae"`` test layout, ``"loop"`` otherwise (training, ``"mmaction"``,
  ``"centred"``).

Segment and uniform samplers never run out of frames: with fewer frames than
samples some indices simply repeat. A single image (``num_frames == 1``)
becomes a clip of identical frames under every sampler.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol

import numpy as np

__all__ = [
    "Sampler", "ShortPolicy", "TestLayout", "DenseSampler", "SegmentSampler", "UniformSampler", "FpsSampler",
    "dense_indices", "segment_indices", "uniform_indices", "fps_indices",
]

ShortPolicy = Literal["loop", "repeat_last", "clamp"]
TestLayout = Literal["videomae", "mmaction", "centred"]
_SHORT = ("loop", "repeat_last", "clamp")
_LAYOUTS = ("videomae", "mmaction", "centred")


def _check_length(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")


def _fit(clips: np.ndarray, num_frames: int, short: ShortPolicy) -> np.ndarray:
    """Bring ``clips (num_clips, clip_len)`` of increasing indices inside ``[0, num_frames)``."""
    if short == "loop":
        return clips % num_frames
    if short == "clamp":
        return np.minimum(clips, num_frames - 1)
    if short == "repeat_last":
        inside = clips < num_frames
        # Clips start inside the video, so each row has an in-range index; the largest is the last sampled one.
        last = np.where(inside, clips, -1).max(axis=1, keepdims=True)
        return np.where(inside, clips, last)
    raise ValueError(f"short must be one of {', '.join(map(repr, _SHORT))}, not {short!r}")


def _videomae_starts(num_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> np.ndarray:
    """Clip starts (in subsampled frames) of the official VideoMAE test loader."""
    length = max(-(-num_frames // frame_interval), clip_len)  # subsampled frames, padded up to clip_len
    # Python floats and int() exactly as the reference computes them (truncation, not rounding).
    step = max(1.0 * (length - clip_len) / (num_clips - 1), 0.0)
    return np.array([int(i * step) for i in range(num_clips)], dtype=np.int64)


def dense_indices(num_frames: int, clip_len: int, frame_interval: int = 1, num_clips: int = 1, *,
                  rng: np.random.Generator | None = None, short: ShortPolicy | None = None,
                  layout: TestLayout = "videomae") -> np.ndarray:
    """``num_clips`` clips of ``clip_len`` frames taken every ``frame_interval`` frames.

    Training (``rng`` given): each clip starts at a uniformly random frame such
    that it fits in the video. Test (``rng=None``): one clip is the video's
    centre; several follow ``layout`` (the module docstring gives each formula).
    Returns ``num_clips * clip_len`` indices, clip after clip.
    """
    _check_length(num_frames)
    if clip_len < 1 or frame_interval < 1 or num_clips < 1:
        raise ValueError(f"clip_len, frame_interval and num_clips must be >= 1, got "
                         f"{clip_len}, {frame_interval}, {num_clips}")
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, _LAYOUTS))}, not {layout!r}")
    if short is not None and short not in _SHORT:
        raise ValueError(f"short must be one of {', '.join(map(repr, _SHORT))}, not {short!r}")
    span = (clip_len - 1) * frame_interval + 1
    room = max(num_frames - span, 0)  # how far the start may move
    offsets = np.arange(clip_len, dtype=np.int64) * frame_interval
    if rng is not None:
        starts = np.sort(rng.integers(0, room + 1, size=num_clips))
    elif num_clips == 1:
        starts = np.array([room // 2])
    elif layout == "videomae":
        # The reference pads the subsampled video with its last frame: that is repeat_last on the
        # subsampled grid, so by default the padding is left to _fit(..., "repeat_last").
        starts = _videomae_starts(num_frames, clip_len, frame_interval, num_clips) * frame_interval
    elif layout == "mmaction":
        starts = np.round(np.arange(num_clips) * (room / float(num_clips - 1)))
    else:
        starts = np.floor(room * (np.arange(num_clips) + 0.5) / num_clips)
    if short is None:
        short = "repeat_last" if rng is None and layout == "videomae" else "loop"
    clips = starts.astype(np.int64)[:, None] + offsets[None, :]
    return _fit(clips, num_frames, short).reshape(-1)


def segment_indices(num_frames: int, num_segments: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN sampling: split the video into ``num_segments`` equal parts, one frame from each.

    Training picks a random frame inside each segment; test takes each
    segment's middle frame, ``floor((2i + 1) * num_frames / (2 * num_segments))``. This is how the multimodal (CLIP-based) encoder sees
    a video: 8 frames covering all of it.
    """
    _check_length(num_frames)
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    i = np.arange(num_segments, dtype=np.int64)
    if rng is None:
        # The middle (2i + 1) N / 2n in integers: in floats it can land just below an exact integer.
        return np.minimum((2 * i + 1) * num_frames // (2 * num_segments), num_frames - 1)
    edges = np.linspace(0.0, num_frames, num_segments + 1)
    indices = np.floor(edges[:-1] + rng.random(num_segments) * np.diff(edges)).astype(np.int64)
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
    short: ShortPolicy | None = None  # None: the layout's own rule (see the module docstring)
    layout: TestLayout = "videomae"

    def __call__(self, num_frames: int, *, rng: np.random.Generator | None = None,
                 fps: float | None = None) -> np.ndarray:
        clips = self.train_clips if rng is not None else self.num_clips
        return dense_indices(num_frames, self.clip_len, self.frame_interval, clips, rng=rng, short=self.short,
                             layout=self.layout)

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
