"""Categorical feature fields of users and items, as integer ids ready for embedding tables.

A `FeatureSpace` lists the fields of each side (user: id, age bucket, gender, occupation; item: id, genres,
release-year bucket for ML-100k) and, per field, a CSR-style map from an entity code to its feature ids, so a
multi-valued field such as genres is one bag. Models never see raw values, only these ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import polars as pl

from recsys.data.csr import gather_rows
from recsys.data.interactions import Interactions
from recsys.data.validation import DataError

Side = Literal["user", "item"]


@dataclass(frozen=True)
class Field:
    """One categorical field: ``ids[indptr[e]:indptr[e+1]]`` are the feature ids of entity ``e``.

    Attributes:
        name: feature (and embedding-table) name, e.g. ``"user"``, ``"genres"``.
        side: ``"user"`` or ``"item"``.
        cardinality: number of distinct feature ids (table rows).
        indptr: ``[n_entities + 1]`` int64 offsets.
        ids: ``[nnz]`` int64 feature ids.
        vocabulary: the raw value of each feature id, for reports.
    """

    name: str
    side: Side
    cardinality: int
    indptr: np.ndarray
    ids: np.ndarray
    vocabulary: tuple[str, ...]

    @property
    def is_identity(self) -> bool:
        """The entity's own code is its feature id (the ``user`` and ``item`` fields; those names are reserved)."""
        return self.name == self.side

    @property
    def multi_valued(self) -> bool:
        return bool((np.diff(self.indptr) != 1).any())

    @classmethod
    def identity(cls, name: Side, n: int) -> Field:
        """The entity's own id as a field (one id per entity)."""
        return cls(name, name, n, np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int64), ())

    @classmethod
    def from_column(cls, name: str, side: Side, keys: np.ndarray, values: pl.Series, n: int) -> Field:
        """Single- or multi-valued (list column) categorical field of entities ``keys`` (codes ``0..n-1``).

        Entities without a row, or with a null value, get the reserved id 0 (``"<unknown>"``).
        """
        if values.dtype == pl.List(pl.String) or isinstance(values.dtype, pl.List):
            exploded = pl.DataFrame({"key": keys, "value": values}).explode("value")
        else:
            exploded = pl.DataFrame({"key": keys, "value": values})
        exploded = exploded.with_columns(pl.col("value").cast(pl.String))
        vocabulary = ("<unknown>", *sorted(v for v in exploded["value"].unique().to_list() if v is not None))
        index = {v: i for i, v in enumerate(vocabulary)}
        exploded = exploded.with_columns(
            pl.col("value").replace_strict(index, default=0, return_dtype=pl.Int64).alias("id")
        )
        per_key = exploded.group_by("key").agg(pl.col("id")).sort("key")
        ids_of = [[0] for _ in range(n)]
        for key, ids in zip(per_key["key"].to_list(), per_key["id"].to_list()):
            ids_of[key] = sorted(set(ids)) or [0]
        lengths = np.array([len(x) for x in ids_of], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.fromiter((i for x in ids_of for i in x), dtype=np.int64, count=int(lengths.sum()))
        return cls(name, side, len(vocabulary), indptr, flat, vocabulary)

    def lookup(self, entities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature ids and bag lengths of ``entities`` (``[B]`` codes) → ``(values [nnz], lengths [B])``."""
        return gather_rows(self.indptr, self.ids, entities)


@dataclass(frozen=True)
class FeatureSpace:
    """The fields of both sides; ``fields`` keeps a fixed order (user side first) used by every model."""

    n_users: int
    n_items: int
    fields: tuple[Field, ...]

    def side(self, side: Side) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.side == side)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no feature field {name!r}; fields: {[f.name for f in self.fields]}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _bucket(values: pl.Series, edges: Sequence[float], label: str) -> pl.Series:
    """Bucket a numeric column by ``edges`` into labels such as ``age<18``, ``age18-24`` … ``age>=56``."""
    array = values.cast(pl.Float64).to_numpy()
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), array, side="right")
    names = [f"{label}<{edges[0]:g}"] + [f"{label}{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])]
    names += [f"{label}>={edges[-1]:g}"]
    out = [None if np.isnan(v) else names[i] for v, i in zip(array, index)]
    return pl.Series(values.name, out, dtype=pl.String)


AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups
YEAR_EDGES = (1950, 1970, 1980, 1990, 1995)


def feature_space(data: Interactions, *, side_features: bool = True) -> FeatureSpace:
    """Feature fields of a dataset: ids alone, or ids plus the side features the dataset carries.

    Known columns become fields: users' ``age`` (bucketed), ``gender``, ``occupation``; items' ``genres``
    (multi-valued) or ``categories`` and ``year`` (bucketed). Other feature columns are ignored.
    """
    fields: list[Field] = [Field.identity("user", data.n_users)]
    if side_features and data.user_features is not None:
        users = data.user_features
        keys = users["user"].to_numpy()
        if "age" in users.columns:
            fields.append(Field.from_column("age", "user", keys, _bucket(users["age"], AGE_EDGES, "age"), data.n_users))
        for col in ("gender", "occupation"):
            if col in users.columns:
                fields.append(Field.from_column(col, "user", keys, users[col], data.n_users))
    fields.append(Field.identity("item", data.n_items))
    if side_features and data.item_features is not None:
        items = data.item_features
        keys = items["item"].to_numpy()
        for col in ("genres", "categories"):
            if col in items.columns:
                fields.append(Field.from_column(col, "item", keys, items[col], data.n_items))
        if "year" in items.columns:
            fields.append(Field.from_column("year", "item", keys, _bucket(items["year"], YEAR_EDGES, "year"), data.n_items))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise DataError(f"duplicate feature field names {names}")
    return FeatureSpace(data.n_users, data.n_items, tuple(fields))
