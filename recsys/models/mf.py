"""Matrix factorisation: score(u, i) = p_u · q_i + b_u + b_i + g."""

from __future__ import annotations

import torch
from torch import nn

from recsys.embeddings.tables import TableSpec
from recsys.models.base import PairModel, State, require_positive


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
        require_positive(embedding_dim=embedding_dim)
        self.embedding_dim, self.biases = embedding_dim, biases

    def table(self, name: str, rows: int) -> TableSpec:
        return TableSpec(name, rows, self.embedding_dim + int(self.biases), scalars=int(self.biases))

    def build_dense(self) -> None:
        self.global_bias = nn.Parameter(torch.zeros(1), requires_grad=self.biases)
        # A user row [p_u, b_u] becomes [p_u, 1] as `row * keep + last` and its bias is `row @ last`, so that
        # [p_u, 1] · [q_i, b_i] = p_u · q_i + b_i is one dot product with the item's whole row. Column slices would
        # do the same, but their backward zero-fills a full [B, dim + 1] gradient per slice (a third of an
        # MF-BPR step at batch 2048).
        width = self.embedding_dim + int(self.biases)
        last = torch.zeros(width)
        last[-1] = float(self.biases)
        self.register_buffer("_last", last, persistent=False)
        self.register_buffer("_keep", 1.0 - last, persistent=False)

    def start_at(self, offset: float) -> None:
        if self.biases:
            self.global_bias.data.fill_(offset)

    def side_state(self, pooled: dict[str, torch.Tensor], side: str) -> State:
        """User: ``vec [B, dim + 1] = [p_u, 1]`` and ``bias [B] = b_u``; item: ``vec = [q_i, b_i]`` (without
        biases: the factors alone, zero user bias)."""
        row = pooled[side]  # [B, dim (+1)]
        if side == "item":
            return {"vec": row}
        if not self.biases:
            return {"vec": row, "bias": row.new_zeros(len(row))}
        return {"vec": row * self._keep + self._last, "bias": row @ self._last}

    def pair_scores(self, user: State, item: State) -> torch.Tensor:
        return (user["vec"] * item["vec"]).sum(-1) + user["bias"] + self.global_bias

    def score_margins(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """u · (q_i − q_j) + (b_i − b_j), the user encoded once and each item once. Over a dense unsharded item
        table each difference is one bag of the table weighted +1 / −1, half the item work of scoring both sides
        (an MF-BPR step at batch 2048 drops by about a third); fused or sharded tables look the items up."""
        batch, k = negatives.shape
        user = self.encode("user", users)["vec"]  # [B, dim (+1)]: [p_u, 1] pairs with [q_i − q_j, b_i − b_j]
        table = self.embeddings.local_weight("item")
        if table is None:
            items = self.encode("item", torch.cat([positives[:, None], negatives], dim=1).reshape(-1))["vec"]
            items = items.view(batch, k + 1, -1)  # [B, 1 + k, dim (+1)], the positive first
            return ((items[:, :1] - items[:, 1:]) * user[:, None, :]).sum(-1)
        ids = torch.stack([positives[:, None].expand(batch, k), negatives], dim=2).reshape(-1)  # [B·k·2]: i, j, ...
        signs = torch.tensor([1.0, -1.0], device=table.device, dtype=table.dtype).repeat(batch * k)
        offsets = torch.arange(0, 2 * batch * k, 2, device=table.device)
        differences = nn.functional.embedding_bag(ids, table, offsets, mode="sum", per_sample_weights=signs)
        return (differences.view(batch, k, -1) * user[:, None, :]).sum(-1)

    def dot_vectors(self, item: State) -> torch.Tensor:
        """``[N, dim (+1)]`` ``[q_i, b_i]``, which the user's ``[p_u, 1]`` scores."""
        return item["vec"]

    def all_scores(self, user: State, item: State) -> torch.Tensor:
        return torch.addmm((user["bias"] + self.global_bias)[:, None], user["vec"], item["vec"].T)  # [B, N]
