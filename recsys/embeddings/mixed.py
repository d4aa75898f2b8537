"""Per-block embedding layouts: DNIS's searched tables and the mixed-dimension tables a search (or a fixed rule
such as MDE) exports.

Both stand in for `EmbeddingTables` inside a `PairModel` (``model.embeddings``) and return the same pooled
``{field: Tensor[B, dim]}``, so the model's code does not change:

- `SearchedTables`: the full dense tables, each looked-up row's embedding dimensions multiplied by its frequency
  block's `SoftSelection` weights (and by a 0/1 ``keep`` mask once pruned); the scalar columns pass unweighted.
- `MixedDimTables`: one TorchRec table per (field, frequency block) holding only that block's kept dimensions (plus
  the scalar columns), scattered back into the model's width at lookup. Rows of different blocks therefore have
  different widths: the saving is real in memory and on disk, and the tables shard like any others.

Both apply to every lookup path (pairs, candidates, all items) because models only read embeddings through
`lookup` (their ``local_weight`` fast paths see None and fall back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, KeyedJaggedTensor

from recsys.data.features import FeatureSpace
from recsys.embeddings.blocks import FrequencyBlocks
from recsys.embeddings.selection import SelectionMode, SoftSelection
from recsys.embeddings.tables import EmbeddingTables, TableSpec


@dataclass(frozen=True)
class FieldLayout:
    """The embedding dimensions each frequency block of one field keeps.

    Attributes:
        blocks: the field's frequency blocks.
        columns: per block, the sorted indices of the kept vector columns (scalar columns are always kept).
    """

    blocks: FrequencyBlocks
    columns: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if len(self.columns) != self.blocks.n_blocks:
            raise ValueError(f"{len(self.columns)} column sets for {self.blocks.n_blocks} blocks")

    @property
    def dims(self) -> tuple[int, ...]:
        """Kept embedding dimensions per block."""
        return tuple(len(c) for c in self.columns)

    def params(self, spec: TableSpec) -> int:
        """Table entries this layout stores for ``spec``'s field."""
        return int(sum(n * (d + spec.scalars) for n, d in zip(self.blocks.sizes, self.dims) if d + spec.scalars))

    @classmethod
    def leading(cls, blocks: FrequencyBlocks, spec: TableSpec, dims: Sequence[int]) -> FieldLayout:
        """Each block keeps its first ``dims[b]`` dimensions by `TableSpec.dimension_ranks` (MDE, uniform, random)."""
        ranks = spec.dimension_ranks()
        return cls(blocks, tuple(np.flatnonzero(ranks < d) for d in dims))


