"""Splits of datasets with a missing-not-at-random training log and a missing-at-random test set (Yahoo! R3,
Coat): the MNAR ``partition == "train"`` ratings train (a random share held out for validation), the randomly
exposed ``partition == "test"`` ratings test, so evaluation on them is free of the exposure bias of training."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.interactions import Interactions
from recsys.data.validation import DataError


def mnar_mar_split(
    data: Interactions, *, valid_fraction: float = 0.1, seed: int = 2026, column: str = "partition"
) -> tuple[Interactions, Interactions, Interactions]:
    """``(train, valid, test)``: MNAR rows split ``1 − valid_fraction`` / ``valid_fraction`` at random, MAR rows as
    test. All parts keep the dataset's vocabularies (items shown only at random still have codes)."""
    if column not in data.frame.columns:
        raise DataError(f"{data.name}: no {column!r} column; the MNAR/MAR split needs train/test partitions")
    values = set(data.frame[column].unique().to_list())
    if not {"train", "test"} <= values:
        raise DataError(f"{data.name}: column {column!r} must hold 'train' and 'test' rows, found {sorted(values)}")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    mnar = data.frame.filter(pl.col(column) == "train")
    held_out = np.random.default_rng(seed).random(mnar.height) < valid_fraction
    return (
        data.with_frame(mnar.filter(pl.Series(~held_out))),
        data.with_frame(mnar.filter(pl.Series(held_out))),
        data.with_frame(data.frame.filter(pl.col(column) == "test")),
    )


def binarize(data: Interactions, threshold: float = 4.0) -> Interactions:
    """Keep only the positive interactions (``rating >= threshold``), as implicit feedback (vocabularies kept)."""
    if not data.has_rating:
        raise DataError(f"{data.name}: binarize needs a rating column")
    return data.with_frame(data.frame.filter(pl.col("rating") >= threshold))
