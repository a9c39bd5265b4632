"""VideoMAE against the reference implementations (HF transformers, official key layout)."""
from __future__ import annotations

import pytest
import torch
import transformers as hf

import internvideo
from internvideo.checkpoints import CheckpointError
from internvideo.models.layers import interpolate_pos_embed, sinusoid_table
from internvideo.models.videomae import (
    VideoMAEClassifier, VideoMAEPretrain, patchify, reconstruction_target, tube_mask, unpatchify,
)

TOL = 1e-4

# Small HF configs that exercise the switches the converters must honour.
HF_CONFIGS = [
    dict(use_mean_pooling=True, qv_bias=True, norm_pix_loss=True),
    dict(use_mean_pooling=False, qv_bias=True, norm_pix_loss=False),
    dict(use_mean_pooling=True, qv_bias=False, norm_pix_loss=True, tubelet_size=1, num_frames=2),
]


def hf_config(**kw) -> hf.VideoMAEConfig:
    base = dict(image_size=32, patch_size=8, num_channels=3, num_frames=4, tubelet_size=2, hidden_size=48,
                num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, decoder_hidden_size=32,
                decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=64,
                num_labels=7)
    base.update(kw)
    return hf.VideoMAEConfig(**base)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values everywhere (biases and norms too), so no parameter can be silently ignored."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            for name, p in mod.named_parameters(recurse=False):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
                if isinstance(mod, torch.nn.LayerNorm) and name == "weight":
                    p.add_(1.0)
    return model.eval()


def video(cfg, batch=2, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, cfg.num_frames, cfg.image_size, cfg.image_size, generator=g)


def hf_video(v: torch.Tensor) -> torch.Tensor:
    return v.permute(0, 2, 1, 3, 4)  # HF takes (B, T, C, H, W)


