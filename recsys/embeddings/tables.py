"""Embedding tables as one TorchRec `EmbeddingBagCollection`, looked up with `KeyedJaggedTensor`s, and `rows`, the
lookup of an `EmbeddingCollection` (one vector per id, as SASRec's item table).

Models never mention sharding: `DistributedModelParallel` swaps the collection for a sharded one from outside,
and every lookup (training pairs, or all items at evaluation) goes through `EmbeddingTables.lookup` or `rows`,
so the same model code runs unsharded on a CPU and sharded across GPUs.

Large tables update themselves (`FusedUpdates`): each table is a TorchRec `FusedEmbeddingBagCollection`, whose
FBGEMM table-batched kernel applies a row-wise Adagrad (or Adagrad, SGD) step inside backward to the rows the batch
touched, so a step costs what the batch touches, not what the tables hold. A dense optimiser (Adam over every row
at every step) costs in proportion to the tables: 74 ms a step with 400k users against 4.4 ms fused (MF, dim 64,
batch 2048, one thread). FBGEMM's CPU kernels (fbgemm-gpu-cpu 1.8) have no Adam ("Optimizer adam is not supported
in CPU mode"), hence row-wise Adagrad, and ignore weight decay (``weight_decay_mode`` L2 or DECOUPLE leaves a
column without gradient unchanged, tested), so fused tables train without L2.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, EmbeddingCollection, KeyedJaggedTensor, PoolingType
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.optim import RowWiseAdagrad

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


FusedOptimizer = Literal["rowwise_adagrad", "adagrad", "sgd"]
FUSED_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rowwise_adagrad": RowWiseAdagrad, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD,
}  # fmt: skip
FUSED_STATES: dict[str, tuple[str, ...]] = {"rowwise_adagrad": ("momentum1",), "adagrad": ("momentum1",), "sgd": ()}
"""The optimiser state FBGEMM keeps per table: Adagrad's sum of squared gradients (``[rows]`` row-wise, else
``[rows, width]``); SGD keeps none."""
FUSED_ROWS = 40_000
"""Total table rows from which tables update themselves by default (`FusedUpdates.min_rows`), measured by
``scripts/bench_scale.py`` (MF-BPR dim 64, batch 2048, one thread, 200k interactions, 5k items): epochs dense /
fused 1.15 / 1.43 s at 30k rows, 1.97 / 1.57 s at 55k; the lines cross near 40k."""


@dataclass(frozen=True)
class FusedUpdates:
    """Tables that update themselves in backward on the rows a batch touched (TorchRec's fused optimiser).

    Attributes:
        optimizer: ``rowwise_adagrad`` (one accumulator per row), ``adagrad`` or ``sgd`` (FBGEMM's CPU kernels).
        lr: its learning rate.
        min_rows: applies when the tables hold at least this many rows in all; dense below (0: always).
    """

    optimizer: FusedOptimizer = "rowwise_adagrad"
    lr: float = 0.03
    min_rows: int = FUSED_ROWS

    def __post_init__(self) -> None:
        if self.optimizer not in FUSED_OPTIMIZERS:
            raise ValueError(f"unknown fused optimizer {self.optimizer!r}; use one of {list(FUSED_OPTIMIZERS)}")
        if self.lr <= 0 or self.min_rows < 0:
            raise ValueError(f"fused updates need lr > 0 and min_rows >= 0, got {self.lr}, {self.min_rows}")

    def applies(self, specs: Sequence[TableSpec]) -> bool:
        return sum(s.num_embeddings for s in specs) >= self.min_rows

    def collection(self, spec: TableSpec, device: torch.device) -> FusedEmbeddingBagCollection:
        """Table ``spec`` alone in a `FusedEmbeddingBagCollection` (one FBGEMM kernel a table: a lookup then runs
        over that table only). FBGEMM needs widths in multiples of 4, so the table is ``[rows, ⌈dim/4⌉·4]`` with
        zero padding columns that lookups drop (they get no gradient and stay zero); the rest starts as
        ``spec``'s normal initialisation."""
        width = -(-spec.dim // 4) * 4
        collection = FusedEmbeddingBagCollection(
            [replace(spec.config(), embedding_dim=width)], optimizer_type=FUSED_OPTIMIZERS[self.optimizer],
            optimizer_kwargs={"lr": self.lr}, device=device,
        )  # fmt: skip
        with torch.no_grad():
            weight = collection.embedding_bags[spec.name].weight
            weight.zero_()
            nn.init.normal_(weight[:, : spec.dim], mean=0.0, std=spec.std)
        return collection


class EmbeddingTables(nn.Module):
    """Named tables; ``forward(kjt) -> {name: Tensor[B, dim]}``.

    Dense (``fused`` None, or tables smaller than ``fused.min_rows``): one `EmbeddingBagCollection` whose weights
    the task's optimiser steps. Fused: ``collection`` is ``{name: FusedEmbeddingBagCollection}`` (see
    `FusedUpdates`), stepped inside backward; its optimiser state is part of this module's state dict (keys
    ``collection.<name>.embedding_bags.<name>.momentum1``), so checkpoints and saved models keep it.
    """

    def __init__(self, specs: Sequence[TableSpec], device: torch.device | str | None = None,
                 fused: FusedUpdates | None = None) -> None:  # fmt: skip
        super().__init__()
        self.names = tuple(s.name for s in specs)
        self.specs = {s.name: s for s in specs}
        self.fused = fused if fused is not None and fused.applies(specs) else None
        device = torch.device(device or "cpu")
        self.collection: nn.Module
        if self.fused is None:
            self.collection = EmbeddingBagCollection(tables=[s.config() for s in specs], device=device)
        else:
            self.collection = nn.ModuleDict({s.name: self.fused.collection(s, device) for s in specs})
            self.register_state_dict_post_hook(_with_fused_state)
            self.register_load_state_dict_pre_hook(_load_fused_state)

    def forward(self, features: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        if self.fused is None:
            pooled = self.collection(features)
            return {name: pooled[name] for name in pooled.keys()}
        keys = features.keys()
        with _outside_inference_mode():
            parts = features.split([1] * len(keys))
            return {key: self.collection[key](part)[key][:, : self.specs[key].dim] for key, part in zip(keys, parts)}

    def local_weight(self, name: str) -> torch.Tensor | None:
        """The weight ``[rows, dim]`` of table ``name`` while the collection is dense and unsharded, for models with
        a cheaper direct formula than a lookup; None once DMP has sharded it, or for fused tables (whose updates
        need their own kernel's backward): the lookup path then applies."""
        if not isinstance(self.collection, EmbeddingBagCollection):
            return None
        return self.collection.embedding_bags[name].weight

    def fused_states(self) -> dict[str, torch.Tensor]:
        """``{state key: tensor}`` of the fused optimiser state this process holds (see `_fused_states`)."""
        out = {}
        for name, collection in self.collection.items():
            for state, tensor in _fused_states(collection, name).items():
                out[f"collection.{name}.embedding_bags.{name}.{state}"] = tensor
        return out

    def lookup(self, space: FeatureSpace, names: Sequence[str], entities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{name: Tensor[B, dim]}`` pooled embeddings of the fields ``names`` of ``entities`` (as `to_kjt`).

        Sharded (DMP swapped the collection for a sharded module), the lookup is the collection's collective
        KJT forward. Unsharded, each field is read from the collection's own `nn.EmbeddingBag` parameters
        directly (an id field as a row gather): the same parameters and numbers without building and splitting
        a KJT, which costs as much as the rest of a training step at batch 2048 (MF-BPR step 5.6 → 2.8 ms).
        """
        batch = len(next(iter(entities.values())))
        if isinstance(self.collection, EmbeddingBagCollection):
            return {name: self._pooled(space.field(name), entities, batch, self.collection.embedding_bags[name].weight)
                    for name in names}  # fmt: skip
        if self.fused is None or not all(isinstance(c, FusedEmbeddingBagCollection) for c in self.collection.values()):
            return self(to_kjt(space, names, entities))  # sharded
        if not torch.is_grad_enabled():  # nothing to update: the same rows, gathered directly (evaluation)
            return {name: self._pooled(space.field(name), entities, batch, self._fused_weight(name)) for name in names}
        return {name: self._fused_pooled(space.field(name), entities, batch) for name in names}

    def _fused_weight(self, name: str) -> torch.Tensor:
        """``[rows, dim]`` an unsharded fused table without its padding columns (a view)."""
        return self.collection[name].embedding_bags[name].weight[:, : self.specs[name].dim]

    def _pooled(self, field: Field, sides: dict[str, torch.Tensor], batch: int, weight: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` field ``field`` of ``sides`` pooled from its table's ``weight`` by row gathers."""
        entities = sides.get(field.side)
        if entities is None:  # the side was left out: empty bags, pooled to zeros
            return weight.new_zeros(batch, weight.shape[1])
        if field.is_identity:
            return F.embedding(entities, weight)
        values, lengths = field.lookup(entities.cpu().numpy())
        ids = torch.from_numpy(values).to(weight.device)
        if (lengths == 1).all():
            return F.embedding(ids, weight)
        offsets = torch.from_numpy(np.cumsum(lengths) - lengths).to(weight.device)
        return F.embedding_bag(ids, weight, offsets, mode=self.specs[field.name].pooling)

    def _fused_pooled(self, field: Field, sides: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        """``[B, dim]`` a field through its table's FBGEMM kernel (TorchRec's `_BatchedFusedEmbeddingLookups`: ids
        and offsets, a KJT's content without building one), so that backward updates the rows it read."""
        spec = self.specs[field.name]
        entities = sides.get(field.side)
        if entities is None:
            return torch.zeros(batch, spec.dim, device=self._fused_weight(field.name).device)
        if field.is_identity:
            ids, offsets = entities, torch.arange(batch + 1, device=entities.device)
        else:
            values, lengths = field.lookup(entities.cpu().numpy())
            ids = torch.from_numpy(values).to(entities.device)
            offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)])).to(entities.device)
        pooled = self.collection[field.name]._emb_modules[0](ids, offsets, None)  # [B, width]
        return pooled if pooled.shape[1] == spec.dim else pooled[:, : spec.dim]


@contextmanager
def _outside_inference_mode() -> Iterator[None]:
    """FBGEMM registers its training kernels for autograd only, so they fail under `torch.inference_mode` (as
    Lightning validates: "Could not run 'fbgemm::split_embedding_codegen_lookup_rowwise_adagrad_function_pt2' with
    arguments from the 'CPU' backend"). Step out of it, without gradients, for a lookup that must use the kernel."""
    if not torch.is_inference_mode_enabled():
        yield
        return
    with torch.inference_mode(False), torch.no_grad():
        yield


def _fused_states(collection: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """``{"momentum1": tensor}``: the fused optimiser's state of table ``name`` that this process holds, the tensor
    FBGEMM updates (writing into it restores the state). All of it unsharded, and on the rank holding a table-wise
    shard (the only fused sharding on CPU, see `recsys.distributed.plan_for`); nothing on the other ranks."""
    if isinstance(collection, FusedEmbeddingBagCollection):
        tables = collection._emb_modules[0]._emb_module.split_optimizer_states()  # [] for SGD, else one list a table
        return {f"momentum{i + 1}": tensor for table in tables for i, tensor in enumerate(table)}
    held = collection.fused_optimizer.state_dict()["state"].get(f"embedding_bags.{name}.weight", {})
    return {key.rsplit(".", 1)[-1]: value.local_shards()[0].tensor for key, value in held.items() if value.local_shards()}


def _with_fused_state(module: EmbeddingTables, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict hook: add the fused optimiser state this process holds."""
    for key, tensor in module.fused_states().items():
        state[prefix + key] = tensor.detach()


def _load_fused_state(module: EmbeddingTables, state: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                      missing: list[str], unexpected: list[str], errors: list[str]) -> None:  # fmt: skip
    """Load-state-dict pre-hook: copy the fused optimiser state into the tensors FBGEMM updates (the rank holding a
    table's shard; other ranks drop it), and take its keys out of what the module's own loading sees."""
    assert module.fused is not None
    held = module.fused_states()
    for name in module.names:
        for state_name in FUSED_STATES[module.fused.optimizer]:
            key = f"collection.{name}.embedding_bags.{name}.{state_name}"
            value: torch.Tensor | None = state.pop(prefix + key, None)
            if value is None:
                missing.append(prefix + key)
            elif key in held:
                if tuple(value.shape) != tuple(held[key].shape):
                    errors.append(f"{prefix + key}: checkpoint shape {tuple(value.shape)} != {tuple(held[key].shape)}")
                else:
                    held[key].copy_(value)


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
