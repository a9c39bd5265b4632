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
    assert shorts == ["QA acc", "QA motion acc", "QA acc (vtc_cap)", "QA motion acc (vtc_cap)", "caption BLEU-4",
                      "caption CIDEr-D"]
    assert all(set(r) >= {"family", "model", "metric", "short", "value", "chance"} for r in rows)
    assert all(0 <= r["value"] <= 1000 and 0 <= r["chance"] <= 1000 for r in rows)
    # Each QA row carries its validation number beside the test one.
    assert all(0 <= r["val"] <= 100 for r in rows if r["family"] == "open-ended QA")
    # The fine-tuned captioner is saved, with the beam width chosen on validation, and loads for `caption`.
    from internvideo.factory import load_model

    captioner = load_model(tmp_path / "work" / "captioner")
    assert captioner.config.caption_vocab == cfg.caption_vocab
    assert int((tmp_path / "work" / "captioner" / "beams.txt").read_text()) in (1, 3, 5)


def test_vtc_cap_fine_tunes_end_to_end(data_world, tmp_path):
    """The official head's rows come from the whole model fine-tuned by the training loop, the head at 10x the lr."""
    from internvideo.demo.open_language import fit_vtc_cap, vtc_cap_config
    from internvideo.factory import load_model

    torch.manual_seed(0)
    cfg = dataclasses.replace(NAMED_CONFIGS["internvideo_mm_tiny"][1], caption_vocab=tuple(range(320, 400)))
    mm = InternVideoMM(cfg)
    save_model(mm, tmp_path / "mm")
    ctx = DemoContext(data_world.root, tmp_path / "work", 0, False, tmp_path / "x", tmp_path / "y", tmp_path / "mm",
                      32, "smoke")
    recipe = vtc_cap_config(ctx, mm, 2)
    assert (recipe.objective, recipe.qa.head, recipe.optim.lr_groups) == ("qa", "vtc_cap", {"head.": 10.0})
    state = torch.random.get_rng_state()
    model = fit_vtc_cap(ctx, mm, 2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the rows after it keep their numbers
    assert model.config.head == "vtc_cap"
    # The backbone trained too (end to end), the frozen model given to it did not.
    before = dict(mm.named_parameters())
    moved = [n for n, p in model.backbone.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("visual.") for n in moved) and any(n.startswith("caption.") for n in moved)
    assert torch.equal(load_model(tmp_path / "mm").visual.patch_embed.proj.weight, mm.visual.patch_embed.proj.weight)
    saved = load_model(next((tmp_path / "work" / "qa_vtc_cap" / "checkpoints").glob("step_*")))
    assert saved.config.head == "vtc_cap" and saved.backbone.config.caption_vocab == cfg.caption_vocab
