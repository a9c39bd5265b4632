"""Contrastive and caption losses; the gathered loss over 2 gloo processes equals one process with the whole batch."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from internvideo.losses import IGNORE_INDEX, ClipLoss, caption_loss

BATCH, DIM, WORLD = 8, 16, 2


def _direct_clip_loss(v: torch.Tensor, t: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    # The textbook formula, row by row: -log softmax of the matching pair, both directions, averaged.
    v, t = v / v.norm(dim=-1, keepdim=True), t / t.norm(dim=-1, keepdim=True)
    scale = min(math.exp(float(logit_scale)), 100.0)
    sim = scale * v @ t.t()
    terms = []
    for i in range(len(v)):
        terms.append(-(sim[i, i] - torch.logsumexp(sim[i], 0)))
        terms.append(-(sim[i, i] - torch.logsumexp(sim[:, i], 0)))
    return torch.stack(terms).sum() / (2 * len(v))


def test_clip_loss_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(BATCH, DIM, generator=g), torch.randn(BATCH, DIM, generator=g)
    scale = torch.tensor(math.log(1 / 0.07))
    torch.testing.assert_close(ClipLoss()(v, t, scale), _direct_clip_loss(v, t, scale))
    # Perfectly aligned, well separated pairs give a loss near zero.
    eye = torch.eye(BATCH, DIM)
    assert ClipLoss()(eye * 3, eye, torch.tensor(math.log(100.0))) < 1e-3


def test_logit_scale_is_clamped_at_100():
    g = torch.Generator().manual_seed(1)
    v, t = torch.randn(BATCH, DIM, generator=g), torch.randn(BATCH, DIM, generator=g)
    big = torch.tensor(math.log(500.0), requires_grad=True)
    loss = ClipLoss()(v, t, big)
    torch.testing.assert_close(loss, _direct_clip_loss(v, t, torch.tensor(math.log(100.0))))
    loss.backward()
    assert big.grad == 0  # clamped: the temperature stops moving


def test_caption_loss():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 5, 11, generator=g)
    targets = torch.tensor([[3, 4, 10, 0, 0], [1, 2, 0, 7, IGNORE_INDEX]])
    keep = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 3)]  # pad id 0 and -100 are not scored
    direct = torch.stack([F.cross_entropy(logits[b, i][None], targets[b, i][None]) for b, i in keep]).mean()
    torch.testing.assert_close(caption_loss(logits, targets), direct)
    keep_zero = keep + [(0, 3), (0, 4), (1, 2)]  # pad_id=None: only -100 is ignored
    direct = torch.stack([F.cross_entropy(logits[b, i][None], targets[b, i][None]) for b, i in keep_zero]).mean()
    torch.testing.assert_close(caption_loss(logits, targets, pad_id=None), direct)
    with pytest.raises(ValueError, match="do not match"):
        caption_loss(logits, targets[:, :3])


def _problem():
    """Two linear 'encoders', a batch and a log scale; the same on every process (fixed seed)."""
    g = torch.Generator().manual_seed(3)
    video_enc = torch.nn.Linear(12, DIM)
    text_enc = torch.nn.Linear(10, DIM)
    with torch.no_grad():
        for p in [*video_enc.parameters(), *text_enc.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g))
    scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    x_video, x_text = torch.randn(BATCH, 12, generator=g), torch.randn(BATCH, 10, generator=g)
    return video_enc, text_enc, scale, x_video, x_text


def _grads(video_enc, text_enc, scale) -> list[torch.Tensor]:
    return [p.grad.clone() for p in [*video_enc.parameters(), *text_enc.parameters(), scale]]


def _worker(rank: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        video_enc, text_enc, scale, x_video, x_text = _problem()
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        loss = ClipLoss()(video_enc(x_video[shard]), text_enc(x_text[shard]), scale)
        loss.backward()
        # What DistributedDataParallel does: average the gradients (and here the loss) over ranks.
        grads = _grads(video_enc, text_enc, scale)
        for t in [loss.detach(), *grads]:
            dist.all_reduce(t)
            t /= WORLD
        if rank == 0:
            torch.save({"loss": loss.detach(), "grads": grads}, out_file)
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_gradients_match_single_process(tmp_path):
    out_file = tmp_path / "result.pt"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=WORLD, join=True)
    result = torch.load(out_file)

    video_enc, text_enc, scale, x_video, x_text = _problem()
    loss = ClipLoss()(video_enc(x_video), text_enc(x_text), scale)
    loss.backward()
    torch.testing.assert_close(result["loss"], loss.detach())
    for got, want in zip(result["grads"], _grads(video_enc, text_enc, scale)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
