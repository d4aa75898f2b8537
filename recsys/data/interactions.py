"""`Interactions`: the one data container every stage of recsys reads and writes.

A polars frame of integer-coded ``user`` / ``item`` columns (plus optional ``rating``, ``timestamp`` and any
extra columns), the vocabularies that map raw ids to codes and back, and optional user / item feature frames.
Splits of one dataset share its vocabularies, so codes mean the same thing in train, validation and test.
Raw ids never reach a model: models see codes ``0 .. n_users-1`` and ``0 .. n_items-1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.data.csr import binary_csr

if TYPE_CHECKING:
    import pandas as pd

CODE_DTYPE = pl.Int64
RESERVED = ("user", "item")


@dataclass(frozen=True)
class FilterStep:
    """One row of an `Interactions`' provenance: what a filter removed and why."""

    step: str
    removed: int
    remaining: int
    reason: str


class Vocabulary:
    """Bijection between raw ids (any polars dtype) and dense integer codes ``0..n-1``.

    Codes follow the sorted order of the raw ids, so the same set of ids always gives the same codes.
    """

    def __init__(self, raw_ids: pl.Series) -> None:
        if raw_ids.null_count():
            raise ValueError("a vocabulary cannot hold null ids")
        if raw_ids.n_unique() != raw_ids.len():
            raise ValueError("vocabulary ids must be unique")
        self.ids: pl.Series = raw_ids.rename("raw")
        self._table = pl.DataFrame({"raw": self.ids, "code": np.arange(len(self.ids), dtype=np.int64)})

    @classmethod
    def from_values(cls, values: pl.Series) -> Vocabulary:
        """Vocabulary of the distinct values of ``values``, in sorted order."""
        return cls(values.drop_nulls().unique().sort())

    def __len__(self) -> int:
        return self.ids.len()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.ids.equals(other.ids)

    def __hash__(self) -> int:  # vocabularies are compared by value, never hashed in sets of splits
        return hash(len(self))

    @property
    def dtype(self) -> pl.DataType:
        return self.ids.dtype

    def encode(self, raw: pl.Series, *, strict: bool = True, what: str = "id") -> pl.Series:
        """Codes of ``raw``; unknown ids raise (``strict``) or become null. An id the cast to the vocabulary's type
        would change (``1.7`` for integer ids) is unknown, never silently another id."""
        cast = raw.cast(self.dtype, strict=False)
        if raw.dtype.is_float() and self.dtype.is_integer():
            cast = pl.Series(raw.name, cast).set(cast.cast(pl.Float64) != raw, None)  # type: ignore[arg-type]
        frame = pl.DataFrame({"raw": cast})
        codes = frame.join(self._table, on="raw", how="left", maintain_order="left")["code"]
        if strict and codes.null_count():
            unknown = raw.filter(codes.is_null()).unique().head(5).to_list()
            raise KeyError(f"{codes.null_count()} {what}(s) not in the vocabulary, e.g. {unknown}")
        return codes.rename(raw.name)

    def decode(self, codes: pl.Series | np.ndarray | Sequence[int]) -> pl.Series:
        """Raw ids of integer ``codes``."""
        idx = np.asarray(codes, dtype=np.int64)
        return self.ids.gather(idx)