@pytest.mark.parametrize("kw", HF_CONFIGS)
def test_hf_pretraining_parity(tmp_path, kw):
    cfg = hf_config(**kw)
    ref = randomise(hf.VideoMAEForPreTraining(cfg))
    ref.save_pretrained(tmp_path)
    ours = internvideo.load_model(tmp_path).eval()
    assert isinstance(ours, VideoMAEPretrain)
    v = video(cfg)
    t, hw = cfg.num_frames // cfg.tubelet_size, (cfg.image_size // cfg.patch_size) ** 2
    mask = tube_mask(2, (t, int(hw ** 0.5), int(hw ** 0.5)), 0.75, torch.Generator().manual_seed(3))
    with torch.no_grad():
        r = ref(hf_video(v), bool_masked_pos=mask)
        o = ours(v, mask)
    torch.testing.assert_close(o["pred"], r.logits, atol=TOL, rtol=TOL)
    torch.testing.assert_close(o["loss"], r.loss, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("kw", HF_CONFIGS[:2])
def test_hf_classifier_and_encoder_parity(tmp_path, kw):
    cfg = hf_config(**kw)
    ref = randomise(hf.VideoMAEForVideoClassification(cfg), seed=4)
    ref.save_pretrained(tmp_path / "cls")
    ref.videomae.save_pretrained(tmp_path / "enc")
    v = video(cfg)
    with torch.no_grad():
        ours = internvideo.load_model(tmp_path / "cls").eval()
        torch.testing.assert_close(ours(v), ref(hf_video(v)).logits, atol=TOL, rtol=TOL)
        enc = internvideo.load_model(tmp_path / "enc").eval()
        assert enc.config.num_classes == 0
        torch.testing.assert_close(enc.forward_features(v), ref.videomae(hf_video(v)).last_hidden_state,
                                   atol=TOL, rtol=TOL)


# ----------------------------------------------------------------------------- official layout

def hf_to_official(sd: dict, pretrain: bool) -> dict:
    """Independently written rename of HF weights into the official VideoMAE key layout."""
    out = {}

    def block(src, dst):
        i = 0
        while f"{src}{i}.layernorm_before.weight" in sd:
            a = f"{src}{i}.attention.attention."
            out[f"{dst}{i}.attn.qkv.weight"] = torch.cat([sd[a + "query.weight"], sd[a + "key.weight"],
                                                           sd[a + "value.weight"]])
            out[f"{dst}{i}.attn.q_bias"] = sd[a + "query.bias"]
            out[f"{dst}{i}.attn.v_bias"] = sd[a + "value.bias"]
            for h, o in [("attention.output.dense", "attn.proj"), ("intermediate.dense", "mlp.fc1"),
                         ("output.dense", "mlp.fc2"), ("layernorm_before", "norm1"), ("layernorm_after", "norm2")]:
                for p in ("weight", "bias"):
                    out[f"{dst}{i}.{o}.{p}"] = sd[f"{src}{i}.{h}.{p}"]
            i += 1

    enc = "encoder." if pretrain else ""
    out[f"{enc}patch_embed.proj.weight"] = sd["videomae.embeddings.patch_embeddings.projection.weight"]
    out[f"{enc}patch_embed.proj.bias"] = sd["videomae.embeddings.patch_embeddings.projection.bias"]
    block("videomae.encoder.layer.", f"{enc}blocks.")
    if pretrain:
        out["encoder.norm.weight"] = sd["videomae.layernorm.weight"]
        out["encoder.norm.bias"] = sd["videomae.layernorm.bias"]
        block("decoder.decoder_layers.", "decoder.blocks.")
        for p in ("norm.weight", "norm.bias", "head.weight", "head.bias"):
            out[f"decoder.{p}"] = sd[f"decoder.{p}"]
        out["encoder_to_decoder.weight"] = sd["encoder_to_decoder.weight"]
        out["mask_token"] = sd["mask_token"]
    else:
        out["fc_norm.weight"], out["fc_norm.bias"] = sd["fc_norm.weight"], sd["fc_norm.bias"]
        out["head.weight"], out["head.bias"] = sd["classifier.weight"], sd["classifier.bias"]
    return out


def official_hf_config(**kw):
    # The official code uses LayerNorm eps 1e-6 everywhere; HF fixes 1e-5 for fc_norm/decoder.norm,
    # so the loaded models are told head_norm_eps=1e-5 to compare exactly.
    return hf_config(layer_norm_eps=1e-6, hidden_size=64, num_attention_heads=4, intermediate_size=256,
                     decoder_intermediate_size=128, **kw)


def test_official_pretraining_checkpoint(tmp_path):
    cfg = official_hf_config(use_mean_pooling=False, decoder_hidden_size=32, decoder_num_attention_heads=2)
    ref = randomise(hf.VideoMAEForPreTraining(cfg), seed=7)
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": hf_to_official(ref.state_dict(), pretrain=True), "epoch": 799}, path)
    # Official widths fix the heads; 64 → 1 head by the 64-per-head rule, so pass the real counts.
    ours = internvideo.load_model(path, num_heads=4, decoder_num_heads=2, head_norm_eps=1e-5,
                                  num_frames=4, img_size=32).eval()
    v = video(cfg)
    mask = tube_mask(2, ours.config.grid, 0.5, torch.Generator().manual_seed(0))
    with torch.no_grad():
        r, o = ref(hf_video(v), bool_masked_pos=mask), ours(v, mask)
    torch.testing.assert_close(o["pred"], r.logits, atol=TOL, rtol=TOL)
    torch.testing.assert_close(o["loss"], r.loss, atol=TOL, rtol=TOL)

    # The same file starts fine-tuning: encoder only, new head and fc_norm reported.
    clf = internvideo.create_model("videomae_tiny", pretrained=path, embed_dim=64, num_heads=4, depth=2,
                                   num_classes=5)
    torch.testing.assert_close(clf.blocks[1].attn.qkv.weight, ours.encoder.blocks[1].attn.qkv.weight)
    report = internvideo.checkpoints.load_pretrained(clf, path)
    assert set(report.missing) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert not [k for k in report.unexpected if not k.startswith("norm.")]


def test_official_finetuned_deepspeed_checkpoint(tmp_path):
    cfg = official_hf_config(use_mean_pooling=True, num_labels=6)
    ref = randomise(hf.VideoMAEForVideoClassification(cfg), seed=8)
    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": hf_to_official(ref.state_dict(), pretrain=False)}, path)
    ours = internvideo.load_model(path, num_heads=4, head_norm_eps=1e-5, num_frames=4, img_size=32).eval()
    assert isinstance(ours, VideoMAEClassifier) and ours.config.num_classes == 6
    v = video(cfg)
    with torch.no_grad():
        torch.testing.assert_close(ours(v), ref(hf_video(v)).logits, atol=TOL, rtol=TOL)
    # Another head size: refused by default, re-initialised or sliced on request.
    kw = dict(embed_dim=64, num_heads=4, depth=2, head_norm_eps=1e-5)
    with pytest.raises(CheckpointError, match=r"head\.weight.*\(6, 64\).*\(4, 64\)"):
        internvideo.create_model("videomae_tiny", pretrained=path, head="error", num_classes=4, **kw)
    sliced = internvideo.create_model("videomae_tiny", pretrained=path, head="slice", num_classes=4, **kw).eval()
    with torch.no_grad():
        torch.testing.assert_close(sliced(v), ref(hf_video(v)).logits[:, :4], atol=TOL, rtol=TOL)
    fresh = internvideo.create_model("videomae_tiny", pretrained=path, head="reinit", num_classes=4, **kw)
    assert not torch.equal(fresh.head.weight, ours.head.weight[:4])


def test_shape_mismatch_names_key(tmp_path):
    m = internvideo.create_model("videomae_tiny")
    path = tmp_path / "x.pth"
    sd = {k: v for k, v in m.state_dict().items()}
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(3, 3)
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight.*\(3, 3\).*\(256, 64\)"):
        internvideo.create_model("videomae_tiny", pretrained=path)


# ----------------------------------------------------------------------------- properties


def test_tube_mask():
    grid = (8, 14, 14)
    m = tube_mask(3, grid, 0.9, torch.Generator().manual_seed(0))
    assert m.shape == (3, 8 * 196) and m.dtype == torch.bool
    assert (m.sum(1) == int(0.9 * 196) * 8).all()
    per_time = m.view(3, 8, 196)
    assert (per_time == per_time[:, :1]).all()  # same spatial mask in every time slice
    assert not torch.equal(m[0], m[1])
    assert torch.equal(m, tube_mask(3, grid, 0.9, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError):
        tube_mask(1, grid, 1.0)


def test_pos_embed_interpolation():
    # A table that is linear in (t, y, x) stays linear under (bi)linear-style interpolation along each axis.
    t, h, w = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), torch.arange(6.0), indexing="ij")
    table = torch.stack([t, h, w], -1).reshape(1, -1, 3)
    table = torch.cat([torch.full((1, 1, 3), -7.0), table], 1)  # a CLS token
    assert interpolate_pos_embed(table, (4, 6, 6), (4, 6, 6), 1) is table
    out = interpolate_pos_embed(table, (4, 6, 6), (8, 12, 12), 1)
    assert out.shape == (1, 1 + 8 * 12 * 12, 3)
    assert torch.equal(out[0, 0], table[0, 0])
    grid = out[0, 1:].reshape(8, 12, 12, 3)
    assert torch.all(grid[1:, :, :, 0] >= grid[:-1, :, :, 0] - 1e-5)  # monotone in time
    torch.testing.assert_close(grid[..., 0].mean(), table[0, 1:, 0].mean(), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="needs"):
        interpolate_pos_embed(table, (2, 6, 6), (4, 6, 6), 1)


