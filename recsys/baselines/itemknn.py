"""Item-based k-nearest-neighbours with shrunk cosine similarity."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
import torch

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import Recommender, history_csr


class ItemKNN(Recommender):
    """score(u, i) = Σ_{j ∈ N_k(i)} x_uj · sim(i, j), sim(i, j) = x_i·x_j / (‖x_i‖‖x_j‖ + shrink).

    ``N_k(i)`` are the ``k`` items most similar to the target item ``i`` (as Aiolli 2013 and RecBole's
    ItemKNN). Similarities are computed in blocks of ``block_size`` target items, so memory stays at
    ``n_items × block_size`` floats plus the sparse ``n_items × k`` neighbour matrix.

    Args:
        k: neighbours kept per item.
        shrink: added to the cosine denominator; damps similarities built on few co-occurrences.
        block_size: target items per block when building the similarity matrix.

    A history outside training is scored like a user's row; ``similarity_[i]`` (item i's weight towards each
    target) is what `similar_items` ranks, so an item's similar items are what a history of it alone recommends.
    """

    fitted_attributes = ("similarity_",)

    def __init__(self, k: int = 100, shrink: float = 0.0, block_size: int = 2048) -> None:
        if k < 1:
            raise ValueError("ItemKNN needs k >= 1")
        self.k = k
        self.shrink = shrink
        self.block_size = block_size

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        self._remember(train)
        x = self.seen().astype(np.float32)
        x.data[:] = 1.0
        xt = x.T.tocsr()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        n_items = x.shape[1]
        k = min(self.k, n_items)
        rows, cols, vals = [], [], []
        for start in range(0, n_items, self.block_size):
            block = np.arange(start, min(start + self.block_size, n_items))
            sims = (xt @ x[:, block]).toarray()  # [n_items, b]: co-occurrence of every item with the block
            sims[block, np.arange(len(block))] = 0.0
            sims /= norms[:, None] * norms[block][None, :] + self.shrink + 1e-6
            top = np.argpartition(-sims, k - 1, axis=0)[:k]  # [k, b] neighbour rows per target column
            values = np.take_along_axis(sims, top, axis=0)
            keep = values != 0.0
            rows.append(top[keep])
            cols.append(np.broadcast_to(block[None, :], top.shape)[keep])
            vals.append(values[keep])
        self.similarity_ = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
        )
        return self

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        return self._from_rows(self.seen()[users.numpy()])

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        return self._from_rows(history_csr(items, self.n_items))[0]

    def item_similarity(self, items: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.similarity_[items.numpy()].toarray().astype(np.float32))

    def _from_rows(self, rows: sp.csr_matrix) -> torch.Tensor:
        """``[B, n_items]`` scores of users × items rows (made binary: a repeated item counts once)."""
        rows = rows.copy()
        rows.data[:] = 1.0
        return torch.from_numpy((rows @ self.similarity_).toarray().astype(np.float32))
