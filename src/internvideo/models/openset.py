"""Open-set recognition heads: evidential deep learning (DEAR) and the softmax baselines.

The paper's open-set numbers build on DEAR (Bao et al., ICCV 2021): the
classifier outputs non-negative *evidence* ``e_k`` per known class, read as a
Dirichlet ``alpha = e + 1``; its strength ``S = sum(alpha)`` gives the
uncertainty ``u = K / S``, which is 1 with no evidence at all and falls as
evidence accumulates. A video of a class never trained on should gather little
evidence and so be rejected by ``u``.

Loss (:func:`edl_loss`): the Bayes risk of cross-entropy under the Dirichlet,
``sum_k y_k (digamma(S) - digamma(alpha_k))``, plus ``KL(Dir(alpha~) || Dir(1))``
on the evidence left for wrong classes (``alpha~ = y + (1 - y) * alpha``),
weighted by an annealing coefficient ``min(1, epoch / annealing_epochs)`` so that
the model first learns to classify and only then to be humble about it.

Baselines on the same features (:func:`unknown_scores`): maximum softmax
probability, energy (``-logsumexp``) and max-logit of an ordinary softmax head.
Every score here is "higher = more likely unknown".
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

EvidenceFn = Literal["exp", "relu", "softplus"]
Score = Literal["uncertainty", "msp", "energy", "max_logit"]
SCORES: tuple[str, ...] = ("uncertainty", "msp", "energy", "max_logit")


def evidence(logits: torch.Tensor, kind: EvidenceFn = "exp") -> torch.Tensor:
    """Non-negative evidence from raw outputs; ``exp`` clamps to [-10, 10] first, as DEAR, to stay finite."""
    if kind == "exp":
        return torch.exp(logits.clamp(-10.0, 10.0))
    if kind == "relu":
        return F.relu(logits)
    if kind == "softplus":
        return F.softplus(logits)
    raise ValueError(f"evidence must be 'exp', 'relu' or 'softplus', not {kind!r}")


def dirichlet_uncertainty(ev: torch.Tensor) -> torch.Tensor:
    """``u = K / S`` with ``S = sum(e + 1)``: in (0, 1], 1 = no evidence."""
    return ev.shape[-1] / (ev + 1.0).sum(dim=-1)


def kl_to_uniform_dirichlet(alpha: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(alpha) || Dir(1, ..., 1))`` per row."""
    k = alpha.shape[-1]
    strength = alpha.sum(dim=-1)
    return (torch.lgamma(strength) - torch.lgamma(alpha.new_tensor(float(k))) - torch.lgamma(alpha).sum(dim=-1)
            + ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(strength).unsqueeze(-1))).sum(dim=-1))


def annealing(epoch: float, annealing_epochs: float) -> float:
    """The KL weight ``min(1, epoch / annealing_epochs)`` (1 from the start when ``annealing_epochs <= 0``)."""
    return 1.0 if annealing_epochs <= 0 else min(1.0, max(0.0, epoch / annealing_epochs))


def edl_loss(ev: torch.Tensor, target: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Mean EDL loss of evidence ``(B, K)`` against class indices ``(B,)`` (see the module docstring)."""
    if ev.ndim != 2 or target.shape != ev.shape[:1]:
        raise ValueError(f"expected evidence (B, K) and targets (B,), got {tuple(ev.shape)} and {tuple(target.shape)}")
    alpha = ev + 1.0
    y = F.one_hot(target, ev.shape[-1]).to(alpha.dtype)
    risk = (y * (torch.digamma(alpha.sum(dim=-1, keepdim=True)) - torch.digamma(alpha))).sum(dim=-1)
    kl = kl_to_uniform_dirichlet(y + (1.0 - y) * alpha)
    return (risk + kl_weight * kl).mean()


def unknown_scores(logits: torch.Tensor, score: Score, kind: EvidenceFn = "exp") -> torch.Tensor:
    """Per-row "how unknown" score: Dirichlet uncertainty of an evidential head, or a softmax-head baseline."""
    if score == "uncertainty":
        return dirichlet_uncertainty(evidence(logits, kind))
    if score == "msp":
        return -logits.softmax(dim=-1).amax(dim=-1)
    if score == "energy":
        return -torch.logsumexp(logits, dim=-1)  # the free energy at temperature 1
    if score == "max_logit":
        return -logits.amax(dim=-1)
    raise ValueError(f"score must be one of {', '.join(SCORES)}, not {score!r}")


class OpenSetHead(nn.Module):
    """A linear (``hidden=0``) or one-hidden-layer classifier over frozen features ``(B, D) -> (B, K)``.

    The same module serves as the evidential head (train with :func:`edl_loss`
    on ``evidence(logits)``) and as the softmax baseline (cross-entropy);
    features are layer-normalised first so one learning rate fits any backbone.
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden or in_dim, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(features))


__all__ = ["EvidenceFn", "OpenSetHead", "SCORES", "Score", "annealing", "dirichlet_uncertainty", "edl_loss", "evidence",
           "kl_to_uniform_dirichlet", "unknown_scores"]