@dataclass(frozen=True)
class Interactions:
    """Integer-coded interactions with their vocabularies and side features.

    Attributes:
        frame: columns ``user`` and ``item`` (Int64 codes), optionally ``rating`` (Float64), ``timestamp``
            (Int64) and extra columns (kept through filters and splits).
        users: vocabulary of user ids; ``n_users == len(users)``.
        items: vocabulary of item ids; ``n_items == len(items)``.
        user_features: optional frame keyed by ``user`` code (one row per known user).
        item_features: optional frame keyed by ``item`` code.
        name: dataset name, for reports.
        provenance: filters applied so far, with the rows each removed.
    """

    frame: pl.DataFrame
    users: Vocabulary
    items: Vocabulary
    user_features: pl.DataFrame | None = None
    item_features: pl.DataFrame | None = None
    name: str = "interactions"
    provenance: tuple[FilterStep, ...] = field(default=())

    def __post_init__(self) -> None:
        for col in RESERVED:
            if col not in self.frame.columns:
                raise ValueError(f"Interactions frame lacks the {col!r} column")
            if self.frame[col].dtype != CODE_DTYPE:
                raise TypeError(f"Interactions column {col!r} must hold {CODE_DTYPE} codes")

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_frame(
        cls,
        raw: pl.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = None,
        timestamp_col: str | None = None,
        user_features: pl.DataFrame | None = None,
        item_features: pl.DataFrame | None = None,
        name: str = "interactions",
        source: str = "<frame>",
    ) -> Interactions:
        """Encode a frame of raw ids. Feature frames are keyed by the raw id column named ``user`` / ``item``.

        Raises a `DataError` naming ``source``, the column and the first offending row for missing columns, null,
        NaN, blank, nested or fractional ids, and non-numeric ratings or timestamps.
        """
        from recsys.data.validation import DataError, require_columns, require_numeric, valid_ids

        if raw.height == 0:
            raise DataError(f"{source}: no interactions (empty file or frame)")
        wanted = {"user": user_col, "item": item_col}
        if rating_col:
            wanted["rating"] = rating_col
        if timestamp_col:
            wanted["timestamp"] = timestamp_col
        require_columns(raw, list(wanted.values()), source)
        raw = raw.with_columns(valid_ids(raw, user_col, source), valid_ids(raw, item_col, source))
        shadowed = [c for c in ("user", "item", "rating", "timestamp") if c in raw.columns and c not in wanted.values()]
        if shadowed:
            raise DataError(
                f"{source}: column(s) {shadowed} would be shadowed by recsys' own column names; pass them as the "
                "user/item/rating/timestamp column or rename them"
            )
        extra = [c for c in raw.columns if c not in wanted.values()]
        frame = raw.select([pl.col(src).alias(dst) for dst, src in wanted.items()] + extra)
        if rating_col:
            frame = frame.with_columns(require_numeric(frame, "rating", source, shown=rating_col, dtype=pl.Float64))
        if timestamp_col:
            frame = frame.with_columns(
                require_numeric(frame, "timestamp", source, shown=timestamp_col, dtype=pl.Int64)
            )
        users = Vocabulary.from_values(frame["user"])
        items = Vocabulary.from_values(frame["item"])
        frame = frame.with_columns(
            users.encode(frame["user"]).alias("user"), items.encode(frame["item"]).alias("item")
        )
        return cls(
            frame=frame,
            users=users,
            items=items,
            user_features=_encode_features(user_features, users, "user"),
            item_features=_encode_features(item_features, items, "item"),
            name=name,
        )

    def with_frame(self, frame: pl.DataFrame, step: FilterStep | None = None) -> Interactions:
        """Same vocabularies and features over another frame of codes (used by splits and filters)."""
        provenance = self.provenance + ((step,) if step else ())
        return replace(self, frame=frame, provenance=provenance)

    def compact(self) -> Interactions:
        """Re-code so that only users and items present in the frame keep a code (after filtering)."""
        used_users = np.unique(self.frame["user"].to_numpy())
        used_items = np.unique(self.frame["item"].to_numpy())
        if len(used_users) == self.n_users and len(used_items) == self.n_items:
            return self
        users = Vocabulary(self.users.decode(used_users))
        items = Vocabulary(self.items.decode(used_items))
        user_map = _remap(used_users, self.n_users)
        item_map = _remap(used_items, self.n_items)
        frame = self.frame.with_columns(
            pl.Series("user", user_map[self.frame["user"].to_numpy()]),
            pl.Series("item", item_map[self.frame["item"].to_numpy()]),
        )
        return replace(
            self,
            frame=frame,
            users=users,
            items=items,
            user_features=_remap_features(self.user_features, "user", user_map),
            item_features=_remap_features(self.item_features, "item", item_map),
        )

    # ----------------------------------------------------------------------------------------- views
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return self.frame.height

    @property
    def has_rating(self) -> bool:
        return "rating" in self.frame.columns

    @property
    def has_timestamp(self) -> bool:
        return "timestamp" in self.frame.columns

    def to_csr(self, values: str | None = None, dtype: type = np.float32) -> sp.csr_matrix:
        """Users × items CSR matrix; ones (``values=None``) or a column's values. Duplicates are summed."""
        data = np.ones(self.frame.height, dtype=dtype) if values is None else self.frame[values].to_numpy()
        matrix = sp.csr_matrix(
            (data.astype(dtype, copy=False), (self.frame["user"].to_numpy(), self.frame["item"].to_numpy())),
            shape=(self.n_users, self.n_items),
        )
        matrix.sum_duplicates()
        return matrix

    def binary_csr(self) -> sp.csr_matrix:
        """Users × items 0/1 CSR with sorted indices (a pair listed twice counts once). Built on first use and
        kept, since an `Interactions` never changes; callers must not modify it."""
        cached = self.__dict__.get("_binary_csr")
        if cached is None:
            cached = binary_csr(self.frame["user"].to_numpy(), self.frame["item"].to_numpy(), (self.n_users, self.n_items))
            object.__setattr__(self, "_binary_csr", cached)  # a cache, not a field: frozen, equality unchanged
        return cached

    def sequences(self) -> pl.DataFrame:
        """One row per user: ``user`` code and ``items`` list in time order (file order breaks ties)."""
        frame = self.frame.with_row_index("_order")
        keys = ["timestamp", "_order"] if self.has_timestamp else ["_order"]
        return (
            frame.sort(["user", *keys])
            .group_by("user", maintain_order=True)
            .agg(pl.col("item").alias("items"))
        )

    def item_counts(self) -> np.ndarray:
        """Interactions per item code, shape ``[n_items]``."""
        return np.bincount(self.frame["item"].to_numpy(), minlength=self.n_items)

    def decoded(self) -> pl.DataFrame:
        """The frame with raw user and item ids instead of codes."""
        return self.frame.with_columns(
            self.users.decode(self.frame["user"].to_numpy()).alias("user"),
            self.items.decode(self.frame["item"].to_numpy()).alias("item"),
        )

    def to_pandas(self) -> pd.DataFrame:
        """`decoded` as a pandas frame (raw ids), for pandas-based tools; pandas and pyarrow are in the install."""
        return self.decoded().to_pandas()

    def describe(self) -> dict[str, float | int | str]:
        """Counts, density and history-length statistics."""
        per_user = self.frame.group_by("user").len()["len"]
        stats: dict[str, float | int | str] = {
            "name": self.name,
            "interactions": self.frame.height,
            "users": self.n_users,
            "items": self.n_items,
            "active_users": per_user.len(),
            "active_items": self.frame["item"].n_unique(),
            "density": self.frame.height / max(1, self.n_users * self.n_items),
            "history_min": int(per_user.min() or 0),
            "history_median": float(per_user.median() or 0.0),
            "history_mean": float(per_user.mean() or 0.0),
            "history_max": int(per_user.max() or 0),
        }
        if self.has_rating:
            stats["rating_mean"] = float(self.frame["rating"].mean() or 0.0)
        if self.has_timestamp:
            stats["timestamp_min"] = int(self.frame["timestamp"].min() or 0)
            stats["timestamp_max"] = int(self.frame["timestamp"].max() or 0)
        return stats

    def __repr__(self) -> str:
        return (
            f"Interactions(name={self.name!r}, rows={self.frame.height}, users={self.n_users}, "
            f"items={self.n_items}, columns={self.frame.columns})"
        )


