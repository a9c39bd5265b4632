"""Small video sets decoded once and kept in memory.

Training on a few thousand short clips (the synthetic world: 2,000 clips of
16 x 32 x 32 x 3 bytes, about 100 MB) decodes every clip again at every step;
decoding then costs more than the tiny model. :class:`DecodedVideos` decodes
each file once, whole, and hands out its frames; a dataset given one
(``VideoDataset(..., decoded=DecodedVideos())``) indexes those frames
instead of calling the decoder, and returns exactly what it would have
decoded (the same frames, so the same items: see the tests).

Fill it before a ``DataLoader`` starts its workers (:meth:`DecodedVideos.preload`):
forked workers then share the decoded frames copy-on-write instead of each
decoding its own copy. Videos that would take the cache over ``max_bytes`` are
simply decoded on demand as before.

A program that evaluates the same small set many times in one process (the
demo scores its test clips with a dozen models) wraps the work in
:func:`keep_decoded`: inside it, every dataset built without its own
``decoded`` reads through the process's shared cache, so each video is decoded
once however many evaluations read it. Use it with in-process loading
(``num_workers=0``): a worker's decodes stay in the worker.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from .video import PathLike, VideoError, probe, read_frames

__all__ = ["DecodedVideos", "shared_decoded_videos", "keep_decoded", "active_decoded_videos"]

_SHARED: dict[int | None, DecodedVideos] = {}
_KEEP = [0]  # depth of open keep_decoded() blocks


def shared_decoded_videos(short_side: int | None = None) -> DecodedVideos:
    """One cache per process (and decode size), so successive training runs in one process (the demo's
    stages) decode a world once between them. Entries are keyed by path, modification time and size."""
    if short_side not in _SHARED:
        _SHARED[short_side] = DecodedVideos(short_side=short_side)
    return _SHARED[short_side]


@contextmanager
def keep_decoded() -> Iterator[None]:
    """Within the block, datasets without their own ``decoded`` read through :func:`shared_decoded_videos` (at
    their decode size): each video is decoded once for every evaluation in the process. The cache outlives the
    block (later blocks reuse it); entries follow the file's modification time and size."""
    _KEEP[0] += 1
    try:
        yield
    finally:
        _KEEP[0] -= 1


def active_decoded_videos(short_side: int | None) -> DecodedVideos | None:
    """The shared cache a dataset decoding at ``short_side`` reads through now, or None outside
    :func:`keep_decoded`."""
    return shared_decoded_videos(short_side) if _KEEP[0] else None


class DecodedVideos:
    """Whole videos as uint8 ``(T, H, W, 3)`` arrays, decoded on first use, with their frame rates."""

    def __init__(self, max_bytes: int = 2 << 30, short_side: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.short_side = short_side  # decode at this short side, as the dataset's decode_short_side
        self._videos: dict[tuple[str, int, int], tuple[np.ndarray, float]] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._videos)

    def __contains__(self, path: PathLike) -> bool:
        return os.path.exists(path) and self._key(path) in self._videos

    @staticmethod
    def _key(path: PathLike) -> tuple[str, int, int]:
        # A file rewritten in place (a world made again with another seed) must not be served from memory.
        st = os.stat(path)
        return os.path.abspath(path), st.st_mtime_ns, st.st_size

    def get(self, path: PathLike) -> tuple[np.ndarray, float]:
        """``(frames, fps)`` of ``path``: from memory, or decoded now (and kept if it fits)."""
        if not os.path.exists(path):
            raise FileNotFoundError(2, "video file not found", os.fspath(path))
        key = self._key(path)
        found = self._videos.get(key)
        if found is not None:
            return found
        info = probe(path)
        frames = read_frames(path, np.arange(info.num_frames), short_side=self.short_side)
        frames.setflags(write=False)  # shared by every item that indexes it
        entry = (frames, float(info.fps))
        if self.nbytes + frames.nbytes <= self.max_bytes:
            self._videos[key] = entry
            self.nbytes += frames.nbytes
        return entry

    def preload(self, paths: Iterable[PathLike], progress: bool = False, desc: str = "decoding") -> DecodedVideos:
        """Decode ``paths`` now (unreadable files are left for the dataset to report)."""
        from tqdm import tqdm

        paths = list(paths)
        for path in tqdm(paths, desc=desc, unit="video", disable=not progress):
            try:
                self.get(path)
            except (VideoError, FileNotFoundError):
                pass
        return self
