"""CLIP-family converters: HF transformers and OpenAI layouts match HF's CLIPModel; the official layout round-trips.

HF parity uses random weights (every parameter perturbed, so LayerNorms and
biases are exercised); the OpenAI layout is produced from the HF weights by the
renaming written out in this file, independently of the converter. For the
official InternVideo-MM layout, a reference forward written directly on the
official key names (following the official ``clip_vit_only_global`` /
UniFormerV2 code) checks the semantics of the local and global modules.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from internvideo.checkpoints import CheckpointError
from internvideo.checkpoints.clip import (
    average_weights, convert_hf_clip, convert_official_internvideo_mm, convert_openai_clip,
    is_hf_clip_dir, is_official_internvideo_mm, is_openai_clip, read_openai_clip, to_official_internvideo_mm,
)
from internvideo.models.video_clip import InternVideoMM, InternVideoMMConfig
from mm_helpers import one_thread  # noqa: F401  (autouse fixture)

transformers = pytest.importorskip("transformers")
TOL = 1e-4
WIDTH = 128  # heads are width // 64 in OpenAI's layout, so 2 heads of 64 as OpenAI's builder infers
VOCAB, EOT = 1000, 999


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def hf_model():
    tower = dict(hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=2, num_attention_heads=2)
    cfg = transformers.CLIPConfig(
        text_config=dict(**tower, vocab_size=VOCAB, max_position_embeddings=16, bos_token_id=998, eos_token_id=EOT,
                         pad_token_id=1),
        vision_config=dict(**tower, image_size=32, patch_size=8),
        projection_dim=48,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    _randomise(model, 1)
    return model


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_clip")
    hf_model.save_pretrained(d)
    return d


def _features(out) -> torch.Tensor:
    # transformers 5 returns an output object whose pooler_output holds the projected features.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _ids(batch: int = 3, length: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, EOT - 1, (batch, length), generator=g)
    for row, end in enumerate((4, 9, length - 1)[:batch]):
        ids[row, end] = EOT
        ids[row, end + 1:] = 0
    return ids


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _load(config: InternVideoMMConfig, sd: dict) -> InternVideoMM:
    model = InternVideoMM(config).eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith(InternVideoMM.NEW_PARAMETER_PREFIXES) for k in missing), missing
    return model


def _check_against_hf(model: InternVideoMM, hf_model) -> None:
    ids, images = _ids(), _images()
    with torch.no_grad():
        ref_text = _features(hf_model.get_text_features(input_ids=ids))
        ref_image = _features(hf_model.get_image_features(pixel_values=images))
        torch.testing.assert_close(model.encode_text(ids), ref_text, atol=TOL, rtol=TOL)
        one_frame = images.unsqueeze(2)
        torch.testing.assert_close(model.encode_video(one_frame), ref_image, atol=TOL, rtol=TOL)
        torch.testing.assert_close(model.encode_image(images), ref_image, atol=TOL, rtol=TOL)
        # Identical frames: the (zero-initialised) local temporal modules must leave CLIP's features alone.
        same = one_frame.expand(-1, -1, 4, -1, -1).contiguous()
        torch.testing.assert_close(model.encode_video(same), ref_image, atol=TOL, rtol=TOL)
        assert torch.allclose(model.logit_scale, hf_model.logit_scale)


def test_hf_directory_matches_hf_clip(hf_model, hf_dir):
    assert is_hf_clip_dir(hf_dir)
    config, sd = convert_hf_clip(hf_dir)
    assert (config.vision_width, config.vision_layers, config.vision_heads, config.img_size, config.patch_size,
            config.embed_dim, config.text_width, config.text_layers, config.context_length, config.vocab_size) == \
        (WIDTH, 2, 2, 32, 8, 48, WIDTH, 2, 16, VOCAB)
    model = _load(dataclasses.replace(config, use_local=True, num_global_layers=0), sd)
    assert len(model.visual.lmhra1) == 2 and len(model.visual.lmhra2) == 2
    _check_against_hf(model, hf_model)


def _openai_layout(hf_sd: dict) -> dict:
    """HF CLIPModel weights under OpenAI's names (what ``clip.load(...).state_dict()`` holds)."""
    out = {
        "visual.conv1.weight": hf_sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": hf_sd["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": hf_sd["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": hf_sd["visual_projection.weight"].t(),
        "token_embedding.weight": hf_sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf_sd["text_model.embeddings.position_embedding.weight"],
        "text_projection": hf_sd["text_projection.weight"].t(),
        "logit_scale": hf_sd["logit_scale"],
    }
    for hf, oa in (("vision_model.pre_layrnorm", "visual.ln_pre"), ("vision_model.post_layernorm", "visual.ln_post"),
                   ("text_model.final_layer_norm", "ln_final")):
        for p in ("weight", "bias"):
            out[f"{oa}.{p}"] = hf_sd[f"{hf}.{p}"]
    for hf_tower, oa_tower in (("vision_model", "visual.transformer"), ("text_model", "transformer")):
        for i in range(2):
            h, o = f"{hf_tower}.encoder.layers.{i}.", f"{oa_tower}.resblocks.{i}."
            for p in ("weight", "bias"):
                out[f"{o}attn.in_proj_{p}"] = torch.cat([hf_sd[f"{h}self_attn.{x}_proj.{p}"] for x in "qkv"])
                for hf_name, oa_name in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                                         ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                    out[f"{o}{oa_name}.{p}"] = hf_sd[f"{h}{hf_name}.{p}"]
    # TorchScript archives carry these scalars too.
    out.update(input_resolution=torch.tensor(32), context_length=torch.tensor(16), vocab_size=torch.tensor(VOCAB))
    return out


