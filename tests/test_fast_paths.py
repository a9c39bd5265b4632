"""The performance paths of the shared layers compute what the plain ones do.

* bf16 attention on CPU (``_BlockedAttention``): forward and gradients against
  float64 SDPA, within what bf16 allows and no worse than a few times SDPA's own
  bf16 error; fp32 and masked/causal calls still go to SDPA unchanged.
* ``TubeletEmbed(video, keep)``: embedding only the kept tubelets equals
  embedding all of them and then selecting.
* Without autograd, blocks overwrite their own intermediate buffers (activation,
  residual sum): the same bits as with autograd, and the input is untouched.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from internvideo.models import layers
from internvideo.models.layers import Attention, Block, TubeletEmbed, scaled_dot_product_attention


def _qkv(b: int, h: int, n: int, m: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g)
    # Keys and values as strided views of one fused projection, as Attention produces them.
    kv = torch.randn(b, m, 2, h, d, generator=g).permute(2, 0, 3, 1, 4)
    return q, kv[0], kv[1], torch.randn(b, h, n, d, generator=g)


def _forward_backward(fn, q, k, v, grad, dtype):
    leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    out = fn(*leaves)
    out.backward(grad.to(dtype))
    return [t.double() for t in (out, *(x.grad for x in leaves))]


@pytest.mark.parametrize("b,h,n,m", [(2, 3, 300, 300), (1, 2, 129, 700)])
def test_blocked_bf16_attention_matches_sdpa(b, h, n, m):
    q, k, v, grad = _qkv(b, h, n, m, 64)
    exact = _forward_backward(F.scaled_dot_product_attention, q, k, v, grad, torch.float64)
    sdpa = _forward_backward(F.scaled_dot_product_attention, q, k, v, grad, torch.bfloat16)
    ours = _forward_backward(scaled_dot_product_attention, q, k, v, grad, torch.bfloat16)
    for name, o, s, e in zip(("out", "dq", "dk", "dv"), ours, sdpa, exact):
        scale = e.abs().max()
        ours_err, sdpa_err = (o - e).abs().max() / scale, (s - e).abs().max() / scale
        assert ours_err < 3e-2 and ours_err < 5 * sdpa_err + 1e-3, (name, ours_err.item(), sdpa_err.item())


def test_blocked_path_is_taken_only_where_it_pays(monkeypatch):
    calls = []
    original = layers._BlockedAttention.apply
    monkeypatch.setattr(layers._BlockedAttention, "apply", lambda *a: calls.append(1) or original(*a))
    q, k, v, _ = _qkv(1, 2, 256, 256, 64)
    bf = [t.bfloat16() for t in (q, k, v)]
    scaled_dot_product_attention(*bf)
    assert len(calls) == 1
    # fp32, masks, causality and short sequences stay on SDPA, bit for bit.
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v),
                               rtol=0, atol=0)
    scaled_dot_product_attention(*bf, is_causal=True)
    scaled_dot_product_attention(*[t[:, :, :64] for t in bf])
    assert len(calls) == 1


def test_attention_module_trains_under_autocast():
    torch.manual_seed(0)
    attn = Attention(128, 2, bias="qv")
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 200, 128)
    ref = attn(x)
    ref.square().mean().backward()
    ref_grads = [p.grad.clone() for p in attn.parameters()]
    attn.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x)
    out.float().square().mean().backward()
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()
    for g, r in zip((p.grad for p in attn.parameters()), ref_grads):
        assert torch.isfinite(g).all() and (g - r).abs().max() < 0.05 * r.abs().max() + 1e-6


def test_tubelet_embed_of_kept_tokens_equals_embed_then_select():
    torch.manual_seed(0)
    embed = TubeletEmbed(patch_size=8, tubelet_size=2, in_chans=3, embed_dim=32)
    video = torch.randn(2, 3, 4, 32, 48)
    keep = torch.zeros(2, 2 * 4 * 6, dtype=torch.bool)
    keep[0, [0, 5, 17, 40, 47]] = True
    keep[1, [1, 2, 3, 30, 46]] = True
    full = embed(video)
    torch.testing.assert_close(embed(video, keep), full[keep].reshape(2, 5, 32), rtol=1e-5, atol=1e-5)
    # A non-contiguous video (e.g. permuted from (B, T, C, H, W)) works too.
    permuted = video.transpose(1, 2).contiguous().transpose(1, 2)
    torch.testing.assert_close(embed(permuted, keep), embed(video, keep))


@pytest.mark.parametrize("act", ["gelu", "quick_gelu"])
def test_inference_block_works_in_place_with_the_same_bits(act):
    torch.manual_seed(0)
    blk = Block(48, 4, qkv_bias="qkv", act=act, init_values=0.5).eval()
    x = torch.randn(2, 10, 48)
    kept = x.clone()
    with_autograd = blk(x)  # parameters require grad: the out-of-place path
    assert with_autograd.grad_fn is not None
    with torch.no_grad():
        without = blk(x)
    with torch.inference_mode():
        inference = blk(x)
    assert torch.equal(without, with_autograd) and torch.equal(inference, with_autograd)
    assert torch.equal(x, kept)  # only the block's own intermediate buffers are overwritten
