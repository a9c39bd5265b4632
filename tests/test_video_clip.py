"""The multimodal model: contracts, what the local/global modules do, captioning, and that it learns."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from internvideo.losses import ClipLoss, caption_loss
from internvideo.models.caption import IGNORE_INDEX, caption_targets
from internvideo.models.video_clip import MODEL_CLASSES, NAMED_CONFIGS, InternVideoMM, InternVideoMMConfig
from internvideo.tokenizer import get_tokenizer
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)

TINY = NAMED_CONFIGS["internvideo_mm_tiny"][1]


def _model(seed: int = 0, **overrides) -> InternVideoMM:
    torch.manual_seed(seed)
    return InternVideoMM(dataclasses.replace(TINY, **overrides)).eval()


def _video(b: int = 2, t: int = 4, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


def _perturb_local(model: InternVideoMM, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.visual.named_parameters():
            if name.startswith(("lmhra1.", "lmhra2.")):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def test_named_configs_and_contract():
    assert {"internvideo_mm_tiny", "internvideo_mm_b16", "internvideo_mm_l14"} <= set(NAMED_CONFIGS)
    assert MODEL_CLASSES["InternVideoMM"] is InternVideoMM
    l14 = NAMED_CONFIGS["internvideo_mm_l14"][1]
    assert (l14.vision_layers, l14.vision_width, l14.vision_heads, l14.patch_size, l14.num_frames, l14.img_size,
            l14.text_layers, l14.text_width, l14.embed_dim, l14.num_global_layers) == \
        (24, 1024, 16, 14, 8, 224, 12, 768, 768, 4)
    # Without the video modules the named models are exactly OpenAI's CLIP ViT-B/16 and ViT-L/14.
    for name, clip_params in (("internvideo_mm_b16", 149_620_737), ("internvideo_mm_l14", 427_616_513)):
        cfg = dataclasses.replace(NAMED_CONFIGS[name][1], use_local=False, num_global_layers=0,
                                  text_mask_embedding=False, caption_layers=0)
        with torch.device("meta"):
            assert sum(p.numel() for p in InternVideoMM(cfg).parameters()) == clip_params

    model = _model()
    assert model.config is not None and model.logit_scale.item() == pytest.approx(2.6592, abs=1e-4)
    video, ids = _video(), get_tokenizer("clip")(["a dog runs", "two cats sleep"])
    out = model(video, ids)
    assert out["video_emb"].shape == out["text_emb"].shape == (2, TINY.embed_dim)
    assert out["caption_logits"].shape == (2, 76, TINY.vocab_size) and out["caption_targets"].shape == (2, 76)
    torch.testing.assert_close(out["video_emb"], model.encode_video(video))
    torch.testing.assert_close(out["text_emb"], model.encode_text(ids))
    emb, tokens = model.encode_video(video, return_tokens=True)
    assert tokens.shape == (2, 4 * (1 + 16), TINY.vision_width)
    torch.testing.assert_close(model.forward_features(video), tokens)
    feats = model.visual.forward_features(video)
    assert feats.tokens.shape == (2, 4, 17, 64) and feats.query.shape == (2, 64)
    # Images are 1-frame videos; other resolutions and frame counts run (position table interpolated).
    torch.testing.assert_close(model.encode_image(video[:, :, 0]), model.encode_video(video[:, :, :1]))
    assert model.encode_video(_video(1, t=3, size=48)).shape == (1, TINY.embed_dim)
    with pytest.raises(ValueError, match="divisible"):
        model.encode_video(_video(1, size=30))


def test_local_modules_start_as_identity_and_mix_time():
    video = _video()
    plain = _model(use_local=False)
    local = _model(use_local=True)
    local.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(local.encode_video(video), plain.encode_video(video), atol=1e-6, rtol=1e-6)
        # Once trained (non-zero), they let one frame's tokens depend on its neighbours; plain CLIP does not.
        _perturb_local(local)
        changed = video.clone()
        changed[:, :, 0] += 1.0
        for model, mixes in ((plain, False), (local, True)):
            before = model.visual.forward_features(video).tokens[:, 1]
            after = model.visual.forward_features(changed).tokens[:, 1]
            assert (not torch.allclose(before, after, atol=1e-5)) == mixes


def test_local_blocks_are_configurable():
    model = _model(local_blocks=(1, 3), double_local=False)
    assert sorted(model.visual.lmhra1) == ["1", "3"] and len(model.visual.lmhra2) == 0
    with pytest.raises(ValueError, match="out of range"):
        InternVideoMMConfig(vision_layers=4, local_blocks=(4,))


def test_global_blocks():
    video = _video()
    model = _model()
    with torch.no_grad():
        # Fresh global blocks have zero outputs: the query stays 0 and the embedding is ln_post of half the CLS mean.
        feats = model.visual.forward_features(video)
        assert feats.query.abs().max() == 0
        frame_cls = feats.tokens[:, :, 0].mean(1)
        expected = model.visual.proj(model.visual.ln_post(0.5 * frame_cls))
        torch.testing.assert_close(model.encode_video(video), expected)
        # Without global blocks: CLIP's image embedding averaged over frames.
        none = _model(num_global_layers=0)
        per_frame = torch.stack([none.encode_image(video[:, :, i]) for i in range(4)], 1).mean(1)
        torch.testing.assert_close(none.encode_video(video), per_frame, atol=1e-5, rtol=1e-5)
    # The query reads every frame: its gradient reaches all of them.
    model = _model()
    with torch.no_grad():
        for blk in model.visual.dec:
            blk.cross_attn.proj.weight.normal_(0, 0.1)
    video.requires_grad_(True)
    model.visual.forward_features(video).query.sum().backward()
    assert all(video.grad[:, :, t].abs().sum() > 0 for t in range(4))


def test_gradient_checkpointing_matches():
    video, ids = _video(), get_tokenizer("clip")(["a dog", "a cat"], context_length=8)
    grads = []
    for enable in (False, True):
        model = _model(seed=3)
        _perturb_local(model)
        model.set_grad_checkpointing(enable)
        out = model(video, ids)
        (out["video_emb"].sum() + out["text_emb"].sum() + out["caption_logits"].mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_mixed_image_and_video_batch():
    model = _model()
    clips, images = _video(2), _video(3, t=1, seed=5)
    ids = get_tokenizer("clip")(["a", "b", "c", "d", "e"], context_length=8)
    out = model([clips, images], ids)
    torch.testing.assert_close(out["video_emb"], torch.cat([model.encode_video(clips), model.encode_video(images)]))
    assert out["caption_logits"].shape[0] == 5
    with pytest.raises(ValueError, match="5 videos but 2 captions"):
        model([clips, images], ids[:2])


def test_text_mask_embedding():
    model = _model()
    ids = get_tokenizer("clip")(["a dog runs fast"])
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[0, 2] = True
    assert not torch.allclose(model.encode_text(ids, masked=masked), model.encode_text(ids))
    with pytest.raises(ValueError, match="mask embedding"):
        _model(text_mask_embedding=False).encode_text(ids, masked=masked)


def test_caption_targets_ignore_padding_by_position():
    ids = torch.tensor([[49406, 0, 5, 49407, 0, 0]])  # id 0 is also "!", a real token before the end
    assert caption_targets(ids).tolist() == [[0, 5, 49407, IGNORE_INDEX, IGNORE_INDEX]]


def _synthetic_batch(frames: int = 4, size: int = 32):
    """Six clips, a coloured square crossing the top or the bottom of the frame, each with its caption."""
    colours = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}
    videos, captions = [], []
    for name, rgb in colours.items():
        for where, y in (("top", 2), ("bottom", 20)):
            clip = torch.full((3, frames, size, size), -0.5)
            for t in range(frames):
                x = (size - 10) * t // (frames - 1)
                clip[:, t, y:y + 10, x:x + 10] = torch.tensor(rgb)[:, None, None]
            videos.append(clip)
            captions.append(f"a {name} square moving along the {where}")
    return torch.stack(videos), captions


def test_training_steps_improve_retrieval_and_captioning():
    video, captions = _synthetic_batch()
    tok = get_tokenizer("clip")
    ids = tok(captions, context_length=12)
    # A compact vocabulary (the ids in use, in order, so start/end stay the two largest) keeps the step cheap.
    used = torch.unique(ids)
    compact = torch.searchsorted(used, ids)
    torch.manual_seed(0)
    model = InternVideoMM(dataclasses.replace(TINY, vocab_size=len(used))).train()
    clip_loss = ClipLoss()
    optim = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.0)

    def evaluate():
        model.eval()
        with torch.no_grad():
            out = model(video, compact)
            sim = F.normalize(out["video_emb"], dim=-1) @ F.normalize(out["text_emb"], dim=-1).t()
            target = torch.arange(len(captions))
            acc = ((sim.argmax(1) == target).float().mean() + (sim.argmax(0) == target).float().mean()) / 2
            cap = caption_loss(out["caption_logits"], out["caption_targets"], pad_id=None)
        model.train()
        return acc.item(), cap.item()

    acc0, cap0 = evaluate()
    for _ in range(60):
        out = model(video, compact)
        loss = clip_loss(out["video_emb"], out["text_emb"], out["logit_scale"]) + \
            caption_loss(out["caption_logits"], out["caption_targets"], pad_id=None)
        optim.zero_grad()
        loss.backward()
        optim.step()
    acc1, cap1 = evaluate()
    assert acc1 > acc0 and acc1 > 0.8, (acc0, acc1)  # at most one of six missed
    assert cap1 < 0.5 * cap0, (cap0, cap1)
    generated = model.eval().generate_caption(video[:2], max_len=10)
    assert generated.shape[1] <= 11 and (generated[:, 0] == len(used) - 2).all()
    # Greedy decoding writes one of the memorised captions (which one is still being learnt at this point).
    assert all(tok.decode(used[g]) in captions for g in generated)


def test_generate_caption_needs_a_decoder():
    with pytest.raises(RuntimeError, match="caption decoder"):
        _model(caption_layers=0).generate_caption(_video(1))