def test_openai_layout_matches_hf_clip(hf_model, hf_dir):
    openai_sd = _openai_layout(hf_model.state_dict())
    assert is_openai_clip(openai_sd) and not is_official_internvideo_mm(openai_sd)
    config, sd = convert_openai_clip(openai_sd)
    assert sd["visual.patch_embed.proj.weight"].shape == (WIDTH, 3, 1, 8, 8)  # 2-D kernel inflated to 3-D
    assert not (config.use_local or config.num_global_layers or config.text_mask_embedding)
    _check_against_hf(_load(dataclasses.replace(config, use_local=True), sd), hf_model)
    # Same weights whichever layout they came from.
    _, hf_sd = convert_hf_clip(hf_dir)
    assert sd.keys() == hf_sd.keys()
    for k in sd:
        torch.testing.assert_close(sd[k], hf_sd[k], atol=0, rtol=0)


def test_openai_clip_can_start_a_full_internvideo_model(hf_model):
    config, sd = convert_openai_clip(_openai_layout(hf_model.state_dict()))
    model = _load(dataclasses.replace(config, num_global_layers=1, text_mask_embedding=True), sd)
    missing = set(model.state_dict()) - set(sd)
    assert missing and all(k.startswith(InternVideoMM.NEW_PARAMETER_PREFIXES) for k in missing)


# ----------------------------------------------------------------------------- official InternVideo-MM


OFFICIAL_CONFIG = InternVideoMMConfig(
    img_size=32, patch_size=8, vision_width=WIDTH, vision_layers=3, vision_heads=2, num_global_layers=2,
    local_blocks=(0, 2), embed_dim=48, context_length=16, vocab_size=VOCAB, text_width=WIDTH, text_layers=1,
    text_heads=2,
)


def _official_model() -> InternVideoMM:
    torch.manual_seed(4)
    model = InternVideoMM(OFFICIAL_CONFIG).eval()
    _randomise(model, 5, scale=0.1)  # non-zero local/global outputs, so their wiring matters
    g = torch.Generator().manual_seed(6)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm3d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    return model


