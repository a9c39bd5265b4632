"""The performance paths of the shared layers compute what the plain ones do.

* bf16 attention on CPU (``_BlockedAttention``): forward and gradients against
  float64 SDPA, within what bf16 allows and no worse than a few times SDPA's own
  bf16 error; fp32 and masked/causal calls still go to SDPA unchanged. The
  blocked path runs only where bf16 is native (capability and probe mocked
  here, both ways), and forcing either path gives the same model outputs.
* ``TubeletEmbed(video, keep)``: embedding only the kept tubelets equals
  embedding all of them and then selecting; in emulated bf16 the embedding is
  a matmul, equal to the convolution.
* Without autograd, blocks overwrite their own intermediate buffers (activation,
  residual sum): the same bits as with autograd, and the input is untouched.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from internvideo.models import hardware, layers
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


@pytest.fixture
def blocked(monkeypatch):
    """Force the blocked path, whatever this CPU's bf16 support (it is correct everywhere, fast only where native)."""
    monkeypatch.setenv(layers.ATTENTION_ENV, "blocked")


@pytest.fixture
def fresh_probe():
    hardware.cpu_bf16.cache_clear()
    yield
    hardware.cpu_bf16.cache_clear()  # the mocked answer must not outlive the test


@pytest.mark.parametrize("b,h,n,m", [(2, 3, 300, 300), (1, 2, 129, 700)])
def test_blocked_bf16_attention_matches_sdpa(b, h, n, m, blocked):
    q, k, v, grad = _qkv(b, h, n, m, 64)
    exact = _forward_backward(F.scaled_dot_product_attention, q, k, v, grad, torch.float64)
    sdpa = _forward_backward(F.scaled_dot_product_attention, q, k, v, grad, torch.bfloat16)
    ours = _forward_backward(scaled_dot_product_attention, q, k, v, grad, torch.bfloat16)
    for name, o, s, e in zip(("out", "dq", "dk", "dv"), ours, sdpa, exact):
        scale = e.abs().max()
        ours_err, sdpa_err = (o - e).abs().max() / scale, (s - e).abs().max() / scale
        assert ours_err < 3e-2 and ours_err < 5 * sdpa_err + 1e-3, (name, ours_err.item(), sdpa_err.item())


def _count_blocked_calls(monkeypatch) -> list:
    calls = []
    original = layers._BlockedAttention.apply
    monkeypatch.setattr(layers._BlockedAttention, "apply", lambda *a: calls.append(1) or original(*a))
    return calls


def test_blocked_path_is_taken_only_where_it_pays(monkeypatch, blocked):
    calls = _count_blocked_calls(monkeypatch)
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


@pytest.mark.parametrize("capability,speedup,path", [
    ("AVX2", None, "sdpa"),  # AVX2-only: emulated bf16, decided without a probe
    ("DEFAULT", None, "sdpa"),
    ("AVX512", 0.35, "sdpa"),  # AVX-512 without BF16: the probe finds bf16 slower than fp32
    ("AVX512", 2.7, "blocked"),  # AVX-512 BF16 (this project's benchmark machine)
])
def test_the_attention_path_follows_the_cpu(monkeypatch, fresh_probe, capability, speedup, path):
    probes = []
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(hardware, "probe_bf16_speedup", lambda: probes.append(1) or speedup)
    monkeypatch.delenv(layers.ATTENTION_ENV, raising=False)
    calls = _count_blocked_calls(monkeypatch)
    bf = [t.bfloat16() for t in _qkv(1, 2, 256, 256, 64)[:3]]
    scaled_dot_product_attention(*bf)
    scaled_dot_product_attention(*bf)
    assert layers.cpu_bf16_attention() == path
    assert len(calls) == (2 if path == "blocked" else 0)
    assert len(probes) == (0 if speedup is None else 1)  # probed once per process, not per call
    support = hardware.cpu_bf16()
    assert support.native == (path == "blocked") and support.capability == capability
    assert support.speedup == speedup
    # Forcing either path overrides the hardware; a wrong value names the variable.
    for forced in ("blocked", "sdpa"):
        monkeypatch.setenv(layers.ATTENTION_ENV, forced)
        assert layers.cpu_bf16_attention() == forced
    monkeypatch.setenv(layers.ATTENTION_ENV, "fast")
    with pytest.raises(ValueError, match=layers.ATTENTION_ENV):
        layers.cpu_bf16_attention()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's x86 ISA limit")
