"""Embedding tables as one TorchRec `EmbeddingBagCollection`, looked up with `KeyedJaggedTensor`s, and `rows`, the
lookup of an `EmbeddingCollection` (one vector per id, as SASRec's item table).

Models never mention sharding: `DistributedModelParallel` swaps the collection for a sharded one from outside,
and every lookup (training pairs, or all items at evaluation) goes through `EmbeddingTables.lookup` or `rows`,
so the same model code runs unsharded on a CPU and sharded across GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, EmbeddingCollection, KeyedJaggedTensor, PoolingType

from recsys.data.features import Field, FeatureSpace


@dataclass(frozen=True)
class TableSpec:
    """One embedding table.

    Attributes:
        name: table name (also the feature name looked up in it).
        num_embeddings: rows.
        dim: columns.
        pooling: how a multi-valued bag is reduced (``mean`` or ``sum``).
        init_std: standard deviation of the normal initialisation; ``None`` is the Xavier-normal scale of the
            whole table (so a shard of it is drawn from the same distribution).
        scalars: the last ``scalars`` columns are scalars (MF's bias, FM's linear weight), not embedding
            dimensions: dimension search and mixed-dimension tables keep them for every id.
        groups: widths of the groups the vector columns form, in order (NeuMF's GMF | MLP); one group when None.
            "Leading dimensions" (`dimension_ranks`) are taken from every group in proportion.
    """

    name: str
    num_embeddings: int
    dim: int
    pooling: str = "mean"
    init_std: float | None = None
    scalars: int = 0
    groups: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.scalars < self.dim:
            raise ValueError(f"table {self.name!r}: scalars must be in [0, dim), got {self.scalars} of {self.dim}")
        if self.groups is not None and (sum(self.groups) != self.vector_dim or min(self.groups) < 1):
            raise ValueError(f"table {self.name!r}: groups {self.groups} must be positive and sum to {self.vector_dim}")

    @property
    def vector_dim(self) -> int:
        """Embedding dimensions (the columns before the scalars)."""
        return self.dim - self.scalars

    @property
    def std(self) -> float:
        """The initialisation's standard deviation."""
        return self.init_std if self.init_std is not None else math.sqrt(2.0 / (self.num_embeddings + self.dim))

    def dimension_ranks(self) -> np.ndarray:
        """``[vector_dim]`` the order in which "leading dimensions" are kept: each column's relative position in
        its group, so the first ``d`` by rank take from every group in proportion to its width."""
        groups = self.groups or (self.vector_dim,)
        position = np.concatenate([(np.arange(g) + 0.5) / g for g in groups])
        ranks = np.empty(self.vector_dim, dtype=np.int64)
        ranks[np.argsort(position, kind="stable")] = np.arange(self.vector_dim)
        return ranks

    def config(self) -> EmbeddingBagConfig:
        return EmbeddingBagConfig(
            name=self.name,
            embedding_dim=self.dim,
            num_embeddings=self.num_embeddings,
            feature_names=[self.name],
            pooling=PoolingType.MEAN if self.pooling == "mean" else PoolingType.SUM,
            init_fn=partial(nn.init.normal_, mean=0.0, std=self.std),
        )


class EmbeddingTables(nn.Module):
    """An `EmbeddingBagCollection` over named tables; ``forward(kjt) -> {name: Tensor[B, dim]}``."""

    def __init__(self, specs: Sequence[TableSpec], device: torch.device | str | None = None) -> None:
        super().__init__()
        self.names = tuple(s.name for s in specs)
        self.specs = {s.name: s for s in specs}
        self.collection = EmbeddingBagCollection(tables=[s.config() for s in specs], device=torch.device(device or "cpu"))

    def forward(self, features: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        pooled = self.collection(features)
        return {name: pooled[name] for name in pooled.keys()}

    def local_weight(self, name: str) -> torch.Tensor | None:
        """The weight ``[rows, dim]`` of table ``name`` while the collection is unsharded, for models with a
        cheaper direct formula than a lookup; None once DMP has sharded it (the lookup path then applies)."""
        if not isinstance(self.collection, EmbeddingBagCollection):
            return None
        return self.collection.embedding_bags[name].weight

    def lookup(self, space: FeatureSpace, names: Sequence[str], entities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{name: Tensor[B, dim]}`` pooled embeddings of the fields ``names`` of ``entities`` (as `to_kjt`).

        Sharded (DMP swapped the collection for a sharded module), the lookup is the collection's collective
        KJT forward. Unsharded, each field is read from the collection's own `nn.EmbeddingBag` parameters
        directly (an id field as a row gather): the same parameters and numbers without building and splitting
        a KJT, which costs as much as the rest of a training step at batch 2048 (MF-BPR step 5.6 → 2.8 ms).
        """
        if not isinstance(self.collection, EmbeddingBagCollection):
            return self(to_kjt(space, names, entities))
        batch = len(next(iter(entities.values())))
        return {name: self._pooled(space.field(name), entities, batch) for name in names}

    def _pooled(self, field: Field, sides: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        bag = self.collection.embedding_bags[field.name]
        entities = sides.get(field.side)
        if entities is None:  # the side was left out: empty bags, pooled to zeros
            return bag.weight.new_zeros(batch, bag.embedding_dim)
        if field.is_identity:
            return F.embedding(entities, bag.weight)
        values, lengths = field.lookup(entities.cpu().numpy())
        ids = torch.from_numpy(values).to(bag.weight.device)
        if (lengths == 1).all():
            return F.embedding(ids, bag.weight)
        offsets = torch.from_numpy(np.cumsum(lengths) - lengths).to(bag.weight.device)
        return F.embedding_bag(ids, bag.weight, offsets, mode=bag.mode)


def rows(collection: nn.Module, name: str, ids: torch.Tensor) -> torch.Tensor:
    """``[*ids.shape, dim]`` the rows ``ids`` of table ``name`` (looked up as the feature of the same name) of an
    `EmbeddingCollection`, or of the sharded module that `DistributedModelParallel` put in its place.

    Unsharded, a row gather from the table's weight (the same parameter, without building and splitting a KJT).
    Sharded, the collection's collective KJT forward, one id per bag: every rank must call it equally often, and
    bags of several ids break it (fbgemm's CPU dense kernel returns one row per bag, not one per id).
    """
    if isinstance(collection, EmbeddingCollection):
        return F.embedding(ids, collection.embeddings[name].weight)
    flat = ids.reshape(-1)
    lengths = torch.ones_like(flat, dtype=torch.int32)
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=[name], values=flat, lengths=lengths)
    return collection(kjt)[name].values().reshape(*ids.shape, -1)


def to_kjt(space: FeatureSpace, names: Sequence[str], entities: dict[str, torch.Tensor]) -> KeyedJaggedTensor:
    """Feature ids of a batch as a `KeyedJaggedTensor`.

    Args:
        space: the dataset's feature fields.
        names: fields to include, in table order.
        entities: ``{"user": Tensor[B], "item": Tensor[B]}`` codes; a field of side ``s`` reads ``entities[s]``.
            A side left out gets empty bags (pooled to zeros), so one side can be encoded alone.

    Returns:
        KJT with ``keys == names``, stride ``B``, one bag per (field, row).
    """
    present = next(iter(entities.values()))
    batch = len(present)
    values, lengths = [], []
    for name in names:
        field = space.field(name)
        if field.side in entities:
            ids, lens = field.lookup(entities[field.side].cpu().numpy())
        else:
            ids, lens = np.zeros(0, dtype=np.int64), np.zeros(batch, dtype=np.int64)
        values.append(ids)
        lengths.append(lens)
    return KeyedJaggedTensor.from_lengths_sync(
        keys=list(names),
        values=torch.from_numpy(np.concatenate(values)).to(present.device),
        lengths=torch.from_numpy(np.concatenate(lengths).astype(np.int32)).to(present.device),
    )
