"""Helpers for the data tests: videos whose frames say which frame they are.

Each frame shows its index as a 4x4 grid of black/white cells (bit ``b`` of
the index in cell ``b``), plus a band whose brightness changes every frame so
encoders see motion. Cells are large and saturated, so the bits survive any
lossy codec, and a wrong frame is caught by reading the grid back.
"""

from __future__ import annotations

import av
import numpy as np

BITS = 12


def index_frame(index: int, height: int = 64, width: int = 64) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    ch, cw = height * 3 // 4 // 3, width // 4
    for b in range(BITS):
        r, c = divmod(b, 4)
        if (index >> b) & 1:
            frame[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = 255
    frame[3 * ch:, :] = (index * 37) % 200 + 20
    return frame


def index_video(num_frames: int, height: int = 64, width: int = 64) -> list[np.ndarray]:
    return [index_frame(i, height, width) for i in range(num_frames)]


def read_index(frame: np.ndarray) -> int:
    height, width = frame.shape[:2]
    ch, cw = height * 3 // 4 // 3, width // 4
    value = 0
    for b in range(BITS):
        r, c = divmod(b, 4)
        cell = frame[r * ch + ch // 4:(r + 1) * ch - ch // 4, c * cw + cw // 4:(c + 1) * cw - cw // 4]
        if cell.mean() > 128:
            value |= 1 << b
    return value


def read_indices(frames: np.ndarray) -> list[int]:
    return [read_index(f) for f in frames]


def has_codec(encoder: str, decoder: str) -> bool:
    """Whether the bundled FFmpeg has this encoder and this decoder."""
    try:
        av.codec.Codec(encoder, "w")
        av.codec.Codec(decoder, "r")
        return True
    except Exception:
        return False


def write_file(path, text, mode="w"):
    """Write text or bytes to ``path``, making its folder; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00"  # bytes that are not UTF-8 text, after one line


def enospc(*args, **kwargs):
    """Stand-in for a write on a full disk (monkeypatch it over ``os.fsync``)."""
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
