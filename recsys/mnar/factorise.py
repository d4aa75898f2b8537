"""`factorise`: a bias-free matrix factorisation fitted by Adam on sampled pairs, as the Rel-MF authors' generator
does it (Xavier-uniform init, TF's bounds). The semi-synthetic generator and the logistic-MF propensity model both
use it."""

from __future__ import annotations

import math
from typing import Callable, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F


class FitSettings(Protocol):
    """What `factorise` reads of its settings (`recsys.mnar.semisynthetic.GeneratorConfig` has them)."""

    dim: int
    lr: float
    iters: int


def _xavier_uniform(rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """TF's ``xavier_initializer()`` (uniform, fan_in = rows, fan_out = dim) for a ``[rows, dim]`` table."""
    limit = math.sqrt(6.0 / (rows + dim))
    return ((torch.rand(rows, dim, generator=generator, dtype=torch.float64) * 2 - 1) * limit).requires_grad_()


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def factorise(
    n_users: int, n_items: int, draw: Callable[[torch.Generator], Batch], loss: Literal["mse", "bce", "bce_original"],
    config: FitSettings,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Factors ``([U, dim], [I, dim])`` of a bias-free MF fitted by Adam on batches ``draw(g) -> (u, i, target)``.

    ``loss`` is ``"mse"`` (regression on ratings), ``"bce"`` (logistic, targets in {0, 1}) or ``"bce_original"``
    (the authors' 2019 exposure loss, see `recsys.mnar.semisynthetic.GeneratorConfig`).
    """
    user = _xavier_uniform(n_users, config.dim, generator)
    item = _xavier_uniform(n_items, config.dim, generator)
    optimizer = torch.optim.Adam([user, item], lr=config.lr)
    for _ in range(config.iters):
        u, i, target = draw(generator)
        logits = (user[u] * item[i]).sum(-1)  # [B]
        if loss == "mse":
            value = F.mse_loss(logits, target)
        elif loss == "bce":
            value = F.binary_cross_entropy_with_logits(logits, target)
        elif loss == "bce_original":
            # log(1 − s) is NaN for s > 1, but only where the target is 1 and its weight 0: the gradient stays finite
            # (as in TF), so, as there, only the value is undefined; Adam reads gradients alone.
            value = -(target * F.logsigmoid(logits) + (1 - target) * torch.log(1 - logits)).mean()
        else:
            raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return user.detach().numpy(), item.detach().numpy()
