"""Demo stage: index the world's test clips for text search with the demo's multimodal model.

Each test clip is one window; its first caption is typed as a query, and the
stage reports how often the clip itself is the top result (text-to-video
search R@1, percent; baseline: one over the number of clips). It prints the
``internvideo serve`` command for trying the page on the same index.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from ..data import read_video_text
from ..search import Searcher, build_index
from ..tasks.common import load_model_from
from .context import DemoContext

#: Clips indexed per preset (the test split has 15 % of the world's clips).
MAX_CLIPS = {"smoke": 10, "quick": 40, "default": 200}


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # no copy where the file system allows it
    except OSError:
        shutil.copyfile(src, dst)


def demo_stage(ctx: DemoContext) -> list[dict[str, Any]]:
    # The test clips; a world too small to have a test split (tests use such worlds) falls back to another split.
    samples = next(found for split in ("test", "val", "train")
                   if (found := read_video_text(ctx.world / f"captions_{split}.jsonl")))
    samples = samples[:MAX_CLIPS.get(ctx.preset, 200)]
    folder = ctx.work / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    for s in samples:
        dst = folder / os.path.basename(s.video)
        if not dst.exists():
            _link_or_copy(s.video, str(dst))
    out = ctx.work / "index"
    model = load_model_from(ctx.mm_checkpoint, "video search")
    # World clips are 2 s long: one window per clip, so R@1 asks for the clip itself.
    build_index(model, folder, out, model_source=ctx.mm_checkpoint, window=2.0, stride=2.0, progress=ctx.progress,
                overwrite=True)
    searcher = Searcher(out, model)
    try:
        hits = sum(searcher.search(s.captions[0], k=1)[0].video == os.path.basename(s.video) for s in samples)
    finally:
        searcher.close()
    print(f"  try the search page:  internvideo serve {out}")
    return [{"family": "search", "model": "multimodal", "metric": "text-to-video search R@1 (%)",
             "short": "search R@1", "value": 100.0 * hits / len(samples), "chance": 100.0 / len(samples)}]
