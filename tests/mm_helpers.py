"""Helpers shared by the multimodal-model tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run on one thread: tiny models are dominated by per-op overhead, and two threads per pytest worker only
    contend for the 2 cores the suite runs on. Import it into a test module to apply it there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def eval_clip(model, path) -> torch.Tensor:
    """One video's evaluation clip as a batch of one, read the way the tasks read it."""
    from internvideo.data import VideoDataset
    from internvideo.tasks import common

    return VideoDataset([path], common.eval_view(model), training=False, strict=True)[0]["video"][None]
