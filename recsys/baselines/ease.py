"""EASE: embarrassingly shallow autoencoder (Steck, WWW 2019), closed form."""

from __future__ import annotations

from typing import Self

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import Recommender


class EASE(Recommender):
    """B = argmin ‖X − XB‖² + λ‖B‖², diag(B) = 0, solved in closed form: B = I − P·diag(1/diag(P)),
    P = (XᵀX + λI)⁻¹. Needs an ``n_items × n_items`` dense matrix: fine up to a few tens of thousands of items.

    Args:
        reg: λ, the L2 penalty (RecBole's default 250).

    A history outside training is scored like a user's row (x·B); ``B[i]`` is item i's similarity row.
    """

    fitted_attributes = ("weights_",)

    def __init__(self, reg: float = 250.0) -> None:
        self.reg = reg

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        self._remember(train)
        x = self.seen().astype(np.float64)
        x.data[:] = 1.0
        gram = torch.from_numpy((x.T @ x).toarray())
        gram.diagonal().add_(self.reg)
        p = torch.linalg.inv(gram)
        b = -p / p.diagonal()[None, :]
        b.diagonal().zero_()
        self.weights_ = b.to(torch.float32)
        return self

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        rows = self.seen()[users.numpy()].tocoo()
        dense = torch.zeros(len(users), self.n_items)
        dense[torch.from_numpy(rows.row).long(), torch.from_numpy(rows.col).long()] = 1.0
        return dense @ self.weights_

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        dense = torch.zeros(self.n_items)
        dense[torch.from_numpy(np.array(items, dtype=np.int64))] = 1.0
        return dense @ self.weights_

    def item_similarity(self, items: torch.Tensor) -> torch.Tensor:
        return self.weights_[items]