def _expected_official_keys(c: InternVideoMMConfig) -> set[str]:
    block = ["attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
             "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias"]
    keys = {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
            "visual.ln_pre.bias", "visual.transformer.temporal_cls_token", "visual.transformer.balance",
            "visual_ln_post.weight", "visual_ln_post.bias", "visual_proj", "token_embedding.weight",
            "positional_embedding", "ln_final.weight", "ln_final.bias", "text_projection", "logit_scale",
            "text_mask_embedding"}
    keys |= {f"visual.transformer.resblocks.{i}.{k}" for i in range(c.vision_layers) for k in block}
    keys |= {f"transformer.resblocks.{i}.{k}" for i in range(c.text_layers) for k in block}
    keys |= {f"visual.transformer.dec.{j}.{k}" for j in range(c.num_global_layers) for k in block + ["ln_3.weight", "ln_3.bias"]}
    keys |= {f"visual.transformer.dpe.{j}.{p}" for j in range(c.num_global_layers) for p in ("weight", "bias")}
    local = [f"pos_embed.0.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    local += [f"pos_embed.{n}.{p}" for n in (1, 2, 3) for p in ("weight", "bias")]
    keys |= {f"visual.transformer.resblocks.{i}.lmhra{n}.{k}" for i in c.local_blocks for n in (1, 2) for k in local}
    return {"clip." + k for k in keys}


def _mha(q_in, kv_in, w, b, out_w, out_b, heads):
    # nn.MultiheadAttention's arithmetic on sequence-first tensors (L, N, C).
    c = q_in.shape[-1]
    q, k, v = q_in @ w[:c].t() + b[:c], kv_in @ w[c:2 * c].t() + b[c:2 * c], kv_in @ w[2 * c:].t() + b[2 * c:]
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, c // heads).permute(1, 2, 0, 3)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    att = (q @ k.transpose(-2, -1) / math.sqrt(c // heads)).softmax(-1) @ v
    return att.permute(2, 0, 1, 3).flatten(2) @ out_w.t() + out_b


def _official_video_reference(sd: dict, video: torch.Tensor, heads: int, n_global: int) -> torch.Tensor:
    """The official video forward (per-frame CLIP ViT, UniFormerV2 local MHRA, global extractor), on official keys."""
    p = lambda k: sd["clip." + k]  # noqa: E731
    ln = lambda x, k: F.layer_norm(x, x.shape[-1:], p(k + ".weight"), p(k + ".bias"), 1e-5)  # noqa: E731

    def mlp(x, k):
        h = x @ p(k + ".c_fc.weight").t() + p(k + ".c_fc.bias")
        return (h * torch.sigmoid(1.702 * h)) @ p(k + ".c_proj.weight").t() + p(k + ".c_proj.bias")

    def local(x, k, n, t, hw):
        # x: (1 + hw*hw, N*T, C); temporal conv over the patch tokens only.
        c = x.shape[-1]
        y = x[1:].reshape(hw, hw, n, t, c).permute(2, 4, 3, 0, 1)
        z = F.batch_norm(y, p(k + "0.running_mean"), p(k + "0.running_var"), p(k + "0.weight"), p(k + "0.bias"),
                         False, 0.0, 1e-5)
        z = F.conv3d(z, p(k + "1.weight"), p(k + "1.bias"))
        z = F.conv3d(z, p(k + "2.weight"), p(k + "2.bias"), padding=(1, 0, 0), groups=z.shape[1])
        y = y + F.conv3d(z, p(k + "3.weight"), p(k + "3.bias"))
        return torch.cat([x[:1], y.reshape(n, c, t, hw * hw).permute(3, 0, 2, 1).reshape(hw * hw, n * t, c)])

    x = F.conv3d(video, p("visual.conv1.weight"), stride=(1,) + tuple(p("visual.conv1.weight").shape[-2:]))
    n, c, t, hw, _ = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(n * t, hw * hw, c)
    x = torch.cat([p("visual.class_embedding").expand(n * t, 1, c), x], 1) + p("visual.positional_embedding")
    x = ln(x, "visual.ln_pre").permute(1, 0, 2)
    length = x.shape[0]
    query = p("visual.transformer.temporal_cls_token").repeat(1, n, 1)
    layers = len({k.split(".")[4] for k in sd if k.startswith("clip.visual.transformer.resblocks.")})
    for i in range(layers):
        blk = f"visual.transformer.resblocks.{i}."
        if "clip." + blk + "lmhra1.pos_embed.0.weight" in sd:
            x = local(x, blk + "lmhra1.pos_embed.", n, t, hw)
        x = x + _mha(ln(x, blk + "ln_1"), ln(x, blk + "ln_1"), p(blk + "attn.in_proj_weight"),
                     p(blk + "attn.in_proj_bias"), p(blk + "attn.out_proj.weight"), p(blk + "attn.out_proj.bias"), heads)
        if "clip." + blk + "lmhra2.pos_embed.0.weight" in sd:
            x = local(x, blk + "lmhra2.pos_embed.", n, t, hw)
        x = x + mlp(ln(x, blk + "ln_2"), blk + "mlp")
        j = i - (layers - n_global)
        if j >= 0:
            tmp = x.reshape(length, n, t, c)
            patches = tmp[1:].permute(1, 3, 2, 0).reshape(n, c, t, hw, hw)
            pos = F.conv3d(patches, p(f"visual.transformer.dpe.{j}.weight"), p(f"visual.transformer.dpe.{j}.bias"),
                           padding=1, groups=c).reshape(n, c, t, length - 1).permute(3, 0, 2, 1)
            frames = torch.cat([tmp[:1], tmp[1:] + pos]).permute(2, 0, 1, 3).flatten(0, 1)  # (T*L, N, C)
            dec = f"visual.transformer.dec.{j}."
            query = query + _mha(ln(query, dec + "ln_1"), ln(frames, dec + "ln_3"), p(dec + "attn.in_proj_weight"),
                                 p(dec + "attn.in_proj_bias"), p(dec + "attn.out_proj.weight"),
                                 p(dec + "attn.out_proj.bias"), heads)
            query = query + mlp(ln(query, dec + "ln_2"), dec + "mlp")
    weight = torch.sigmoid(p("visual.transformer.balance"))
    mixed = (1 - weight) * query[0] + weight * x.reshape(length, n, t, c)[0].mean(1)
    return ln(mixed, "visual_ln_post") @ p("visual_proj")


def test_official_layout_round_trip():
    model = _official_model()
    ckpt = to_official_internvideo_mm(model.state_dict())
    sd = ckpt["state_dict"]
    assert set(sd) == _expected_official_keys(OFFICIAL_CONFIG)
    # Official shapes: 3-D patch conv, (1 + N, C) position table, x @ W projections, official module shapes.
    assert sd["clip.visual.conv1.weight"].shape == (WIDTH, 3, 1, 8, 8)
    assert sd["clip.visual.positional_embedding"].shape == (17, WIDTH)
    assert sd["clip.visual_proj"].shape == (WIDTH, 48) and sd["clip.text_projection"].shape == (WIDTH, 48)
    assert sd["clip.visual.transformer.temporal_cls_token"].shape == (1, 1, WIDTH)
    assert sd["clip.visual.transformer.dpe.0.weight"].shape == (WIDTH, 1, 3, 3, 3)
    reduced = int(WIDTH // 1.5)
    assert sd["clip.visual.transformer.resblocks.2.lmhra2.pos_embed.2.weight"].shape == (reduced, 1, 3, 1, 1)
    assert sd["clip.text_mask_embedding"].shape == (1, 1, WIDTH)

    # Checkpoints also hold modules outside "clip." (the official caption decoder): they are left out.
    ckpt["state_dict"]["caption_decoder.visual_queries"] = torch.zeros(4, WIDTH)
    assert is_official_internvideo_mm(ckpt) and not is_openai_clip(sd)
    config, ours = convert_official_internvideo_mm(ckpt)
    assert config == dataclasses.replace(OFFICIAL_CONFIG, local_width=reduced)
    restored = _load(config, ours)
    assert ours.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(ours[k], v), k

    video = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    ids = _ids(2)
    with torch.no_grad():
        emb = model.encode_video(video)
        torch.testing.assert_close(restored.encode_video(video), emb, atol=0, rtol=0)
        torch.testing.assert_close(restored.encode_text(ids), model.encode_text(ids), atol=0, rtol=0)
        ref = _official_video_reference(sd, video, heads=2, n_global=2)
    torch.testing.assert_close(emb, ref, atol=TOL, rtol=TOL)


def test_official_checkpoint_without_local_modules():
    # The released InternVideo-MM-L/14 uses the "only global" backbone: no lmhra keys at all.
    cfg = dataclasses.replace(OFFICIAL_CONFIG, use_local=False, local_blocks=None)
    torch.manual_seed(8)
    model = InternVideoMM(cfg).eval()
    config, ours = convert_official_internvideo_mm(to_official_internvideo_mm(model.state_dict()))
    assert not config.use_local and config.num_global_layers == 2
    _load(config, ours)


# ----------------------------------------------------------------------------- files, averaging


def test_torchscript_archives_need_explicit_permission(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(3, 2))
    path = tmp_path / "ViT-B-16.pt"
    scripted.save(str(path))
    with pytest.raises(CheckpointError, match="allow_torchscript=True"):
        read_openai_clip(path)
    sd = read_openai_clip(path, allow_torchscript=True)
    assert set(sd) == {"weight", "bias"}
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.ones(2)}, plain)
    assert torch.equal(read_openai_clip(plain)["weight"], torch.ones(2))


