"""Vectorised negative sampling: items a user has not interacted with, uniformly or by popularity."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch


DENSE_LIMIT = 1 << 27  # users × items cells for which a bitmap (at most 128 MiB) replaces binary search


class NegativeSampler:
    """Draws ``k`` negatives per (user, positive) row, rejecting the user's training positives.

    All draws for a batch happen at once (``torch.multinomial`` / ``torch.randint``); rows whose draw hit a
    positive are redrawn together, for at most ``max_rounds`` rounds (a user who has seen almost every item may
    keep a positive after that; the count is reported in ``last_collisions``).

    Args:
        seen: users × items CSR of training interactions.
        distribution: ``uniform`` or ``popularity`` (probability ∝ count^alpha).
        alpha: popularity exponent.
        max_rounds: redraw rounds for collisions.
    """

    def __init__(
        self,
        seen: sp.csr_matrix,
        *,
        distribution: Literal["uniform", "popularity"] = "uniform",
        alpha: float = 1.0,
        max_rounds: int = 20,
    ) -> None:
        if distribution not in ("uniform", "popularity"):
            raise ValueError(f"unknown negative distribution {distribution!r}; use 'uniform' or 'popularity'")
        self.n_users, self.n_items = seen.shape
        csr = seen.tocsr()
        csr.sort_indices()
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(csr.indptr))
        self._keys = torch.from_numpy(rows * self.n_items + csr.indices.astype(np.int64))  # sorted
        # Small catalogues: a users × items bitmap answers "seen?" with one gather instead of a binary search.
        self._bitmap: torch.Tensor | None = None
        if self.n_users * self.n_items <= DENSE_LIMIT:
            self._bitmap = torch.zeros(self.n_users * self.n_items, dtype=torch.bool)
            self._bitmap[self._keys] = True
        self.distribution = distribution
        self.max_rounds = max_rounds
        counts = np.bincount(csr.indices, minlength=self.n_items).astype(np.float64)
        self._probs = torch.from_numpy(counts**alpha) if distribution == "popularity" else None
        self.last_collisions = 0

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self._probs is None:
            return torch.randint(self.n_items, (n,), generator=generator)
        return torch.multinomial(self._probs, n, replacement=True, generator=generator)

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Bool mask: is (user, item) a training interaction? (binary search over sorted keys)."""
        keys = users * self.n_items + items
        if self._bitmap is not None:
            return self._bitmap[keys]
        pos = torch.searchsorted(self._keys, keys).clamp(max=len(self._keys) - 1)
        return self._keys[pos] == keys if len(self._keys) else torch.zeros_like(keys, dtype=torch.bool)

    def sample(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """Negatives ``[B, k]`` for ``users [B]``."""
        users_k = users.repeat_interleave(k)
        items = self._draw(len(users_k), generator)
        redo = torch.nonzero(self.is_positive(users_k, items)).view(-1)  # rows still holding a positive
        for _ in range(self.max_rounds):
            if len(redo) == 0:
                break
            items[redo] = self._draw(len(redo), generator)
            redo = redo[self.is_positive(users_k[redo], items[redo])]
        self.last_collisions = len(redo)
        return items.view(len(users), k)
