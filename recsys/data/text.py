"""Item text for text encoders: ``"Title: …; Genres: a, b"`` built from an `Interactions`' item feature frame."""

from __future__ import annotations

import logging
from typing import Sequence

import polars as pl

from recsys.data.interactions import Interactions

log = logging.getLogger(__name__)

SKIPPED = ("item", "vector")
"""Feature columns never written into the text (the key, and precomputed vectors)."""


def item_texts(data: Interactions, columns: Sequence[str] | None = None) -> list[str]:
    """One string per item code: ``"Name: value"`` per feature column (lists joined by ", "), joined by "; ".

    ``columns`` default: ``title`` and ``genres`` where the frame has either (the text TGH's authors use for
    MovieLens), else every feature column. Items without features (or a dataset without an item feature frame)
    get ``"Item: <raw id>"``."""
    raw = data.items.decode(range(data.n_items)).cast(pl.String)
    fallback = [f"Item: {r}" for r in raw.to_list()]
    features = data.item_features
    if features is None:
        log.warning("%s has no item features: item text is the raw item id", data.name)
        return fallback
    if columns is None:
        preferred = [c for c in ("title", "genres") if c in features.columns]
        columns = preferred or [c for c in features.columns if c not in SKIPPED]
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise KeyError(f"{data.name}: item feature column(s) {missing} not found; have {features.columns}")
    parts = []
    for column in columns:
        value = pl.col(column)
        if features.schema[column] == pl.List:
            value = value.list.eval(pl.element().cast(pl.String)).list.join(", ")
        label = column.replace("_", " ").capitalize()
        parts.append(pl.concat_str([pl.lit(f"{label}: "), value.cast(pl.String).fill_null("")]))
    joined = features.select(pl.concat_str(parts, separator="; ").alias("text"))["text"] if parts else None
    texts = list(fallback)
    if joined is not None:
        for code, text in zip(features["item"].to_list(), joined.to_list()):
            texts[code] = text
    return texts
