"""The ``internvideo`` protocols of zero-shot recognition, multiple choice and retrieval, and the CLIP weight merge.

Each reference here is written from the official code's arithmetic
(InternVideo1/Downstream/multi-modalities-downstream/CoTrain: text_prompt.py,
objectives.compute_zs_classify / compute_multiple_choice, clip_module.py with
clip_param_keys.py; Video-Text-Retrieval/modules/clip_evl/model.py build_model),
not by calling the function under test, and compared per video to 1e-6.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

import internvideo
from eval_standins import NAMES, make_colour_set
from internvideo.checkpoints.clip import convert_official_internvideo_mm, to_official_internvideo_mm
from internvideo.errors import UserError
from internvideo.tasks import EVAL_COMMANDS, evaluate_multiple_choice, evaluate_retrieval, evaluate_zeroshot, \
    multiple_choice, zeroshot
from internvideo.tasks.merge import MergeError, merge_checkpoint, merge_models
from internvideo.tasks.metrics import average_views
from internvideo.tasks.recognition import classification_dataset
from internvideo.tokenizer import get_tokenizer

QUIET = dict(progress=False)

# CoTrain/modules/text_prompt.py, prompt_type="all", written with str.format's "{}".
OFFICIAL_TEMPLATES = [
    "a photo of action {}", "a picture of action {}", "Human action of {}", "{}, an action", "{} this is an action",
    "{}, a video of action", "Playing action of {}", "{}", "Playing a kind of action, {}",
    "Doing a kind of action, {}", "Look, the human is {}", "Can you recognize the action of {}?",
    "Video classification of {}", "A video of {}", "The man is {}", "The woman is {}",
]


def official_clip_param_keys() -> set[str]:
    """CoTrain/modules/clip_param_keys.py: OpenAI CLIP ViT-B/16's parameter names (12 blocks per tower)."""
    block = ["attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
             "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
             "ln_2.weight", "ln_2.bias"]
    keys = {"positional_embedding", "text_projection", "visual.class_embedding", "visual.positional_embedding",
            "visual.conv1.weight", "visual.ln_pre.weight", "visual.ln_pre.bias", "visual.ln_post.weight",
            "visual.ln_post.bias", "visual_ln_post.weight", "visual_ln_post.bias", "token_embedding.weight",
            "visual.proj", "visual_proj", "ln_final.weight", "ln_final.bias"}
    for i in range(12):
        for name in block:
            keys.add(f"transformer.resblocks.{i}.{name}")
            keys.add(f"visual.transformer.resblocks.{i}.{name}")
    return keys


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_colour_set(tmp_path_factory.mktemp("colours"))