@pytest.mark.parametrize("overrides, grid", [(dict(num_frames=8), (4, 4, 4)), (dict(img_size=48), (2, 6, 6))])
def test_learnable_pos_embed_resized_on_load(tmp_path, overrides, grid):
    src = internvideo.create_model("videomae_tiny", use_learnable_pos_emb=True)
    internvideo.save_model(src, tmp_path / "m")
    dst = internvideo.create_model("videomae_tiny", use_learnable_pos_emb=True, **overrides)
    report = internvideo.checkpoints.load_pretrained(dst, tmp_path / "m")
    assert report.resized == ["pos_embed"] and dst.pos_embed.shape == (1, grid[0] * grid[1] * grid[2], 64)
    c = dst.config
    assert dst(torch.randn(1, 3, c.num_frames, c.img_size, c.img_size)).shape == (1, 10)


def test_sinusoid_table_matches_hf():
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    torch.testing.assert_close(sinusoid_table(50, 24), get_sinusoid_encoding_table(50, 24))


def test_patchify_roundtrip_and_target():
    v = torch.randn(2, 3, 4, 16, 16)
    p = patchify(v, 8, 2)
    assert p.shape == (2, 2 * 2 * 2, 2 * 8 * 8, 3)
    torch.testing.assert_close(unpatchify(p.flatten(2), v.shape, 8, 2), v)
    tgt = reconstruction_target(v, 8, 2, norm_pix=True).view(2, 8, 128, 3)
    torch.testing.assert_close(tgt.mean(2), torch.zeros(2, 8, 3), atol=1e-5, rtol=0)


def test_save_load_roundtrip(tmp_path):
    for name in ("videomae_tiny", "videomae_tiny_pretrain"):
        m = internvideo.create_model(name, drop_path_rate=0.1).eval()
        internvideo.save_model(m, tmp_path / name)
        back = internvideo.load_model(tmp_path / name).eval()
        assert type(back) is type(m) and back.config == m.config
        v = torch.randn(1, 3, 4, 32, 32)
        with torch.no_grad():
            if name.endswith("pretrain"):
                mask = tube_mask(1, m.config.grid, 0.75, torch.Generator().manual_seed(0))
                assert torch.equal(m(v, mask)["pred"], back(v, mask)["pred"])
            else:
                assert torch.equal(m(v), back(v))


