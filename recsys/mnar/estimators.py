"""Pointwise estimators of the ideal implicit-feedback loss under missing-not-at-random exposure (Saito et al. 2020).

The ideal loss weighs each pair's positive and negative local losses by its relevance probability γ:
``Σ [γ·δ1(s) + (1 − γ)·δ0(s)]``. With clicks Y = O·R observed instead of γ, the estimators replace the weights:

====================  ==================  =====================
estimator             weight of δ1        weight of δ0
====================  ==================  =====================
``naive``             Y                   1 − Y
``wmf``               c·Y                 1 − Y
``ips`` (Rel-MF)      Y/θ                 1 − Y/θ
``clipped_ips``       Y/max(θ, M)         1 − Y/max(θ, M)
====================  ==================  =====================

``ips`` is unbiased because E[Y/θ] = γ; ``clipped_ips`` trades bias for variance (M = 0 is ``ips``). The sum is
divided by Σ (c·Y + 1 − Y), the authors' normaliser, which is the number of pairs unless c ≠ 1. Passing soft
labels γ with ``naive`` gives the ideal (oracle) loss.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Estimator = Literal["naive", "wmf", "ips", "clipped_ips"]
LocalLoss = Literal["log", "squared"]
ESTIMATORS: tuple[str, ...] = ("naive", "wmf", "ips", "clipped_ips")
LOCAL_LOSSES: tuple[str, ...] = ("log", "squared")


def local_losses(logits: torch.Tensor, loss: LocalLoss = "log") -> tuple[torch.Tensor, torch.Tensor]:
    """``(δ1, δ0)``, each ``[B]``: the losses of predicting logit ``s`` for a relevant and an irrelevant pair.

    ``log``: −log σ(s) and −log(1 − σ(s)) (computed stably as softplus(∓s)); ``squared``: (1 − σ(s))² and σ(s)².
    """
    if loss == "log":
        return F.softplus(-logits), F.softplus(logits)
    if loss == "squared":
        prob = torch.sigmoid(logits)
        return (1.0 - prob) ** 2, prob**2
    raise ValueError(f"unknown local loss {loss!r}; choose one of {LOCAL_LOSSES}")


def pair_weights(
    labels: torch.Tensor,
    propensity: torch.Tensor | None = None,
    estimator: Estimator = "naive",
    *,
    positive_weight: float = 1.0,
    clip: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w1, w0)``, each ``[B]``: weights of δ1 and δ0 of pairs with click ``labels`` and exposure ``propensity``.

    Args:
        labels: ``[B]`` clicks Y in {0, 1} (or soft labels with ``naive``).
        propensity: ``[B]`` exposure probabilities θ in (0, 1]; needed by ``ips`` and ``clipped_ips``.
        estimator: one of `ESTIMATORS`.
        positive_weight: WMF's c ≥ 1 (``wmf`` only).
        clip: clipped IPS's M in [0, 1] (``clipped_ips`` only).
    """
    if estimator == "naive":
        return labels, 1.0 - labels
    if estimator == "wmf":
        return positive_weight * labels, 1.0 - labels
    if estimator in ("ips", "clipped_ips"):
        if propensity is None:
            raise ValueError(f"estimator {estimator!r} needs propensities")
        if estimator == "clipped_ips":
            if not 0.0 <= clip <= 1.0:
                raise ValueError(f"clip must be in [0, 1], got {clip}")
            propensity = propensity.clamp(min=clip)
        scaled = labels / propensity
        return scaled, 1.0 - scaled
    raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")


def estimator_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    propensity: torch.Tensor | None = None,
    estimator: Estimator = "naive",
    *,
    loss: LocalLoss = "log",
    positive_weight: float = 1.0,
    clip: float = 0.0,
) -> torch.Tensor:
    """Scalar ``Σ [w1·δ1 + w0·δ0] / Σ [c·Y + 1 − Y]`` over a batch of pairs (see the module docstring).

    ``logits``, ``labels`` and ``propensity`` are ``[B]``; ``c`` is ``positive_weight`` under ``wmf`` and 1 else.
    """
    w1, w0 = pair_weights(labels, propensity, estimator, positive_weight=positive_weight, clip=clip)
    d1, d0 = local_losses(logits, loss)
    c = positive_weight if estimator == "wmf" else 1.0
    normaliser = (c * labels + 1.0 - labels).sum() if c != 1.0 else torch.tensor(float(len(labels)), dtype=logits.dtype)
    return (w1 * d1 + w0 * d0).sum() / normaliser
