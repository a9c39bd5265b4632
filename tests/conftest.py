"""Shared fixtures. Data-pipeline fixtures are prefixed ``data_``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def data_world(tmp_path_factory):
    """A tiny synthetic world (30 clips of 8 frames at 32 px), built once per session."""
    from internvideo.data import make_world

    return make_world(tmp_path_factory.mktemp("data_world"), num_videos=30, seed=3, size=32, num_frames=8,
                      num_long=2, num_ava=2, num_images=4)