def concat(parts: Iterable[Interactions]) -> Interactions:
    """Union of splits that share vocabularies (e.g. train + valid)."""
    parts = list(parts)
    first = parts[0]
    for part in parts[1:]:
        if part.users != first.users or part.items != first.items:
            raise ValueError("cannot concatenate Interactions with different vocabularies")
    return first.with_frame(pl.concat([p.frame for p in parts], how="vertical_relaxed"))


def _remap(used: np.ndarray, size: int) -> np.ndarray:
    mapping = np.full(size, -1, dtype=np.int64)
    mapping[used] = np.arange(len(used), dtype=np.int64)
    return mapping


def _encode_features(features: pl.DataFrame | None, vocab: Vocabulary, key: str) -> pl.DataFrame | None:
    """Key a raw-id feature frame by codes; rows of ids without interactions are dropped (they have no code)."""
    if features is None:
        return None
    if key not in features.columns:
        raise ValueError(f"{key} feature frame needs a {key!r} column of raw ids")
    codes = vocab.encode(features[key], strict=False)
    keyed = features.with_columns(codes.alias(key)).filter(pl.col(key).is_not_null())
    return keyed.sort(key)


def _remap_features(features: pl.DataFrame | None, key: str, mapping: np.ndarray) -> pl.DataFrame | None:
    if features is None:
        return None
    new = mapping[features[key].to_numpy()]
    return features.with_columns(pl.Series(key, new)).filter(pl.col(key) >= 0).sort(key)
