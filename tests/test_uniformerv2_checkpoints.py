"""UniFormerV2 classifier checkpoints load with the logits of UniFormerV2's arithmetic.

UniFormerV2's model file cannot be imported here (it needs its repository, timm and slowfast; torchvision does not
import beside our torch), so the reference below is an independent re-implementation of the forward pass of
``slowfast/models/uniformerv2_model.py`` (OpenGVLab/UniFormerV2), written from that file's arithmetic and reading the
checkpoint in its own key layout and token order (sequence-first ``(L, N*T, C)``, ``nn.MultiheadAttention``
semantics, the Extractor's explicit q/k/v split). It shares no code with ``internvideo``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import internvideo
from internvideo.checkpoints.uniformerv2 import infer_uniformerv2_config, is_uniformerv2
from internvideo.errors import UserError
from internvideo.models.video_clip import InternVideoMMClassifier

WIDTH, LAYERS, GLOBAL, PATCH, IMG, CLASSES, FRAMES = 128, 4, 2, 8, 32, 7, 4


def random_state_dict(lmhra: bool, frozen: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for every tensor of UniFormerV2's VisionTransformer (shapes by its constructor)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    c, red = WIDTH, int(WIDTH // 1.5)
    sd = {"conv1.weight": r(c, 3, 1, PATCH, PATCH), "class_embedding": r(c),
          "positional_embedding": r((IMG // PATCH) ** 2 + 1, c), "ln_pre.weight": 1 + r(c), "ln_pre.bias": r(c)}
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "attn.in_proj_weight": r(3 * c, c), p + "attn.in_proj_bias": r(3 * c),
                   p + "attn.out_proj.weight": r(c, c), p + "attn.out_proj.bias": r(c),
                   p + "ln_1.weight": 1 + r(c), p + "ln_1.bias": r(c), p + "ln_2.weight": 1 + r(c), p + "ln_2.bias": r(c),
                   p + "mlp.c_fc.weight": r(4 * c, c), p + "mlp.c_fc.bias": r(4 * c),
                   p + "mlp.c_proj.weight": r(c, 4 * c), p + "mlp.c_proj.bias": r(c)})
        if lmhra:
            for n in (1, 2):
                q = f"{p}lmhra{n}.pos_embed."
                sd.update({q + "0.weight": 1 + r(c), q + "0.bias": r(c), q + "0.running_mean": r(c),
                           q + "0.running_var": 1 + r(c).abs(), q + "0.num_batches_tracked": torch.tensor(5),
                           q + "1.weight": r(red, c, 1, 1, 1), q + "1.bias": r(red),
                           q + "2.weight": r(red, 1, 3, 1, 1), q + "2.bias": r(red),
                           q + "3.weight": r(c, red, 1, 1, 1), q + "3.bias": r(c)})
    sd["transformer.temporal_cls_token"] = r(1, 1, c)
    for j in range(GLOBAL):
        sd[f"transformer.dpe.{j}.weight"], sd[f"transformer.dpe.{j}.bias"] = r(c, 1, 3, 3, 3), r(c)
        p = f"transformer.dec.{j}."
        sd.update({p + "attn.in_proj_weight": r(3 * c, c), p + "attn.in_proj_bias": r(3 * c),
                   p + "attn.out_proj.weight": r(c, c), p + "attn.out_proj.bias": r(c),
                   p + "ln_1.weight": 1 + r(c), p + "ln_1.bias": r(c), p + "ln_2.weight": 1 + r(c), p + "ln_2.bias": r(c),
                   p + "ln_3.weight": 1 + r(c), p + "ln_3.bias": r(c),
                   p + "mlp.c_fc.weight": r(4 * c, c), p + "mlp.c_fc.bias": r(4 * c),
                   p + "mlp.c_proj.weight": r(c, 4 * c), p + "mlp.c_proj.bias": r(c)})
    sd.update({"transformer.proj.0.weight": 1 + r(c), "transformer.proj.0.bias": r(c),
               "transformer.proj.2.weight": r(CLASSES, c), "transformer.proj.2.bias": r(CLASSES)})
    if not frozen:
        sd["transformer.balance"] = r(c, scale=1.0)
    return sd


# ----------------------------------------------------------------------------- the reference arithmetic


def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], 1e-5)


def _mlp(x, sd, p):
    h = F.linear(x, sd[p + ".c_fc.weight"], sd[p + ".c_fc.bias"])
    return F.linear(h * torch.sigmoid(1.702 * h), sd[p + ".c_proj.weight"], sd[p + ".c_proj.bias"])  # QuickGELU


def _local(x, sd, p, t):
    """Local MHRA on the patch tokens of x (L, N*T, C): BN3d (eval) -> 1x1x1 -> (3,1,1) depthwise -> 1x1x1."""
    tmp = x[1:]
    L, nt, c = tmp.shape
    n, h = nt // t, int(L ** 0.5)
    tmp = tmp.view(h, h, n, t, c).permute(2, 4, 3, 0, 1)
    y = F.batch_norm(tmp, sd[p + ".0.running_mean"], sd[p + ".0.running_var"], sd[p + ".0.weight"],
                     sd[p + ".0.bias"], False, 0.0, 1e-5)
    y = F.conv3d(y, sd[p + ".1.weight"], sd[p + ".1.bias"])
    y = F.conv3d(y, sd[p + ".2.weight"], sd[p + ".2.bias"], padding=(1, 0, 0), groups=y.shape[1])
    y = F.conv3d(y, sd[p + ".3.weight"], sd[p + ".3.bias"])
    tmp = (tmp + y).reshape(n, c, t, L).permute(3, 0, 2, 1).reshape(L, nt, c)
    return torch.cat([x[:1], tmp], dim=0)


def _extractor(x, y, sd, p, heads):
    q_in, kv_in = _ln(x, sd, p + ".ln_1"), _ln(y, sd, p + ".ln_3")
    w, b = sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"]
    d = w.shape[1]
    q = q_in @ w[:d].T + b[:d]
    k = kv_in @ w[d:2 * d].T + b[d:2 * d]
    v = kv_in @ w[2 * d:].T + b[2 * d:]
    tx, ty, n = q.shape[0], k.shape[0], q.shape[1]
    hd = d // heads
    q = q.view(tx, n, heads, hd).permute(1, 2, 0, 3)
    k = k.view(ty, n, heads, hd).permute(1, 2, 0, 3)
    v = v.view(ty, n, heads, hd).permute(1, 2, 0, 3)
    out = ((q @ k.transpose(-2, -1) / hd ** 0.5).softmax(-1) @ v).permute(2, 0, 1, 3).flatten(2)
    x = x + F.linear(out, sd[p + ".attn.out_proj.weight"], sd[p + ".attn.out_proj.bias"])
    return x + _mlp(_ln(x, sd, p + ".ln_2"), sd, p + ".mlp")


def reference_logits(sd: dict, video: torch.Tensor) -> torch.Tensor:
    heads = WIDTH // 64
    x = F.conv3d(video, sd["conv1.weight"], stride=(1, PATCH, PATCH))
    n, c, t, h, w = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(n * t, h * w, c)
    x = torch.cat([sd["class_embedding"] + torch.zeros(n * t, 1, c), x], dim=1) + sd["positional_embedding"]
    x = _ln(x, sd, "ln_pre").permute(1, 0, 2)  # (L, N*T, C)
    L = x.shape[0]
    cls = sd["transformer.temporal_cls_token"].repeat(1, n, 1)
    j = -1
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}"
        if p + ".lmhra1.pos_embed.0.weight" in sd:
            x = _local(x, sd, p + ".lmhra1.pos_embed", t)
        y = _ln(x, sd, p + ".ln_1")
        attn, _ = F.multi_head_attention_forward(
            y, y, y, c, heads, sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"], None, None, False, 0.0,
            sd[p + ".attn.out_proj.weight"], sd[p + ".attn.out_proj.bias"], training=False, need_weights=False)
        x = x + attn
        if p + ".lmhra2.pos_embed.0.weight" in sd:
            x = _local(x, sd, p + ".lmhra2.pos_embed", t)
        x = x + _mlp(_ln(x, sd, p + ".ln_2"), sd, p + ".mlp")
        if i >= LAYERS - GLOBAL:  # return_list: the last GLOBAL layers
            j += 1
            tmp = x.clone().view(L, n, t, c)
            feats = tmp[1:].permute(1, 3, 2, 0).reshape(n, c, t, h, w)
            feats = F.conv3d(feats, sd[f"transformer.dpe.{j}.weight"], sd[f"transformer.dpe.{j}.bias"], padding=1,
                             groups=c).view(n, c, t, L - 1).permute(3, 0, 2, 1)
            tmp[1:] = tmp[1:] + feats
            cls = _extractor(cls, tmp.permute(2, 0, 1, 3).flatten(0, 1), sd, f"transformer.dec.{j}", heads)
    if "transformer.balance" in sd:
        weight = torch.sigmoid(sd["transformer.balance"])
        token = (1 - weight) * cls[0] + weight * x.view(L, n, t, c)[0].mean(1)
    else:  # frozen=True
        token = cls[0]
    token = _ln(token, sd, "transformer.proj.0")
    return F.linear(token, sd["transformer.proj.2.weight"], sd["transformer.proj.2.bias"])


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("lmhra, frozen", [(False, False), (True, False), (False, True)])
def test_uniformerv2_checkpoint_parity(tmp_path, lmhra, frozen):
    sd = random_state_dict(lmhra, frozen)
    path = tmp_path / "k710_uniformerv2_tiny.pyth"
    torch.save({"model_state": {"backbone." + k: v for k, v in sd.items()}, "epoch": 3}, path)
    model = internvideo.load_model(path, num_frames=FRAMES).eval()
    assert isinstance(model, InternVideoMMClassifier)
    c = model.config
    assert (c.vision_layers, c.num_global_layers, c.num_classes, c.vision_heads, c.use_local) == \
        (LAYERS, GLOBAL, CLASSES, 2, lmhra)
    video = torch.randn(2, 3, FRAMES, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(video), reference_logits(sd, video)
    rel = ((ours - ref).norm() / ref.norm()).item()
    assert rel <= 1e-4, rel
    assert ref.std() > 0.1  # the comparison is not between two near-constant outputs


def test_detection_and_refusals():
    sd = random_state_dict(False)
    assert is_uniformerv2(sd) and is_uniformerv2({"backbone." + k: v for k, v in sd.items()})
    sd["conv1.weight"] = torch.zeros(WIDTH, 3, 3, PATCH, PATCH)
    with pytest.raises(UserError, match="TEMPORAL_DOWNSAMPLE"):
        infer_uniformerv2_config(sd)