def test_average_weights():
    a = {"w": torch.ones(2), "only_a": torch.zeros(1), "steps": torch.tensor(3)}
    b = {"w": torch.full((2,), 3.0), "only_b": torch.ones(1), "steps": torch.tensor(9)}
    out = average_weights(a, b, alpha=0.25)
    torch.testing.assert_close(out["w"], torch.full((2,), 2.5))
    assert set(out) == set(a) and torch.equal(out["only_a"], a["only_a"]) and out["steps"] == 3
    with pytest.raises(CheckpointError, match=r"w: shapes \(2,\) and \(3,\)"):
        average_weights(a, {"w": torch.ones(3)})


# ----------------------------------------------------------------------------- through the public loaders


@pytest.fixture
def clip_formats():
    """The CLIP layouts are in the checkpoint registry."""
    from internvideo.checkpoints import FORMATS, clip

    assert {f.name for f in clip.FORMATS} <= {f.name for f in FORMATS}


def test_public_loaders_read_every_clip_layout(clip_formats, hf_model, hf_dir, tmp_path):
    import internvideo

    # HF directory: architecture from config.json; the video modules switched on by override start as identity.
    model = internvideo.load_model(hf_dir, use_local=True).eval()
    _check_against_hf(model, hf_model)

    # OpenAI state dict file, run at another resolution: the position table is interpolated when loading.
    path = tmp_path / "openai.pt"
    torch.save(_openai_layout(hf_model.state_dict()), path)
    model = internvideo.load_model(path, img_size=48).eval()
    assert model.visual.pos_embed.shape == (1, 1 + 36, WIDTH)
    assert model.encode_video(torch.randn(1, 3, 2, 48, 48)).shape == (1, 48)

    # Official InternVideo-MM checkpoint file, and our own directory format.
    source = _official_model()
    path = tmp_path / "InternVideo-MM-tiny.ckpt"
    torch.save(to_official_internvideo_mm(source.state_dict()), path)
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = source.encode_video(video)
        torch.testing.assert_close(internvideo.load_model(path).eval().encode_video(video), expected)
        internvideo.save_model(source, tmp_path / "ours")
        torch.testing.assert_close(internvideo.load_model(tmp_path / "ours").eval().encode_video(video), expected)
