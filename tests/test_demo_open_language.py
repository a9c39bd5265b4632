"""The open-language demo stage on the tiny world with an untrained multimodal model (the pipeline only)."""
from __future__ import annotations

import dataclasses

import torch

from internvideo.demo.context import DemoContext
from internvideo.demo.open_language import demo_stage
from internvideo.factory import save_model
from internvideo.models.video_clip import NAMED_CONFIGS, InternVideoMM
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)


def test_stage_rows(data_world, tmp_path):
    torch.manual_seed(0)
    # As the demo trains it: with its caption decoder over a closed vocabulary.
    cfg = dataclasses.replace(NAMED_CONFIGS["internvideo_mm_tiny"][1], caption_vocab=tuple(range(320, 400)))
    save_model(InternVideoMM(cfg), tmp_path / "mm")
    ctx = DemoContext(data_world.root, tmp_path / "work", 0, False, tmp_path / "x", tmp_path / "y", tmp_path / "mm",
                      32, "smoke")
    rows = demo_stage(ctx)
    shorts = [r["short"] for r in rows]
    assert shorts == ["QA acc", "QA motion acc", "caption BLEU-4", "caption CIDEr-D"]
    assert all(set(r) >= {"family", "model", "metric", "short", "value", "chance"} for r in rows)
    assert all(0 <= r["value"] <= 1000 and 0 <= r["chance"] <= 1000 for r in rows)
    # The fine-tuned captioner is saved, with the beam width chosen on validation, and loads for `caption`.
    from internvideo.factory import load_model

    captioner = load_model(tmp_path / "work" / "captioner")
    assert captioner.config.caption_vocab == cfg.caption_vocab
    assert int((tmp_path / "work" / "captioner" / "beams.txt").read_text()) in (1, 3, 5)
