"""Factorisation machines over user/item ids and side features: FM (Rendle 2010) and DeepFM (Guo et al. 2017)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from recsys.embeddings.tables import TableSpec
from recsys.models.base import PairModel, State, concat_fields, mlp, pairwise_head, require_positive


class FM(PairModel):
    """score = g + Σ_f w_f + Σ_{f<f'} ⟨v_f, v_f'⟩ over the fields of both sides.

    Each field's table holds ``embedding_dim`` factor columns and one linear-weight column; a multi-valued field
    (genres) is one field whose embedding is the mean of its bag. The pairwise term splits into a within-user,
    a within-item and a cross term ⟨Σ_user v, Σ_item v⟩, so full ranking is one matrix product.

    Args:
        embedding_dim: factor dimension (RecBole default 10).
    """

    uses_side_features = True

    def __init__(self, embedding_dim: int = 10) -> None:
        super().__init__()
        require_positive(embedding_dim=embedding_dim)
        self.embedding_dim = embedding_dim

    def table(self, name: str, rows: int) -> TableSpec:
        return TableSpec(name, rows, self.embedding_dim + 1, pooling="mean", scalars=1)

    def build_dense(self) -> None:
        self.global_bias = nn.Parameter(torch.zeros(1))

    def start_at(self, offset: float) -> None:
        self.global_bias.data.fill_(offset)

    def side_state(self, pooled: dict[str, torch.Tensor], side: str) -> State:
        names = self.user_fields if side == "user" else self.item_fields
        d = self.embedding_dim
        vectors = torch.stack([pooled[name][:, :d] for name in names], dim=1)  # [B, F_side, d]
        total = vectors.sum(1)
        within = 0.5 * (total.pow(2).sum(-1) - vectors.pow(2).sum((1, 2)))
        linear = sum(pooled[name][:, d] for name in names)
        return {"sum": total, "self": within + linear}

    def pair_scores(self, user: State, item: State) -> torch.Tensor:
        return self.global_bias + user["self"] + item["self"] + (user["sum"] * item["sum"]).sum(-1)

    def all_scores(self, user: State, item: State) -> torch.Tensor:
        return self.global_bias + user["self"][:, None] + item["self"][None, :] + user["sum"] @ item["sum"].T

    def dot_vectors(self, item: State) -> torch.Tensor | None:
        """``[N, d + 1]`` ``[Σ v_f, item's own terms]``, which the user's ``[Σ v_f, 1]`` scores."""
        return torch.cat([item["sum"], item["self"][:, None]], dim=1)


class DeepFM(FM):
    """FM plus an MLP over the concatenated field embeddings (shared with the FM part), summed as logits.

    The MLP's first layer splits into user-field and item-field projections, as in `NeuMF`.

    Args:
        embedding_dim: factor dimension (RecBole default 10).
        hidden: MLP layer sizes ([128, 128, 128]).
        dropout: dropout before each MLP layer (0.2).
    """

    def __init__(self, embedding_dim: int = 10, hidden: Sequence[int] = (128, 128, 128), dropout: float = 0.2) -> None:
        super().__init__(embedding_dim)
        require_positive(hidden=tuple(hidden))
        self.hidden, self.dropout = tuple(hidden), dropout

    def build_dense(self) -> None:
        super().build_dense()
        d = self.embedding_dim
        self.n_user_columns = d * len(self.user_fields)
        self.input_dropout = nn.Dropout(self.dropout)
        self.first = nn.Linear(d * (len(self.user_fields) + len(self.item_fields)), self.hidden[0])
        self.rest = nn.Sequential(nn.ReLU(), mlp(self.hidden, self.dropout), nn.Linear(self.hidden[-1], 1))

    def side_state(self, pooled: dict[str, torch.Tensor], side: str) -> State:
        state = super().side_state(pooled, side)
        names = self.user_fields if side == "user" else self.item_fields
        flat = self.input_dropout(concat_fields(pooled, names, slice(0, self.embedding_dim)))
        cut = self.n_user_columns
        weight = self.first.weight[:, :cut] if side == "user" else self.first.weight[:, cut:]
        state["h"] = flat @ weight.T + (self.first.bias if side == "item" else 0.0)
        return state

    def pair_scores(self, user: State, item: State) -> torch.Tensor:
        return super().pair_scores(user, item) + self.rest(user["h"] + item["h"]).squeeze(-1)

    def dot_vectors(self, item: State) -> torch.Tensor | None:
        return None  # the MLP over both sides is not a dot product

    def all_scores(self, user: State, item: State) -> torch.Tensor:
        deep = pairwise_head(user["h"], item["h"], lambda pairs: self.rest(pairs).squeeze(-1))
        return super().all_scores(user, item) + deep
