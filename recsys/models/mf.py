"""Matrix factorisation: score(u, i) = p_u · q_i + b_u + b_i + g."""

from __future__ import annotations

import torch
from torch import nn

from recsys.embeddings.tables import TableSpec
from recsys.models.base import PairModel, State


class MF(PairModel):
    """Dot product of user and item factors plus user, item and global biases.

    Each id table holds ``embedding_dim`` factor columns and, with ``biases``, one bias column, so a side is a
    single lookup (and a single table to shard).

    Args:
        embedding_dim: factor dimension.
        biases: learn user, item and global biases (they cancel in pairwise losses but matter for pointwise ones).
    """

    def __init__(self, embedding_dim: int = 64, biases: bool = True) -> None:
        super().__init__()
        self.embedding_dim, self.biases = embedding_dim, biases

    def table(self, name: str, rows: int) -> TableSpec:
        return TableSpec(name, rows, self.embedding_dim + int(self.biases))

    def build_dense(self) -> None:
        self.global_bias = nn.Parameter(torch.zeros(1), requires_grad=self.biases)

    def side_state(self, pooled: dict[str, torch.Tensor], side: str) -> State:
        table = pooled[side]  # [B, dim (+1)]
        d = self.embedding_dim
        bias = table[:, d] if self.biases else table.new_zeros(len(table))
        return {"vec": table[:, :d], "bias": bias}

    def pair_scores(self, user: State, item: State) -> torch.Tensor:
        return (user["vec"] * item["vec"]).sum(-1) + user["bias"] + item["bias"] + self.global_bias

    def all_scores(self, user: State, item: State) -> torch.Tensor:
        scores = torch.addmm(user["bias"][:, None], user["vec"], item["vec"].T)  # [B, N], one pass for the dot
        return scores.add_(item["bias"][None, :] + self.global_bias)
