"""`PairModel`: an `nn.Module` that scores (user, item) pairs from their feature fields through TorchRec tables.

Every model splits into a user side and an item side that meet in `pair_scores` (training, one score per row)
and `all_scores` (full ranking, every item for a batch of users). The split lets full ranking encode each
item once per evaluation instead of once per (user, item) pair, and keeps the model sharding-agnostic: both
sides are plain lookups through the model's `EmbeddingTables`, sharded or not.

Models are configured by hyperparameters and built against a dataset's `FeatureSpace` by `build`, so a YAML
config or an Optuna trial can create one before the data is known.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import torch
from torch import nn
from torchrec import KeyedJaggedTensor

from recsys.data.features import FeatureSpace
from recsys.embeddings.tables import EmbeddingTables, FusedUpdates, TableSpec, to_kjt

State = dict[str, torch.Tensor]


def require_positive(**sizes: int | Sequence[int]) -> None:
    """Refuse a non-positive size (``embedding_dim=0`` would train a model of empty tables), naming the argument."""
    for name, value in sizes.items():
        values = value if isinstance(value, (tuple, list)) else (value,)
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be a positive integer{' (each)' if isinstance(value, (tuple, list)) else ''}, got {value!r}")


class PairModel(nn.Module):
    """Base of the latent-factor models. Subclasses define their tables, side encodings and interactions.

    Attributes set by `build`: ``space``, ``user_fields``, ``item_fields``, ``embeddings``.
    """

    uses_side_features: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.space: FeatureSpace | None = None

    # ------------------------------------------------------------------------------------------ building
    def build(self, space: FeatureSpace, fused: FusedUpdates | None = None) -> None:
        """Create the tables and dense layers for ``space`` (called once, before training or loading); the tables
        update themselves in backward where ``fused`` applies to them (see `EmbeddingTables`), else dense."""
        if self.space is not None:
            return
        self.space = space
        fields = space.fields if self.uses_side_features else tuple(f for f in space.fields if f.name in ("user", "item"))
        self.user_fields = tuple(f.name for f in fields if f.side == "user")
        self.item_fields = tuple(f.name for f in fields if f.side == "item")
        self.embeddings = EmbeddingTables([self.table(f.name, f.cardinality) for f in fields], fused=fused)
        self.build_dense()

    @property
    def field_names(self) -> tuple[str, ...]:
        return self.user_fields + self.item_fields

    @abstractmethod
    def table(self, name: str, rows: int) -> TableSpec:
        """The embedding table of one field."""

    def build_dense(self) -> None:
        """Create dense (non-embedding) layers; fields are known by now."""

    def start_at(self, offset: float) -> None:
        """Start every score at ``offset`` (a regression target's mean) through the model's output bias; a model
        without one keeps its scores."""

    # ------------------------------------------------------------------------------------------ scoring
    @abstractmethod
    def side_state(self, pooled: dict[str, torch.Tensor], side: str) -> State:
        """Encode one side from its pooled field embeddings (``{field: Tensor[B, dim]}``)."""

    @abstractmethod
    def pair_scores(self, user: State, item: State) -> torch.Tensor:
        """``[B]`` scores of row-aligned users and items."""

    @abstractmethod
    def all_scores(self, user: State, item: State) -> torch.Tensor:
        """``[B, N]`` scores of ``B`` users against ``N`` items."""

    def dot_vectors(self, item: State) -> torch.Tensor | None:
        """``[N, d]`` item vectors v_i such that every user's `all_scores` are u · v_i plus a per-user constant, for
        some user vector u (fold-in solves for it; similar items compare them); None where scores are not a dot
        product (a nonlinear head)."""
        return None

    def forward(self, features: KeyedJaggedTensor) -> torch.Tensor:
        """Scores ``[B]`` of the (user, item) rows in ``features`` (keys ``field_names``, stride ``B``)."""
        pooled = self.embeddings(features)
        return self.pair_scores(self.side_state(pooled, "user"), self.side_state(pooled, "item"))

    # ------------------------------------------------------------------------------------------ helpers
    def features(self, users: torch.Tensor | None = None, items: torch.Tensor | None = None) -> KeyedJaggedTensor:
        """KJT of all the model's fields for aligned ``users`` / ``items``; a side left out gets empty bags."""
        assert self.space is not None, "build(space) first"
        entities = {side: ids for side, ids in (("user", users), ("item", items)) if ids is not None}
        return to_kjt(self.space, self.field_names, entities)

    def lookup(self, entities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pooled embeddings ``{field: Tensor[B, dim]}`` of ``{"user": codes, "item": codes}`` (either side may be
        left out: its fields pool to zeros), through the (possibly sharded) tables."""
        assert self.space is not None, "build(space) first"
        return self.embeddings.lookup(self.space, self.field_names, entities)

    def encode(self, side: str, ids: torch.Tensor) -> State:
        """State of ``ids`` on one side."""
        return self.side_state(self.lookup({side: ids}), side)

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B]`` scores of aligned code tensors."""
        pooled = self.lookup({"user": users, "item": items})
        return self.pair_scores(self.side_state(pooled, "user"), self.side_state(pooled, "item"))

    def score_candidates(self, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` scores of each user against its own ``C`` candidate items (``candidates [B, C]``).

        Each user is encoded once and each candidate once, so a positive with ``k`` sampled negatives costs
        ``B + B(k+1)`` lookups instead of ``2B(k+1)`` pair lookups.
        """
        n = candidates.shape[1]
        user = self.encode("user", users)
        item = self.encode("item", candidates.reshape(-1))
        repeated = {key: value.repeat_interleave(n, dim=0) for key, value in user.items()}
        return self.pair_scores(repeated, item).view(len(users), n)

    def score_margins(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` margins s(u, i) − s(u, j) of each user's positive ``positives [B]`` over its negatives
        ``negatives [B, k]`` (what pairwise objectives such as BPR need)."""
        scores = self.score_candidates(users, torch.cat([positives[:, None], negatives], dim=1))
        return scores[:, :1] - scores[:, 1:]


PAIR_BLOCK_ELEMENTS = 1 << 19
"""Elements of one ``[users, items, hidden]`` block in `pairwise_head` (2 MiB of float32: stays in cache)."""


def pairwise_head(user_h: torch.Tensor, item_h: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """``head(user_h[:, None] + item_h[None])`` as ``[B, N]``, a few users at a time.

    The per-pair MLP of full ranking is memory-bound: computing it for blocks of users small enough to stay in
    cache is several times faster than one ``[B, N, hidden]`` tensor (measured on NeuMF, ML-100k).
    """
    rows = max(1, PAIR_BLOCK_ELEMENTS // (item_h.shape[0] * item_h.shape[1]))
    return torch.cat([head(block[:, None, :] + item_h[None, :, :]) for block in user_h.split(rows)])


def mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    """Dropout → Linear → ReLU per layer (RecBole's ``MLPLayers``), on ``[..., sizes[0]]`` inputs."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Dropout(dropout), nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers)


def concat_fields(pooled: dict[str, torch.Tensor], names: Sequence[str], columns: slice = slice(None)) -> torch.Tensor:
    """``[B, Σ dims]``: the ``columns`` of each field's pooled embedding, concatenated in ``names`` order."""
    return torch.cat([pooled[name][:, columns] for name in names], dim=1)
