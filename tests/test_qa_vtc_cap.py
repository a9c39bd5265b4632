"""The official ``vtc_cap`` QA head: its formula written from the official code, and end-to-end training with
per-group lr (CoTrain/modules/clip_module.py, objectives.compute_openend_vqa, cotrain_utils.set_schedule)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import internvideo
from internvideo.factory import load_model
from internvideo.models.qa import VideoQA, VideoQAConfig
from internvideo.errors import UsageError
from internvideo.tasks.common import WrongModelError
from internvideo.tasks.qa import evaluate_qa
from internvideo.train.heads import train_qa_head
from internvideo.tokenizer import get_tokenizer
from internvideo.train import train
from internvideo.train.config import load_config
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)


def _qa(seed: int = 0) -> VideoQA:
    torch.manual_seed(seed)
    backbone = internvideo.create_model("internvideo_mm_tiny")
    return VideoQA(VideoQAConfig(answers=("red", "blue", "left", "two"), head="vtc_cap"), backbone=backbone).eval()


def test_vtc_cap_is_the_official_formula():
    model = _qa()
    bb = model.backbone
    torch.manual_seed(1)
    video = torch.randn(2, 3, 4, 32, 32)
    questions = ["what colour is the square?", "how many?"]
    ids77 = get_tokenizer("clip")(questions)  # the official inputs: padded to 77
    with torch.no_grad():
        # infer(): encode_text with text_projection None -> end-token feature after ln_final, and all positions
        text_all = bb.text.forward_tokens(ids77)
        end = ids77.argmax(dim=-1)
        text_feats = text_all[torch.arange(2), end]
        # encode_video with visual_proj None -> visual_ln_post of the balance-mixed query and frame-CLS mean
        feats = bb.visual.forward_features(video)
        w = torch.sigmoid(bb.visual.balance)
        video_feats = bb.visual.ln_post((1 - w) * feats.query + w * feats.tokens[:, :, 0].mean(dim=1))
        # caption_decoder(video_all_feats, text_all_feats[:, :-1]) with predictor Identity, taken at the end token
        cap = bb.caption.features(text_all[:, :-1], bb.caption.pool_video(feats.tokens.flatten(1, 2)))
        cap_feats = cap[torch.arange(2), end]
        x = torch.cat([cap_feats, video_feats, text_feats], dim=1)
        assert x.shape[1] == bb.config.vision_width + 2 * bb.config.text_width
        lin1, ln, lin2 = model.head.mlp[1], model.head.mlp[2], model.head.mlp[5]
        hidden = F.gelu(F.layer_norm(x @ lin1.weight.T + lin1.bias, (x.shape[1] * 2,), ln.weight, ln.bias))
        official = hidden @ lin2.weight.T + lin2.bias
        # ours runs on ids cut after the longest question (the decoder is causal, so the end state is the same)
        ids = ids77[:, : int((ids77 != 0).sum(dim=1).max())]
        ours = model(video, ids)
    torch.testing.assert_close(ours, official, atol=1e-6, rtol=0)


def test_vtc_cap_needs_a_caption_decoder_and_trains_end_to_end_only():
    backbone = internvideo.create_model("internvideo_mm_tiny", caption_layers=0)
    with pytest.raises(UsageError, match="caption decoder"):
        VideoQA(VideoQAConfig(answers=("a",), head="vtc_cap"), backbone=backbone)
    with pytest.raises(WrongModelError, match="trained end to end"):
        train_qa_head(_qa(), [])
    frozen = {n for n, p in _qa().named_parameters() if not p.requires_grad}
    assert frozen >= {"backbone.visual.proj.weight", "backbone.text.proj.weight", "backbone.logit_scale"}


def test_vtc_cap_trains_end_to_end_with_the_head_at_10x(data_world, tmp_path):
    torch.manual_seed(0)
    start = internvideo.create_model("internvideo_mm_tiny")
    internvideo.save_model(start, tmp_path / "start")
    cfg = load_config(None, [
        "objective=qa", "model.name=internvideo_mm_tiny", f"model.pretrained={tmp_path / 'start'}",
        "qa.head=vtc_cap", f"data.root={data_world.root}", "data.train=qa_train.jsonl",
        "data.val=qa_val.jsonl", "qa.answers=20", "data.hflip=false", "data.num_workers=0",
        f"run.out_dir={tmp_path / 'run'}", "run.batch_size=8", "run.max_steps=4", "run.progress=false",
        "optim.scale_lr=false", "optim.lr=1e-4", "optim.lr_groups={head.: 10}", "optim.weight_decay=0.01"])
    result = train(cfg)
    assert result.metric_name == "accuracy" and result.best_metric is not None
    model = load_model(result.checkpoint)
    assert isinstance(model, VideoQA) and model.config.head == "vtc_cap"
    before, after = start.state_dict(), model.backbone.state_dict()
    # the backbone and its caption decoder were fine-tuned; the unused projections were not
    assert not torch.equal(before["visual.blocks.0.attn.qkv.weight"], after["visual.blocks.0.attn.qkv.weight"])
    assert not torch.equal(before["caption.blocks.0.mlp.fc1.weight"], after["caption.blocks.0.mlp.fc1.weight"])
    assert torch.equal(before["visual.proj.weight"], after["visual.proj.weight"])
    scored = evaluate_qa(model, data_world.root / "qa_test.jsonl", progress=False)
    assert 0 <= scored["accuracy"] <= 100 and scored["num_questions"] > 0