def test_pretraining_loss_falls_on_fixed_batch():
    torch.manual_seed(0)
    m = internvideo.create_model("videomae_tiny_pretrain")
    # Smooth moving gradients: hidden patches are predictable from visible ones.
    t, y, x = torch.meshgrid(torch.arange(4.0), torch.arange(32.0), torch.arange(32.0), indexing="ij")
    v = torch.stack([torch.sin((x + 3 * t) / 5 + k) * torch.cos(y / 7) for k in range(3)])[None].repeat(2, 1, 1, 1, 1)
    mask = tube_mask(2, m.config.grid, 0.75, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = m(v, mask)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(0)
    a = internvideo.create_model("videomae_tiny")
    b = internvideo.create_model("videomae_tiny", use_checkpoint=True)
    b.load_state_dict(a.state_dict())
    v = torch.randn(2, 3, 4, 32, 32)
    a(v).sum().backward()
    b(v).sum().backward()
    torch.testing.assert_close(a.blocks[0].attn.qkv.weight.grad, b.blocks[0].attn.qkv.weight.grad)


@pytest.mark.parametrize("shape, match", [
    ((3, 4, 32, 32), "5 dims"),
    ((1, 3, 3, 32, 32), "not divisible by tubelet_size"),
    ((1, 3, 4, 30, 32), "not divisible by patch_size"),
    ((1, 1, 4, 32, 32), "channels"),
    ((1, 3, 8, 32, 32), r"expects \(B, 3, 4, 32, 32\)"),
])
def test_bad_video_shapes(shape, match):
    m = internvideo.create_model("videomae_tiny")
    with pytest.raises(ValueError, match=match):
        m(torch.randn(*shape))


def test_bad_masks():
    m = internvideo.create_model("videomae_tiny_pretrain")
    v = torch.randn(2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match=r"\(2, 32\)"):
        m(v, torch.zeros(2, 31, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        m(v, torch.zeros(2, 32))
    uneven = torch.zeros(2, 32, dtype=torch.bool)
    uneven[0, :3] = True
    with pytest.raises(ValueError, match="same number"):
        m(v, uneven)


def test_unknown_override_is_named():
    with pytest.raises(TypeError, match="embed_dimm"):
        internvideo.create_model("videomae_tiny", embed_dimm=3)
    with pytest.raises(KeyError, match="available"):
        internvideo.create_model("videomae_vit_x16")


def vit_param_count(d: int, depth: int, patch: int = 16, tubelet: int = 2) -> int:
    """Closed-form count of a VideoMAE encoder with mean pooling and no head."""
    embed = 3 * tubelet * patch * patch * d + d
    block = 12 * d * d + 12 * d  # qkv 3d², proj d², MLP 8d²; biases (q, v, proj, fc1, fc2) and two norms: 12d
    return embed + depth * block + 2 * d  # + fc_norm


@pytest.mark.parametrize("name, d, depth", [
    ("videomae_vit_s16", 384, 12), ("videomae_vit_b16", 768, 12), ("videomae_vit_l16", 1024, 24),
    ("videomae_vit_h16", 1280, 32),
])
def test_parameter_counts_on_meta_device(name, d, depth):
    with torch.device("meta"):
        m = internvideo.create_model(name, num_classes=0)
    n = sum(p.numel() for p in m.parameters())
    assert n == vit_param_count(d, depth)
    if name == "videomae_vit_b16":
        assert round(n / 1e6, 1) == 86.2  # the figure quoted for VideoMAE ViT-B/16


def test_pretrain_param_count_h16():
    with torch.device("meta"):
        m = internvideo.create_model("videomae_vit_h16_pretrain")
    d, dd = 1280, 640
    decoder = 4 * (12 * dd * dd + 12 * dd) + 2 * dd + dd * 1536 + 1536
    expected = vit_param_count(d, 32) + d * dd + dd + decoder  # encoder_to_decoder, mask_token
    assert sum(p.numel() for p in m.parameters()) == expected


def test_torchscript_refused_unless_allowed(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match="allow_torchscript=True"):
        internvideo.load_model(path)


def test_mask_ratio_hiding_nothing_is_a_clear_error():
    from internvideo.models.videomae import tube_mask

    with pytest.raises(ValueError, match="hides no token"):  # before: a reshape error in the loss
        tube_mask(1, (2, 4, 4), 0.0)
