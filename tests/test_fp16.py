"""precision: fp16 — autocast + GradScaler for GPUs without bf16; refused on CPU; overflowing steps are skipped."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from internvideo.train import load_config
from internvideo.train.config import ConfigError
from internvideo.train.loop import mixed_precision, optimizer_step


def _model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _backward(model, scaler, overflow: bool):
    loss = model(torch.ones(3, 4)).sum()
    scaler.scale(loss).backward()
    if overflow:  # what an fp16 overflow leaves behind
        model.weight.grad[0, 0] = float("inf")


@pytest.mark.parametrize("clip", [None, 1.0])
def test_scaler_skips_the_step_on_inf_and_lowers_the_scale(clip):
    model, opt = _model_and_optimizer()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, enabled=True)  # CPU stands in for the GPU here
    before = [p.detach().clone() for p in model.parameters()]
    _backward(model, scaler, overflow=True)
    logs = optimizer_step(opt, model, scaler, clip)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no update from inf gradients
    assert logs["skipped_step"] == 1.0 and logs["loss_scale"] == 2.0 ** 9
    assert all(p.grad is None for p in model.parameters())
    # the next, finite step goes through, with the gradients unscaled
    _backward(model, scaler, overflow=False)
    logs = optimizer_step(opt, model, scaler, clip)
    assert logs["skipped_step"] == 0.0
    plain, plain_opt = _model_and_optimizer()
    plain(torch.ones(3, 4)).sum().backward()
    if clip:
        nn.utils.clip_grad_norm_(plain.parameters(), clip)
    plain_opt.step()
    for a, b in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b)


def test_disabled_scaler_is_a_plain_step():
    model, opt = _model_and_optimizer()
    autocast, scaler = mixed_precision("fp32", torch.device("cpu"))
    assert not scaler.is_enabled()
    _backward(model, scaler, overflow=False)
    assert optimizer_step(opt, model, scaler, None) == {}


def test_fp16_on_cpu_is_refused_with_the_key(tmp_path):
    with pytest.raises(ConfigError, match="run.precision: fp16 needs a CUDA GPU.*use bf16"):
        mixed_precision("fp16", torch.device("cpu"))
    cfg = load_config(None, ["objective=classify", "model.name=videomae_tiny", "run.precision=fp16",
                             f"run.out_dir={tmp_path / 'run'}", "data.train=missing.txt"])
    assert cfg.run.precision == "fp16"  # a valid config value; the CPU refuses it when training starts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast needs a CUDA GPU")
def test_fp16_autocast_on_gpu():
    autocast, scaler = mixed_precision("fp16", torch.device("cuda"))
    model = nn.Linear(4, 2).cuda()
    with autocast:
        assert model(torch.ones(1, 4, device="cuda")).dtype == torch.float16
    assert scaler.is_enabled()
