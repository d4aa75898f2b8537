"""NeuMF (He et al., WWW 2017): a generalised-MF branch and an MLP branch, fused by one output layer."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from recsys.embeddings.tables import TableSpec
from recsys.models.base import PairModel, State, mlp, pairwise_head, require_positive


class NeuMF(PairModel):
    """score(u, i) = w·[p_u ⊙ q_i ; MLP([m_u ; n_i])] + b.

    Each id table holds the GMF columns then the MLP columns. The MLP's first layer is split into a user and an
    item projection (W·[m_u ; n_i] = W_u m_u + W_i n_i), so full ranking projects each user and each item once
    and only the later layers run per (user, item) pair; the output layer's GMF part is a matrix product.

    Args:
        mf_dim: GMF factor dimension (RecBole default 64).
        mlp_dim: MLP embedding dimension per side (64).
        hidden: MLP layer sizes after the concatenated embeddings ([128, 64]).
        dropout: dropout before each MLP layer (0.1).
        init_std: embeddings start as N(0, init_std²) (RecBole's NeuMF: 0.01); ``None`` for Xavier-normal.
    """

    def __init__(
        self, mf_dim: int = 64, mlp_dim: int = 64, hidden: Sequence[int] = (128, 64), dropout: float = 0.1,
        init_std: float | None = 0.01,
    ) -> None:  # fmt: skip
        super().__init__()
        require_positive(mf_dim=mf_dim, mlp_dim=mlp_dim, hidden=tuple(hidden))
        self.mf_dim, self.mlp_dim, self.hidden, self.dropout = mf_dim, mlp_dim, tuple(hidden), dropout
        self.init_std = init_std

    def table(self, name: str, rows: int) -> TableSpec:
        return TableSpec(name, rows, self.mf_dim + self.mlp_dim, init_std=self.init_std, groups=(self.mf_dim, self.mlp_dim))

    def build_dense(self) -> None:
        self.input_dropout = nn.Dropout(self.dropout)
        self.first = nn.Linear(2 * self.mlp_dim, self.hidden[0])
        self.rest = nn.Sequential(nn.ReLU(), mlp(self.hidden, self.dropout))
        self.output = nn.Linear(self.mf_dim + self.hidden[-1], 1)

    def start_at(self, offset: float) -> None:
        self.output.bias.data.fill_(offset)

    def side_state(self, pooled: dict[str, torch.Tensor], side: str) -> State:
        table = pooled[side]
        gmf, mlp_in = table[:, : self.mf_dim], self.input_dropout(table[:, self.mf_dim :])
        weight = self.first.weight[:, : self.mlp_dim] if side == "user" else self.first.weight[:, self.mlp_dim :]
        projected = mlp_in @ weight.T
        if side == "item":
            projected = projected + self.first.bias
        return {"gmf": gmf, "h": projected}

    def pair_scores(self, user: State, item: State) -> torch.Tensor:
        deep = self.rest(user["h"] + item["h"])
        return self.output(torch.cat([user["gmf"] * item["gmf"], deep], dim=-1)).squeeze(-1)

    def all_scores(self, user: State, item: State) -> torch.Tensor:
        w_gmf, w_deep = self.output.weight[0, : self.mf_dim], self.output.weight[0, self.mf_dim :]
        deep = pairwise_head(user["h"], item["h"], lambda pairs: self.rest(pairs) @ w_deep)  # [B, N]
        return (user["gmf"] * w_gmf) @ item["gmf"].T + deep + self.output.bias
