"""Input checks the language tasks share: which videos can be read."""
from __future__ import annotations

import os
from collections.abc import Sequence

from ..data import VideoError, probe
from ..data.datasets import IMAGE_EXTENSIONS

__all__ = ["readable_videos"]


def readable_videos(videos: Sequence[str]) -> tuple[list[int], list[tuple[str, str]]]:
    """Indices of the distinct videos that can be opened, and ``(path, reason)`` for the others (in order).

    Probing first lets a task list, skip and count missing or broken videos
    instead of failing half-way through a strict evaluation dataset.
    """
    keep, skipped, seen = [], [], {}
    for i, v in enumerate(videos):
        if v in seen:
            if seen[v]:
                keep.append(i)
            continue
        try:
            if not os.path.isfile(v):
                raise FileNotFoundError(v)
            if os.path.splitext(v)[1].lower() not in IMAGE_EXTENSIONS:
                probe(v)
            keep.append(i)
            seen[v] = True
        except FileNotFoundError:
            skipped.append((v, "file not found"))
            seen[v] = False
        except VideoError as e:
            skipped.append((v, e.problem))
            seen[v] = False
    return keep, skipped
