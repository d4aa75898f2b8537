"""SASRec (Kang & McAuley, 2018): a causal self-attention encoder over a user's item sequence whose output at each
position scores every item by a dot product with the (shared) item table.

The item table is a TorchRec `EmbeddingCollection` (unpooled: one vector per sequence position), looked up through
`recsys.embeddings.tables.rows`, so the same model runs unsharded or sharded. Row ``n_items`` is the padding id. The
encoder is RecBole's post-LayerNorm transformer: item + learned position embedding → LayerNorm → dropout →
``layers`` × [causal multi-head self-attention → dropout → residual LayerNorm → feed-forward → dropout →
residual LayerNorm]. Defaults follow RecBole 1.2.1 and
DEALRec's surrogate (hidden 64, 2 layers, 2 heads, dropout 0.5, max length 50, N(0, 0.02) initialisation).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import nn
from torchrec import EmbeddingCollection, EmbeddingConfig

from recsys.embeddings.tables import rows


class Dropout(nn.Module):
    """Inverted dropout from a uniform draw: on CPU, torch's ``bernoulli_`` (behind ``nn.Dropout``) costs about 4×
    a ``rand_like``, and dropout was a quarter of SASRec's training step."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x).ge_(self.p)
        return x * keep * (1.0 / (1.0 - self.p))


class Block(nn.Module):
    """One post-LayerNorm transformer layer, as RecBole's ``TransformerLayer``: multi-head self-attention (dropout
    on the attention weights) → output projection → dropout → LayerNorm(x + ·); feed-forward (Linear → activation
    → Linear) → dropout → LayerNorm(x + ·)."""

    def __init__(self, d: int, heads: int, inner: int, dropout: float, attention_dropout: float, activation: str) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.attention_dropout = Dropout(attention_dropout)
        self.attention_norm = nn.LayerNorm(d, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(d, inner), nn.GELU() if activation == "gelu" else nn.ReLU(), nn.Linear(inner, d))
        self.hidden_dropout = Dropout(dropout)
        self.ff_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x [B, L, d]``, additive attention ``bias [B, 1, L, L]`` (0 allowed, -10000 blocked) → ``[B, L, d]``."""
        batch, length, d = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # [B, H, L, dh]
        weights = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5 + bias, dim=-1)  # [B, H, L, L]
        context = (self.attention_dropout(weights) @ v).transpose(1, 2).reshape(batch, length, d)
        x = self.attention_norm(x + self.hidden_dropout(self.out(context)))
        return self.ff_norm(x + self.hidden_dropout(self.ff(x)))


class SASRec(nn.Module):
    """Sequence encoder + item table. Build with `build(n_items)` before use (the catalogue size comes from data).

    Args:
        hidden_size: embedding and model width.
        layers: transformer layers.
        heads: attention heads.
        inner_size: feed-forward width.
        dropout: hidden (embedding, residual) dropout.
        attention_dropout: dropout on attention weights.
        max_len: longest history read (older items are cut; shorter histories are left-padded).
        activation: feed-forward activation.
        init_std: standard deviation of the normal initialisation of embeddings and linear weights.
    """

    uses_side_features: bool = False

    def __init__(
        self,
        hidden_size: int = 64,
        layers: int = 2,
        heads: int = 2,
        inner_size: int = 256,
        dropout: float = 0.5,
        attention_dropout: float = 0.5,
        max_len: int = 50,
        activation: Literal["gelu", "relu"] = "gelu",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by heads ({heads})")
        self.hidden_size, self.layers, self.heads, self.inner_size = hidden_size, layers, heads, inner_size
        self.dropout, self.attention_dropout, self.max_len = dropout, attention_dropout, max_len
        self.activation, self.init_std = activation, init_std
        self.n_items: int | None = None

    def build(self, n_items: int) -> None:
        """Create the item table (``n_items + 1`` rows, the last is padding) and the encoder, once."""
        if self.n_items is not None:
            if self.n_items != n_items:
                raise ValueError(f"SASRec was built for {self.n_items} items, the data has {n_items}")
            return
        self.n_items = n_items
        d = self.hidden_size
        self.item_table = EmbeddingCollection(
            tables=[EmbeddingConfig(name="item", embedding_dim=d, num_embeddings=n_items + 1, feature_names=["item"],
                                    init_fn=partial(nn.init.normal_, mean=0.0, std=self.init_std))],  # fmt: skip
            device=torch.device("cpu"),
        )
        self.positions = nn.Embedding(self.max_len, d)
        self.input_norm = nn.LayerNorm(d, eps=1e-12)
        self.input_dropout = Dropout(self.dropout)
        self.blocks = nn.ModuleList(
            Block(d, self.heads, self.inner_size, self.dropout, self.attention_dropout, self.activation)
            for _ in range(self.layers)
        )
        for module in [self.positions, *self.blocks.modules()]:
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=self.init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    @property
    def pad(self) -> int:
        assert self.n_items is not None, "call build(n_items) first"
        return self.n_items

    # ------------------------------------------------------------------------------------------ lookups
    def embed_items(self, ids: torch.Tensor) -> torch.Tensor:
        """``[*ids.shape, d]`` item vectors of ``ids`` from the item table."""
        return rows(self.item_table, "item", ids)

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]`` every (non-padding) item's vector: a lookup of all ids, like any other."""
        return self.embed_items(torch.arange(self.pad, device=self.positions.weight.device))

    # ------------------------------------------------------------------------------------------ encoder
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, L, d]`` hidden state at every position of left-padded ``inputs`` ``[B, L]`` (``L <= max_len``);
        position t sees positions ≤ t that are not padding."""
        batch, length = inputs.shape
        if length > self.max_len:
            raise ValueError(f"sequences of length {length} exceed max_len {self.max_len}")
        real = inputs != self.pad  # [B, L]
        positions = torch.arange(self.max_len - length, self.max_len, device=inputs.device)  # right-aligned
        x = self.embed_items(inputs) + self.positions(positions)[None]
        x = self.input_dropout(self.input_norm(x))
        causal = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=inputs.device)
        allowed = causal[None] & (real[:, None, :] | eye[None])  # [B, L, L]; a padded query sees itself only
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, -10000.0)[:, None]
        for block in self.blocks:
            x = block(x, bias)
        return x

    def last_state(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` the hidden state at the last position (the user's representation for the next item)."""
        return self.forward(inputs)[:, -1]