def test_real_probe_finds_emulated_bf16_where_onednn_is_limited_to_avx512_without_bf16():
    """In a child limited to AVX-512 without BF16 (or AVX2 on older CPUs), bf16 is not native and SDPA runs."""
    code = ("from internvideo.models import hardware, layers; s = hardware.cpu_bf16(); "
            "print(s.native, s.speedup, layers.cpu_bf16_attention())")
    src = str(Path(hardware.__file__).resolve().parents[2])  # the package under test, not another install
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "PYTHONPATH": src}
    env.pop(layers.ATTENTION_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    native, speedup, path = out.stdout.split()
    assert native == "False" and path == "sdpa"
    if speedup != "None":  # probed (an AVX-512 CPU): bf16 matmuls slower than fp32
        assert 0 < float(speedup) < 1.0


def test_both_paths_give_the_same_block_outputs_and_gradients(monkeypatch):
    """A whole pre-norm block under autocast (as eval and training run it), blocked vs SDPA, within bf16 error."""
    torch.manual_seed(0)
    blk = Block(128, 2, qkv_bias="qv", init_values=0.5)
    with torch.no_grad():
        for p in blk.parameters():
            p.normal_(0, p.shape[-1] ** -0.5 if p.ndim == 2 else 0.5)
    x = torch.randn(2, 260, 128)

    def run(path: str):
        monkeypatch.setenv(layers.ATTENTION_ENV, path)
        blk.zero_grad()
        calls = _count_blocked_calls(monkeypatch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = blk(x)
        out.float().square().mean().backward()
        assert len(calls) == (1 if path == "blocked" else 0)
        return [out.float(), *(p.grad.clone() for p in blk.parameters())]

    ref = blk(x)
    for o, s in zip(run("blocked"), run("sdpa")):
        assert (o - s).abs().max() < 0.03 * s.abs().max() + 1e-6
    assert (run("blocked")[0] - ref).abs().max() < 0.03 * ref.abs().max()


def test_emulated_bf16_warns_once_in_one_line_and_auto_precision_follows(monkeypatch, fresh_probe, caplog):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(hardware, "probe_bf16_speedup", lambda: 0.02)
    hardware._log_once.cache_clear()
    with caplog.at_level("WARNING", logger=hardware.__name__):
        assert hardware.resolve_precision("bf16", "cpu") == "bf16"
        assert hardware.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    (record,) = caplog.records  # once per process, however often bf16 is asked for
    message = record.getMessage()
    assert record.levelname == "WARNING" and "\n" not in message
    assert "emulates it" in message and "50x slower" in message and "fp32 will be faster" in message
    assert "AVX512" in message
    assert hardware.resolve_precision("auto", "cpu") == "fp32"
    assert hardware.resolve_precision("fp32", "cpu") == "fp32"

    hardware.cpu_bf16.cache_clear()
    hardware._log_once.cache_clear()
    monkeypatch.setattr(hardware, "probe_bf16_speedup", lambda: 2.7)
    caplog.clear()
    with caplog.at_level("WARNING", logger=hardware.__name__):
        assert hardware.resolve_precision("bf16", "cpu") == "bf16"
        assert not hardware.warn_if_bf16_emulated("meta")  # only CPUs are judged here
    assert not caplog.records
    assert hardware.resolve_precision("auto", "cpu") == "bf16"
    hardware._log_once.cache_clear()


def test_eval_precision_follows_the_cpu(monkeypatch, caplog):
    """Tasks run under ``common.inference``: ``auto`` is fp32 where bf16 is emulated, ``bf16`` says it is slow."""
    from internvideo.tasks.common import inference
    monkeypatch.setattr(hardware, "cpu_bf16", lambda: hardware.Bf16Support(native=False, capability="AVX2"))
    hardware._log_once.cache_clear()
    model = torch.nn.Linear(4, 4)
    with caplog.at_level("WARNING", logger=hardware.__name__):
        with inference(model, torch.device("cpu"), "auto"):
            assert not torch.is_autocast_enabled("cpu")
        assert not caplog.records
        with inference(model, torch.device("cpu"), "bf16"):
            assert torch.is_autocast_enabled("cpu") and model(torch.ones(1, 4)).dtype == torch.bfloat16
    assert [r.getMessage() for r in caplog.records] == [
        "bf16 requested, but this CPU emulates it (PyTorch CPU capability AVX2): fp32 will be faster"]
    monkeypatch.setattr(hardware, "cpu_bf16", lambda: hardware.Bf16Support(native=True, capability="AVX512"))
    with inference(model, torch.device("cpu"), "auto"):
        assert torch.is_autocast_enabled("cpu")
    hardware._log_once.cache_clear()


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


@pytest.mark.parametrize("weights", [False, True])
def test_tubelet_embed_in_emulated_bf16_is_a_matmul_equal_to_the_convolution(monkeypatch, weights):
    """Where bf16 is emulated (mocked), the embedding skips bf16 Conv3d (a naive kernel there) for a matmul."""
    torch.manual_seed(0)
    embed = TubeletEmbed(patch_size=8, tubelet_size=2, in_chans=3, embed_dim=32)
    video = torch.randn(2, 3, 4, 32, 48)
    ref = embed(video)  # fp32: the convolution
    monkeypatch.setattr(hardware, "cpu_bf16", lambda: hardware.Bf16Support(native=False, capability="AVX2"))

    def no_conv(*args):
        raise AssertionError("the bf16 convolution ran")

    monkeypatch.setattr(embed.proj, "forward", no_conv)
    if weights:
        out = embed.bfloat16()(video.bfloat16())
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = embed(video)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert (out.float() - ref).abs().max() < 0.02 * ref.abs().max()


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