def _tiny(seed: int, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = internvideo.create_model("internvideo_mm_tiny", **overrides)
    with torch.no_grad():  # a scale below 100, so the clamp does not hide a wrong exponent
        model.logit_scale.fill_(math.log(30.0 + seed))
    return model.eval()


def _clip_like(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A plain CLIP of the same tower sizes: no video modules, no mask embedding, no caption decoder."""
    c = model.config
    return _tiny(seed, vision_layers=c.vision_layers, use_local=False, num_global_layers=0,
                 text_mask_embedding=False, caption_layers=0)


def _video_feats(model, data) -> torch.Tensor:
    dataset = classification_dataset(model, data)
    with torch.no_grad():
        return torch.stack([model.encode_video(dataset[i]["video"].unsqueeze(0))[0] for i in range(len(dataset))])


# ----------------------------------------------------------------------------- zero-shot


def test_shipped_template_set_is_the_official_one():
    assert list(zeroshot.ACTIONCLIP_TEMPLATES) == OFFICIAL_TEMPLATES
    assert zeroshot.resolve_templates(None, "internvideo") == (OFFICIAL_TEMPLATES, "actionclip")
    assert zeroshot.resolve_templates(None, "ours")[1] == "ours"


def test_zeroshot_internvideo_is_the_official_formula(colours):
    model = _tiny(0)
    scores, labels, names = zeroshot.zeroshot_scores(model, colours["list"], protocol="internvideo", **QUIET)
    ours = average_views(scores)
    # Official: prompts template-major, CLIP-tokenised; features normalised; a softmax per template, then the mean.
    tokens = get_tokenizer("clip")([t.format(c) for t in OFFICIAL_TEMPLATES for c in names])
    with torch.no_grad():
        text_feats = model.encode_text(tokens).double()
    video_feats = _video_feats(model, colours["list"]).double()
    text_feats = text_feats / text_feats.norm(dim=-1, keepdim=True)
    video_feats = video_feats / video_feats.norm(dim=-1, keepdim=True)
    scale = model.logit_scale.detach().clamp(0, math.log(100)).exp().double()
    similarity = scale * video_feats @ text_feats.T
    official = similarity.view(len(video_feats), len(OFFICIAL_TEMPLATES), -1).softmax(dim=-1).mean(dim=1)
    np.testing.assert_allclose(ours, official.numpy(), atol=1e-6, rtol=0)
    # Our protocol is another computation, and the results JSON says which one ran.
    np.testing.assert_raises(AssertionError, np.testing.assert_allclose, average_views(
        zeroshot.zeroshot_scores(model, colours["list"], OFFICIAL_TEMPLATES, protocol="ours", **QUIET)[0]),
        official.numpy(), atol=1e-6)
    result = evaluate_zeroshot(model, colours["list"], protocol="internvideo", **QUIET)
    assert result["protocol"] == "internvideo" and result["templates"] == "actionclip"
    assert result["num_templates"] == 16


def test_zeroshot_bad_templates_and_duplicate_classes(colours, tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("# comment\na video of {}\nno placeholder here\n")
    with pytest.raises(UserError, match=r"t\.txt, line 3: .*needs a '\{\}'"):
        zeroshot.read_templates(bad)
    with pytest.raises(UserError, match="'red' appears twice"):
        evaluate_zeroshot(_tiny(0), colours["list"], ["red", "green", "red", "blue"], **QUIET)


# ----------------------------------------------------------------------------- multiple choice


def test_multiple_choice_internvideo_is_the_official_formula(colours):
    model = _tiny(1)
    scores, answers = multiple_choice.multiple_choice_scores(model, colours["mc"], protocol="internvideo", **QUIET)
    samples = [json.loads(line) for line in colours["mc"].read_text().splitlines()]
    with torch.no_grad():
        texts = [c for s in samples for c in s["candidates"]]
        text_feats = model.encode_text(get_tokenizer("clip")(texts)).double()
    video_feats = _video_feats(model, colours["list"]).double()  # the same videos, in the same order
    text_feats = text_feats / text_feats.norm(dim=1, keepdim=True)
    video_feats = video_feats / video_feats.norm(dim=1, keepdim=True)
    text_feats = text_feats.reshape(len(samples), 3, -1)
    scale = model.logit_scale.detach().exp().double()
    official = torch.einsum("bc,bfc->bf", video_feats, text_feats) * scale
    # to 1e-6 on the cosine scale (the float32 embeddings carry ~1e-7 each)
    np.testing.assert_allclose(scores / scale.item(), (official / scale).numpy(), atol=1e-6, rtol=0)
    result = evaluate_multiple_choice(model, colours["mc"], protocol="internvideo", **QUIET)
    expected = 100.0 * float((official.argmax(dim=-1).numpy() == answers).mean())
    assert result["protocol"] == "internvideo" and result["accuracy"] == pytest.approx(expected)


def test_multiple_choice_ties_official_argmax_vs_ours(colours, monkeypatch):
    tied = (np.array([[2.0, 2.0, 1.0], [1.0, 3.0, 3.0]]), np.array([0, 2]))
    monkeypatch.setattr(multiple_choice, "multiple_choice_scores", lambda *a, **k: tied)
    # Official argmax takes the first of tied candidates: right for question 0, wrong for question 1.
    assert evaluate_multiple_choice(None, colours["mc"], protocol="internvideo")["accuracy"] == 50.0
    assert evaluate_multiple_choice(None, colours["mc"], protocol="ours")["accuracy"] == 0.0


# ----------------------------------------------------------------------------- retrieval


def test_retrieval_internvideo_protocol_settings(colours):
    result = evaluate_retrieval(_tiny(2), colours["captions"], protocol="internvideo", **QUIET)
    assert result["protocol"] == "internvideo" and result["multi_caption"] == "official" and "dsl" in result
    ours = evaluate_retrieval(_tiny(2), colours["captions"], **QUIET)
    assert ours["protocol"] == "ours" and ours["multi_caption"] == "captions" and "dsl" not in ours


# ----------------------------------------------------------------------------- the merge


def _official_names(model) -> dict[str, torch.Tensor]:
    return {k[len("clip."):]: v.double() for k, v in to_official_internvideo_mm(model.state_dict())["state_dict"].items()}


def test_merge_cotrain_rule_is_the_official_arithmetic():
    iv = _tiny(3, vision_layers=14)  # deeper than the 12 blocks the official key list names
    clip = _clip_like(iv, 4)
    iv_sd, clip_sd = _official_names(iv), _official_names(clip)
    # clip_module.py: for k in new_sd: if k in clip_sd and any(x in k for x in clip_param_keys): c*clip + (1-c)*sd
    c, keys = 0.5, official_clip_param_keys()
    expected = dict(iv_sd)
    for k in iv_sd:
        if k in clip_sd and any(x in k for x in keys):
            expected[k] = clip_sd[k] * c + iv_sd[k] * (1.0 - c)
    _, expected_ours = convert_official_internvideo_mm({"state_dict": {"clip." + k: v for k, v in expected.items()}})
    report = merge_models(iv, clip, c, "clip_param_keys")
    got = iv.state_dict()
    for k, v in expected_ours.items():
        torch.testing.assert_close(got[k].double(), v, atol=1e-6, rtol=0, msg=k)
    merged = set(report.merged)
    assert "visual.blocks.11.attn.qkv.weight" in merged and "visual.blocks.12.attn.qkv.weight" not in merged
    assert "visual.proj.weight" in merged and "text.blocks.1.mlp.fc2.bias" in merged
    assert "logit_scale" not in merged and not any(k.startswith("visual.dec.") for k in merged)
    # 13 embeddings, norms and projections; visual blocks 0-11 of 14; both text blocks (12 tensors a block)
    assert report.num_merged == 13 + 12 * 12 + 2 * 12


def test_merge_retrieval_rule_is_the_official_arithmetic():
    iv = _tiny(5)
    clip = _clip_like(iv, 6)
    iv_sd = _official_names(iv)
    # OpenAI's names: visual.proj and visual.ln_post, which the retrieval code's model calls visual_proj/_ln_post.
    rename = {"visual_proj": "visual.proj", "visual_ln_post.weight": "visual.ln_post.weight",
              "visual_ln_post.bias": "visual.ln_post.bias"}
    clip_sd = {rename.get(k, k): v for k, v in _official_names(clip).items()}
    # clip_evl/model.py build_model: merge every key of the InternVideo dict that the CLIP dict has too.
    c = 0.25
    expected = {k: (clip_sd[k] * c + v * (1.0 - c)) if k in clip_sd else v for k, v in iv_sd.items()}
    _, expected_ours = convert_official_internvideo_mm({"state_dict": {"clip." + k: v for k, v in expected.items()}})
    report = merge_models(iv, clip, c, "shared_names")
    got = iv.state_dict()
    for k, v in expected_ours.items():
        torch.testing.assert_close(got[k].double(), v, atol=1e-6, rtol=0, msg=k)
    assert "logit_scale" in report.merged and "visual.proj.weight" not in report.merged


def test_merge_errors_name_the_problem():
    iv = _tiny(7)
    with pytest.raises(MergeError, match="VideoMAE.*not a CLIP-family"):
        merge_models(internvideo.create_model("videomae_tiny"), _clip_like(iv, 8))
    with pytest.raises(MergeError, match="VideoMAE"):
        merge_models(iv, internvideo.create_model("videomae_tiny"))
    wider = _tiny(9, use_local=False, num_global_layers=0, text_mask_embedding=False, caption_layers=0,
                  text_width=128)
    with pytest.raises(MergeError, match=r"cannot average text\.pos_embed: shapes \(77, 64\) and \(77, 128\)"):
        merge_models(iv, wider)


def test_merge_command_and_eval_with_clip(colours, tmp_path, capsys):
    iv = _tiny(10)
    clip = _clip_like(iv, 11)
    internvideo.save_model(iv, tmp_path / "iv")
    internvideo.save_model(clip, tmp_path / "clip")
    from internvideo.cli import main as cli_main

    assert cli_main(["merge", str(tmp_path / "iv"), "--with", str(tmp_path / "clip"), "--out",
                     str(tmp_path / "merged")]) == 0
    assert "merged 85 of" in capsys.readouterr().out
    merged = internvideo.load_model(tmp_path / "merged")
    expected = merge_checkpoint(tmp_path / "iv", tmp_path / "clip", tmp_path / "again")
    assert expected.num_merged == 85
    for k, v in internvideo.load_model(tmp_path / "again").state_dict().items():
        assert torch.equal(merged.state_dict()[k], v)
    # eval zeroshot --protocol internvideo --clip: the merge happens in memory and the JSON records it.
    help_text, add_arguments, main = EVAL_COMMANDS["zeroshot"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "zs.json"
    main(parser.parse_args(["--model", str(tmp_path / "iv"), "--data", str(colours["list"]), "--protocol",
                            "internvideo", "--clip", str(tmp_path / "clip"), "--out", str(out), "--no-progress"]))
    saved = json.loads(out.read_text())
    assert saved["protocol"] == "internvideo" and saved["merge"]["num_merged"] == 85
    assert saved["merge"]["rule"] == "clip_param_keys" and saved["merge"]["coef"] == 0.5
    direct = evaluate_zeroshot(merged, colours["list"], protocol="internvideo", **QUIET)
    assert saved["top1"] == direct["top1"] and NAMES
