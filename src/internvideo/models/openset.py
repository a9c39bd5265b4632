"""Open-set recognition heads: evidential deep learning (DEAR) and the softmax baselines.

The paper's open-set numbers build on DEAR (Bao et al., ICCV 2021): the
classifier outputs non-negative *evidence* ``e_k`` per known class, read as a
Dirichlet ``alpha = e + 1``; its strength ``S = sum(alpha)`` gives the
uncertainty ``u = K / S``, which is 1 with no evidence at all and falls as
evidence accumulates. A video of a class never trained on should gather little
evidence and so be rejected by ``u``.

Loss (:func:`edl_loss`), DEAR's ``EvidenceLoss`` (mmaction/models/losses/edl_loss.py
of the official Open-Set-Action-Recognition code), by ``loss_type``:

* ``digamma``: the Bayes risk of cross-entropy under the Dirichlet,
  ``sum_k y_k (digamma(S) - digamma(alpha_k))``;
* ``log``: the same with ``log`` for ``digamma``, ``sum_k y_k (log S - log alpha_k)``
  (the negative log of the expected probability of the true class), the loss
  InternVideo's open-set run uses (``loss_type='log'``);
* ``mse``: the expected squared error ``sum_k (y_k - p_k)^2 + p_k (1 - p_k) / (S + 1)``
  with ``p = alpha / S``;

plus, unless switched off (``with_kldiv=False`` in DEAR; ``kl_weight=0`` here),
``KL(Dir(alpha~) || Dir(1))`` on the evidence left for wrong classes
(``alpha~ = y + (1 - y) * alpha``), weighted by an annealing coefficient
``min(1, epoch / annealing_epochs)`` (DEAR's ``annealing_method='step'``) so that
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
EDLLoss = Literal["digamma", "log", "mse"]
EDL_LOSSES: tuple[str, ...] = ("digamma", "log", "mse")
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


def annealing(epoch: float, annealing_epochs: float, kl: bool = True) -> float:
    """The KL weight: ``min(1, epoch / annealing_epochs)``; 1 from the start when ``annealing_epochs <= 0``
    (no annealing); 0 when ``kl`` is off (DEAR's ``with_kldiv=False``, InternVideo's open-set run)."""
    if not kl:
        return 0.0
    return 1.0 if annealing_epochs <= 0 else min(1.0, max(0.0, epoch / annealing_epochs))


def edl_loss(ev: torch.Tensor, target: torch.Tensor, kl_weight: float, loss_type: EDLLoss = "digamma"
             ) -> torch.Tensor:
    """Mean EDL loss of evidence ``(B, K)`` against class indices ``(B,)`` (see the module docstring).

    ``kl_weight == 0`` leaves the KL term out entirely (not computed), as DEAR's ``with_kldiv=False``.
    """
    if ev.ndim != 2 or target.shape != ev.shape[:1]:
        raise ValueError(f"expected evidence (B, K) and targets (B,), got {tuple(ev.shape)} and {tuple(target.shape)}")
    alpha = ev + 1.0
    y = F.one_hot(target, ev.shape[-1]).to(alpha.dtype)
    strength = alpha.sum(dim=-1, keepdim=True)
    if loss_type == "digamma":
        risk = (y * (torch.digamma(strength) - torch.digamma(alpha))).sum(dim=-1)
    elif loss_type == "log":
        risk = (y * (torch.log(strength) - torch.log(alpha))).sum(dim=-1)
    elif loss_type == "mse":
        p = alpha / strength
        risk = ((y - p) ** 2 + p * (1.0 - p) / (strength + 1.0)).sum(dim=-1)
    else:
        raise ValueError(f"loss_type must be one of {', '.join(EDL_LOSSES)}, not {loss_type!r}")
    if kl_weight == 0:
        return risk.mean()
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


__all__ = ["EDLLoss", "EDL_LOSSES", "EvidenceFn", "OpenSetHead", "SCORES", "Score", "annealing", "dirichlet_uncertainty",
           "edl_loss", "evidence",
           "kl_to_uniform_dirichlet", "unknown_scores"]
