"""Filters over `Interactions`. Each returns a new, re-coded `Interactions` whose provenance records how many
rows it removed and why, and logs the same line, so nothing disappears unnoticed."""

from __future__ import annotations

import logging
from typing import Literal

import polars as pl

from recsys.data.interactions import FilterStep, Interactions
from recsys.data.validation import DataError

log = logging.getLogger(__name__)

DedupPolicy = Literal["keep_last", "keep_first", "error"]


def _apply(data: Interactions, kept: pl.DataFrame, step: str, reason: str) -> Interactions:
    removed = data.frame.height - kept.height
    record = FilterStep(step=step, removed=removed, remaining=kept.height, reason=reason)
    log.info("%s: removed %d of %d rows (%s)", step, removed, data.frame.height, reason)
    return data.with_frame(kept, record).compact()


def rating_threshold(data: Interactions, threshold: float, *, binarise: bool = False) -> Interactions:
    """Keep interactions with ``rating >= threshold`` (explicit → implicit feedback).

    With ``binarise`` the rating column is dropped, leaving pure implicit feedback.
    """
    if not data.has_rating:
        raise DataError(f"{data.name}: rating_threshold needs a rating column")
    kept = data.frame.filter(pl.col("rating") >= threshold)
    if binarise:
        kept = kept.drop("rating")
    return _apply(data, kept, "rating_threshold", f"rating < {threshold}")


def deduplicate(data: Interactions, policy: DedupPolicy = "keep_last") -> Interactions:
    """Resolve repeated (user, item) pairs: keep the last or first by time (file order breaks ties), or raise."""
    frame = data.frame.with_row_index("_order")
    dup = frame.select(pl.struct("user", "item").is_duplicated()).to_series()
    if policy == "error":
        if dup.any():
            row = int(dup.arg_true()[0])
            user, item = data.decoded().row(row)[:2]
            raise DataError(
                f"{data.name}: {int(dup.sum())} rows repeat a (user, item) pair; first at row {row + 1} "
                f"(user {user!r}, item {item!r}). Choose keep_last or keep_first to resolve them."
            )
        return data
    keys = ["timestamp", "_order"] if data.has_timestamp else ["_order"]
    keep = "last" if policy == "keep_last" else "first"
    kept = (
        frame.sort(keys)
        .unique(subset=["user", "item"], keep=keep, maintain_order=True)
        .sort("_order")
        .drop("_order")
    )
    return _apply(data, kept, "deduplicate", f"repeated (user, item) pair, {policy}")


def k_core(data: Interactions, *, user_k: int = 5, item_k: int = 5, max_rounds: int = 100) -> Interactions:
    """Iteratively drop users with < ``user_k`` and items with < ``item_k`` interactions until stable."""
    frame = data.frame
    for _ in range(max_rounds):
        before = frame.height
        frame = frame.filter(
            (pl.len().over("user") >= user_k) if user_k > 1 else pl.lit(True)
        ).filter((pl.len().over("item") >= item_k) if item_k > 1 else pl.lit(True))
        if frame.height == before:
            break
    else:
        raise RuntimeError(f"k_core did not converge in {max_rounds} rounds")
    return _apply(data, frame, "k_core", f"user with < {user_k} or item with < {item_k} interactions")


def min_history(data: Interactions, length: int) -> Interactions:
    """Drop users with fewer than ``length`` interactions (one pass; items are not re-filtered)."""
    kept = data.frame.filter(pl.len().over("user") >= length)
    return _apply(data, kept, "min_history", f"user history shorter than {length}")
