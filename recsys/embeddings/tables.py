"""Embedding tables as one TorchRec `EmbeddingBagCollection`, looked up with `KeyedJaggedTensor`s.

Models never mention sharding: `DistributedModelParallel` swaps the collection for a sharded one from outside,
and every lookup (training pairs, or all items at evaluation) goes through the collection's forward, so the
same model code runs unsharded on a CPU and sharded across GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

from recsys.data.features import FeatureSpace


@dataclass(frozen=True)
class TableSpec:
    """One embedding table.

    Attributes:
        name: table name (also the feature name looked up in it).
        num_embeddings: rows.
        dim: columns.
        pooling: how a multi-valued bag is reduced (``mean`` or ``sum``).
    """

    name: str
    num_embeddings: int
    dim: int
    pooling: str = "mean"

    def config(self) -> EmbeddingBagConfig:
        # Xavier-normal scale of the whole table, so a shard of it is drawn from the same distribution.
        std = math.sqrt(2.0 / (self.num_embeddings + self.dim))
        return EmbeddingBagConfig(
            name=self.name,
            embedding_dim=self.dim,
            num_embeddings=self.num_embeddings,
            feature_names=[self.name],
            pooling=PoolingType.MEAN if self.pooling == "mean" else PoolingType.SUM,
            init_fn=partial(nn.init.normal_, mean=0.0, std=std),
        )


class EmbeddingTables(nn.Module):
    """An `EmbeddingBagCollection` over named tables; ``forward(kjt) -> {name: Tensor[B, dim]}``."""

    def __init__(self, specs: Sequence[TableSpec], device: torch.device | str | None = None) -> None:
        super().__init__()
        self.names = tuple(s.name for s in specs)
        self.collection = EmbeddingBagCollection(tables=[s.config() for s in specs], device=torch.device(device or "cpu"))

    def forward(self, features: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        pooled = self.collection(features)
        return {name: pooled[name] for name in pooled.keys()}


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
