"""Train / validation / test splits. Every split keeps the dataset's vocabularies (codes agree across parts),
returns disjoint parts whose union is the input, and is reproducible from its seed. Leakage properties are
checked by property tests in ``tests/data/test_splits.py``."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from recsys.data.interactions import Interactions
from recsys.data.mnar import mnar_mar_split
from recsys.data.validation import DataError

Parts = tuple[Interactions, ...]


def _check_ratios(ratios: Sequence[float]) -> np.ndarray:
    array = np.asarray(ratios, dtype=np.float64)
    if len(array) < 2 or (array < 0).any() or array.sum() <= 0:
        raise ValueError(f"split ratios must be >= 2 non-negative numbers with a positive sum, got {ratios}")
    return array / array.sum()


def part_sizes(total: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Rows per part for each group of ``total`` rows, as RecBole's ``_calcu_split_ids`` does it.

    Parts after the first are rounded down; the first takes the remainder; then, from the last part backwards,
    a part whose exact share is in (0, 1) gets one row taken from the first part while the first keeps > 1.
    Vectorised over groups: ``total`` is ``[G]``, the result ``[G, len(ratios)]``.
    """
    share = _check_ratios(ratios)
    total = np.asarray(total, dtype=np.int64)
    exact = share[None, :] * total[:, None]
    counts = np.floor(exact).astype(np.int64)
    counts[:, 0] = total - counts[:, 1:].sum(axis=1)
    for i in range(1, len(share)):
        bump = (counts[:, 0] > 1) & (exact[:, -i] > 0) & (exact[:, -i] < 1)
        # RecBole stops at the first part where the first holds <= 1 row; groups already stopped stay stopped.
        counts[bump, -i] += 1
        counts[bump, 0] -= 1
    return counts


def _assign(data: Interactions, frame: pl.DataFrame, n_parts: int) -> Parts:
    """Split ``frame`` (with a ``_part`` column) into `Interactions` parts, dropping helper columns."""
    helpers = [c for c in frame.columns if c not in data.frame.columns]  # not the data's own "_x" columns
    parts = frame.partition_by("_part", as_dict=True, include_key=True)
    empty = data.frame.clear()
    return tuple(
        data.with_frame(parts[(p,)].sort("_row").drop(helpers) if (p,) in parts else empty) for p in range(n_parts)
    )


def per_user_random(data: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 2026) -> Parts:
    """Shuffle each user's interactions and cut them by ``ratios`` (RecBole's default ``RS`` + ``RO`` protocol).

    Part sizes per user follow `part_sizes` (RecBole's rounding), so a user with few interactions keeps most
    of them in train.
    """
    rng = np.random.default_rng(seed)
    frame = data.frame.with_row_index("_row").with_columns(pl.Series("_key", rng.random(data.frame.height)))
    frame = frame.sort(["user", "_key"]).with_columns(pl.int_range(pl.len()).over("user").alias("_rank"))
    counts = frame.group_by("user", maintain_order=True).len()
    sizes = part_sizes(counts["len"].to_numpy(), ratios)
    bounds = np.cumsum(sizes, axis=1)  # [users, parts]
    bound_frame = pl.DataFrame({"user": counts["user"], **{f"_b{i}": bounds[:, i] for i in range(len(ratios))}})
    frame = frame.join(bound_frame, on="user", how="left")
    part = pl.lit(len(ratios) - 1)
    for i in reversed(range(len(ratios) - 1)):
        part = pl.when(pl.col("_rank") < pl.col(f"_b{i}")).then(pl.lit(i)).otherwise(part)
    return _assign(data, frame.with_columns(part.cast(pl.Int64).alias("_part")), len(ratios))


def random_ratio(data: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 2026) -> Parts:
    """Shuffle all interactions together and cut them by ``ratios`` (users may be absent from train)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(data.frame.height)
    sizes = part_sizes(np.array([data.frame.height]), ratios)[0]
    part_of_rank = np.repeat(np.arange(len(sizes)), sizes)
    part = np.empty(data.frame.height, dtype=np.int64)
    part[order] = part_of_rank
    frame = data.frame.with_row_index("_row").with_columns(pl.Series("_part", part))
    return _assign(data, frame, len(ratios))


def leave_k_out(data: Interactions, k: int = 1, *, validation: bool = True) -> Parts:
    """Per user by time: the last ``k`` interactions to test and, with ``validation``, the ``k`` before to valid.

    Ties in time keep file order. Users with too few interactions keep at least one in train: a user with
    ``n <= k`` rows goes wholly to train; with ``validation`` and ``k < n <= 2k`` only test is taken.
    """
    _require_time(data, "leave_k_out")
    if k < 1:
        raise ValueError("leave_k_out needs k >= 1")
    frame = data.frame.with_row_index("_row").sort(["user", "timestamp", "_row"])
    frame = frame.with_columns(
        (pl.len().over("user") - 1 - pl.int_range(pl.len()).over("user")).alias("_from_end"),
        pl.len().over("user").alias("_n"),
    )
    test = (pl.col("_from_end") < k) & (pl.col("_n") > k)
    valid = (pl.col("_from_end") >= k) & (pl.col("_from_end") < 2 * k) & (pl.col("_n") > 2 * k)
    if validation:
        part = pl.when(test).then(2).when(valid).then(1).otherwise(0)
        n_parts = 3
    else:
        part = pl.when(test).then(1).otherwise(0)
        n_parts = 2
    return _assign(data, frame.with_columns(part.cast(pl.Int64).alias("_part")), n_parts)


def temporal_global(data: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Parts:
    """Sort all interactions by time and cut by ``ratios``: every train event is no later than any valid event,
    and every valid event no later than any test event (ties may straddle a cut, never invert it)."""
    _require_time(data, "temporal_global")
    frame = data.frame.with_row_index("_row").sort(["timestamp", "_row"])
    sizes = part_sizes(np.array([frame.height]), ratios)[0]
    frame = frame.with_columns(pl.Series("_part", np.repeat(np.arange(len(sizes)), sizes)))
    return _assign(data, frame, len(ratios))


def _require_time(data: Interactions, what: str) -> None:
    if not data.has_timestamp:
        raise DataError(f"{data.name}: {what} needs a timestamp column")


PROTOCOLS = {
    "user-811": lambda data, seed: per_user_random(data, (0.8, 0.1, 0.1), seed=seed),
    "global-811": lambda data, seed: random_ratio(data, (0.8, 0.1, 0.1), seed=seed),
    "global-721": lambda data, seed: random_ratio(data, (0.7, 0.2, 0.1), seed=seed),
    "loo": lambda data, seed: leave_k_out(data, 1),
    "temporal": lambda data, seed: temporal_global(data, (0.8, 0.1, 0.1)),
    "mnar-mar": lambda data, seed: mnar_mar_split(data, valid_fraction=0.1, seed=seed),
}
"""Named split protocols of `recsys benchmark`: ``user-811`` is RecBole's default for general models."""


def split(data: Interactions, protocol: str, *, seed: int = 2026) -> Parts:
    """Split by a named protocol (see `PROTOCOLS`)."""
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol](data, seed)