def pooled_rows(rows: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[B, dim]`` the bags of ``rows [nnz, dim]`` (consecutive, ``lengths [B]`` each), summed or averaged."""
    if bool((lengths == 1).all()):
        return rows
    bag = torch.repeat_interleave(torch.arange(len(lengths), device=rows.device), lengths)
    summed = rows.new_zeros(len(lengths), rows.shape[1]).index_add(0, bag, rows)
    return summed / lengths.clamp(min=1)[:, None].to(rows.dtype) if pooling == "mean" else summed


class _FieldLookups(nn.Module):
    """Lookups of fields whose rows are computed per id (`_pooled`), from entity codes or from a model's KJT."""

    specs: dict[str, TableSpec]

    def lookup(self, space: FeatureSpace, names: Sequence[str], entities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{name: Tensor[B, dim]}`` as `EmbeddingTables.lookup` (a side left out pools to zeros)."""
        batch = len(next(iter(entities.values())))
        out = {}
        for name in names:
            field, spec = space.field(name), self.specs[name]
            codes = entities.get(field.side)
            if codes is None:
                out[name] = torch.zeros(batch, spec.dim, device=self._device())
            elif field.is_identity:
                out[name] = self._pooled(name, codes, torch.ones_like(codes))
            else:
                values, lengths = field.lookup(codes.cpu().numpy())
                out[name] = self._pooled(name, torch.from_numpy(values).to(codes.device), torch.from_numpy(lengths).to(codes.device))
        return out

    def forward(self, features: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        """``{key: Tensor[B, dim]}`` of a model's KJT (keys are field names)."""
        return {key: self._pooled(key, features[key].values().long(), features[key].lengths().long()) for key in features.keys()}

    def local_weight(self, name: str) -> None:
        """No dense weight to read directly: models take their generic lookup path."""
        return None

    def _pooled(self, name: str, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _device(self) -> torch.device:
        return next(self.buffers()).device


class SearchedTables(_FieldLookups):
    """Dense tables under a soft selection: row ``e_f`` of a field looks up as ``e_f ⊙ [W[b(f)] ⊙ keep[b(f)], 1]``
    (``W`` the block's `SoftSelection` weights, ``keep`` the pruning mask, 1 for the scalar columns).

    Args:
        dense: the model's `EmbeddingTables` (its weights are searched in place; unsharded).
        blocks: ``{field: FrequencyBlocks}`` of every field of ``dense``.
        mode: the selection's parameterisation (`SoftSelection`).
    """

    def __init__(self, dense: EmbeddingTables, blocks: dict[str, FrequencyBlocks], mode: SelectionMode = "free") -> None:
        super().__init__()
        if not isinstance(dense.collection, EmbeddingBagCollection):
            raise ValueError("DNIS searches unsharded tables; shard the exported mixed-dimension model instead")
        self.dense, self.specs, self.blocks = dense, dict(dense.specs), blocks
        self.selections = nn.ModuleDict()
        for name, spec in self.specs.items():
            s = blocks[name].n_blocks
            self.selections[name] = SoftSelection(s, spec.vector_dim, mode, torch.from_numpy(spec.dimension_ranks()))
            self.register_buffer(f"{name}_keep", torch.ones(s, spec.vector_dim))
            self.register_buffer(f"{name}_block", torch.from_numpy(blocks[name].block_of.astype(np.int64)), persistent=False)

    def weight(self, name: str) -> torch.Tensor:
        """``[rows, dim]`` the field's dense table."""
        return self.dense.collection.embedding_bags[name].weight

    def block_weights(self, name: str) -> torch.Tensor:
        """``[S, dim]`` what each block's rows are multiplied by: selection ⊙ keep, then 1 for every scalar column."""
        w = self.selections[name].weights() * getattr(self, f"{name}_keep")
        return torch.cat([w, w.new_ones(len(w), self.specs[name].scalars)], dim=1)

    def _pooled(self, name: str, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        table, weights, block = self.weight(name), self.block_weights(name), getattr(self, f"{name}_block")
        if len(values) >= len(table):  # weighing the whole table once is cheaper than weighing every looked-up row
            rows = F.embedding(values, table * weights[block])
        else:
            rows = F.embedding(values, table) * weights[block[values]]
        return pooled_rows(rows, lengths, self.specs[name].pooling)

    def prune_(self, layouts: dict[str, FieldLayout]) -> None:
        """Zero the dimensions ``layouts`` drop (the keep mask), so this model predicts as its export will."""
        for name, layout in layouts.items():
            keep = getattr(self, f"{name}_keep")
            keep.zero_()
            for b, columns in enumerate(layout.columns):
                keep[b, torch.from_numpy(columns)] = 1.0

    @torch.no_grad()
    def column_magnitudes(self) -> dict[str, np.ndarray]:
        """``{field: [S, D]}`` mean ``|e_fk · W_bk|`` over each block's rows: the α-weighted magnitude pruning ranks."""
        out = {}
        for name, spec in self.specs.items():
            block = getattr(self, f"{name}_block")  # [rows] int64, on the tables' device
            weighted = self.weight(name)[:, : spec.vector_dim].abs() * self.selections[name].weights()[block]
            sums = torch.zeros(self.blocks[name].n_blocks, spec.vector_dim, device=weighted.device)
            sums.index_add_(0, block, weighted)
            sizes = torch.tensor(self.blocks[name].sizes, device=weighted.device).clamp(min=1)[:, None]
            out[name] = (sums / sizes).cpu().numpy()
        return out

    @torch.no_grad()
    def export(self, layouts: dict[str, FieldLayout]) -> MixedDimTables:
        """The `MixedDimTables` of ``layouts`` holding this model's weighted rows (``e_f ⊙ W[b(f)]``, kept
        columns only): it scores as this model does after `prune_` with the same layouts."""
        tables = {}
        for name, spec in self.specs.items():
            layout, weight, scale = layouts[name], self.weight(name), self.block_weights(name)
            for b, columns in enumerate(layout.columns):
                ids = torch.from_numpy(layout.blocks.ids(b)).to(weight.device)
                kept = torch.from_numpy(np.concatenate([columns, np.arange(spec.vector_dim, spec.dim)])).to(weight.device)
                tables[f"{name}@{b}"] = (weight[ids] * scale[b])[:, kept]
        return MixedDimTables(list(self.specs.values()), layouts, weights=tables, device=weight.device)


class MixedDimTables(_FieldLookups):
    """One TorchRec table per (field, frequency block) with its own width: block ``b`` of a field stores its rows'
    kept dimensions ``columns[b]`` and the scalar columns, and a lookup scatters them into the field's full width
    ``dim`` (dropped dimensions read 0). Blocks that keep nothing have no table.

    Unsharded, each block's rows are gathered from its table's weight; once `DistributedModelParallel` has sharded
    the collection, a lookup is one collective KJT forward with one (sum-pooled) feature per block table.

    Args:
        specs: the model's full-width table specs (``dim``, ``scalars``, pooling, initialisation).
        layouts: ``{field: FieldLayout}`` for every spec.
        weights: ``{"<field>@<block>": Tensor[rows, width]}`` initial tables (an export); drawn from each spec's
            initialisation when None.
        device: where the tables live.
    """

    def __init__(self, specs: Sequence[TableSpec], layouts: dict[str, FieldLayout],
                 weights: dict[str, torch.Tensor] | None = None, device: torch.device | str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.specs, self.layouts = {s.name: s for s in specs}, layouts
        self.block_tables: dict[str, dict[int, str]] = {}
        self.host_rows: dict[str, np.ndarray] = {}
        tables = []
        for name, spec in self.specs.items():
            layout = layouts[name]
            # <name>_block (int8) is the layout's only saved per-id data; the row inside the block follows from it
            rows = layout.blocks.position.astype(np.int32)
            self.host_rows[name] = rows  # the sharded lookup builds its KJT on the host
            self.register_buffer(f"{name}_block", torch.from_numpy(layout.blocks.block_of.astype(np.int8)))
            self.register_buffer(f"{name}_row", torch.from_numpy(rows), persistent=False)
            self.block_tables[name] = {}
            for b, (rows, columns) in enumerate(zip(layout.blocks.sizes, layout.columns)):
                width = len(columns) + spec.scalars
                if rows == 0 or width == 0:
                    continue
                table = f"{name}@{b}"
                self.block_tables[name][b] = table
                tables.append(TableSpec(table, rows, width, pooling="sum", init_std=spec.std))
                out_columns = np.concatenate([columns, np.arange(spec.vector_dim, spec.dim)]).astype(np.int64)
                self.register_buffer(f"{name}_columns_{b}", torch.from_numpy(out_columns), persistent=False)
        self.collection = EmbeddingBagCollection(tables=[t.config() for t in tables], device=torch.device(device or "cpu"))
        if weights is not None:
            for table, weight in weights.items():
                if table in self.collection.embedding_bags:
                    self.collection.embedding_bags[table].weight.data.copy_(weight)

    def embedding_params(self) -> int:
        """Entries of all block tables (what the layouts promise)."""
        return sum(layout.params(self.specs[name]) for name, layout in self.layouts.items())

    def _pooled(self, name: str, values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        spec = self.specs[name]
        block, row = getattr(self, f"{name}_block")[values].long(), getattr(self, f"{name}_row")[values].long()
        out = torch.zeros(len(values), spec.dim, device=values.device)
        for b, table in self.block_tables[name].items():
            members = torch.nonzero(block == b).squeeze(1)
            rows = F.embedding(row[members], self.collection.embedding_bags[table].weight)
            out = out.index_put((members[:, None], getattr(self, f"{name}_columns_{b}")[None, :]), rows)
        return pooled_rows(out, lengths, spec.pooling)

    def lookup(self, space: FeatureSpace, names: Sequence[str], entities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(self.collection, EmbeddingBagCollection):
            return super().lookup(space, names, entities)
        return self._sharded_lookup(space, names, entities)

    def _sharded_lookup(self, space: FeatureSpace, names: Sequence[str], entities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One collective KJT forward over every block table (every rank calls it once per lookup): each bag's ids
        go to their blocks' features, sum-pooled, then scattered into the field's width and averaged where the
        field pools by mean."""
        present = next(iter(entities.values()))
        batch = len(present)
        keys, values, lengths, bag_sizes = [], [], [], {}
        for name, spec in self.specs.items():
            field = space.field(name)
            codes = entities.get(field.side) if name in names else None
            if codes is None:
                ids, lens = np.zeros(0, dtype=np.int64), np.zeros(batch, dtype=np.int64)
            else:
                ids, lens = field.lookup(codes.cpu().numpy())
            bag_sizes[name] = lens
            block = self.layouts[name].blocks.block_of[ids]
            row = self.host_rows[name][ids]
            bag = np.repeat(np.arange(batch), lens)
            for b, table in self.block_tables[name].items():
                mine = block == b
                keys.append(table)
                values.append(row[mine])
                lengths.append(np.bincount(bag[mine], minlength=batch))
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=keys,
            values=torch.from_numpy(np.concatenate(values).astype(np.int64)).to(present.device),
            lengths=torch.from_numpy(np.concatenate(lengths).astype(np.int32)).to(present.device),
        )
        pooled = self.collection(kjt)
        out = {}
        for name in names:
            spec = self.specs[name]
            total = torch.zeros(batch, spec.dim, device=present.device)
            for b, table in self.block_tables[name].items():
                total = total.index_add(1, getattr(self, f"{name}_columns_{b}"), pooled[table])
            if spec.pooling == "mean":
                total = total / torch.from_numpy(bag_sizes[name]).to(present.device).clamp(min=1)[:, None]
            out[name] = total
        return out
