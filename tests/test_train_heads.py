"""train/heads.py: heads fitted on frozen features, in one small loop that leaves the global RNG alone."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from internvideo.models.openset import OpenSetHead, annealing, edl_loss, evidence
from internvideo.train import TrainingDiverged
from internvideo.train.heads import fit_head, fit_openset_head, seeded
from internvideo.train.optim import lr_at, warmup_cosine


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(60, 8, generator=g), torch.randint(0, 3, (60,), generator=g)


@pytest.mark.parametrize("loss", ["edl", "ce"])
def test_openset_head_is_the_plain_full_batch_adamw_loop(loss):
    x, y = _data()
    head = fit_openset_head(x, y, 3, loss=loss, hidden=16, steps=30, seed=3)
    # The loop written out: seed, init, full-batch AdamW (what tasks/openset.fit_head did before the move).
    torch.manual_seed(3)
    ref = OpenSetHead(8, 3, hidden=16)
    optim = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=1e-4)
    for step in range(30):
        logits = ref(x)
        value = edl_loss(evidence(logits, "exp"), y, annealing(step, 100)) if loss == "edl" else \
            F.cross_entropy(logits, y)
        optim.zero_grad()
        value.backward()
        optim.step()
    for (name, a), b in zip(head.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not head.training


def test_fitting_leaves_the_global_rng_as_it_was():
    x, y = _data()
    module = torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.Dropout(0.5))  # dropout draws from the global RNG
    torch.manual_seed(123)
    before = torch.get_rng_state()
    fit_openset_head(x, y, 3, hidden=16, steps=3, seed=0)
    fit_head(module, lambda step: F.cross_entropy(module(x), y), 3, lr=1e-2, weight_decay=0.0)
    with seeded(7):
        torch.rand(5)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_non_finite_loss_stops_the_fit_with_the_step():
    w = torch.nn.Linear(2, 1)
    with pytest.raises(TrainingDiverged, match="toy: non-finite loss at step 2"):
        fit_head(w, lambda step: w.weight.sum() * (float("nan") if step == 2 else 1.0), 5, lr=1e-3,
                 weight_decay=0.0, name="toy")


def test_warmup_cosine_has_the_shape_of_lr_at():
    total, warmup = 300, 30
    for step in range(total):
        assert warmup_cosine(step, total, warmup) == pytest.approx(lr_at(step, total, warmup, 1.0, 0.0), abs=1e-12)
    assert warmup_cosine(0, total, warmup) == 1 / 30 and warmup_cosine(warmup, total, warmup) == 1.0
