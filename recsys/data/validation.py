"""Input checks that fail with an error naming the file, the column and the first offending row."""

from __future__ import annotations

from typing import Sequence

import polars as pl


class DataError(ValueError):
    """Bad input data: the message names the source, the column and (where known) the row."""


def require_columns(frame: pl.DataFrame, columns: Sequence[str], source: str) -> None:
    """Raise if any of ``columns`` is missing; a single-column frame hints at a wrong delimiter."""
    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return
    hint = ""
    if frame.width == 1:
        hint = (
            f" The file parsed into a single column {frame.columns[0]!r}: the delimiter is probably wrong "
            "(pass --separator, e.g. ',' or '\\t')."
        )
    raise DataError(f"{source}: missing column(s) {missing}; found {frame.columns}.{hint}")


def valid_ids(frame: pl.DataFrame, column: str, source: str) -> pl.Series:
    """The id column, checked: no nulls, NaN, blank strings or nested values (lists, structs); float ids (as pandas
    writes integer ids with a gap) become integers, and a float with a fractional part is an error. Errors name the
    column and the first offending row (1-based data rows)."""
    series = frame[column]

    def first(bad: pl.Series, what: str) -> None:
        if bad.any():
            row = int(bad.arg_true()[0]) + 1
            raise DataError(f"{source}: column {column!r} has {int(bad.sum())} {what}; first at data row {row} "
                            f"({series[row - 1]!r})")  # fmt: skip

    if series.dtype.is_nested():
        raise DataError(f"{source}: column {column!r} holds {series.dtype} values, not ids")
    first(series.is_null(), "null id(s)")
    if series.dtype.is_float():
        first(series.is_nan(), "NaN id(s)")
        first(series != series.floor(), "id(s) with a fractional part")
        return series.cast(pl.Int64)
    if series.dtype == pl.String:
        first(series.str.strip_chars() == "", "blank id(s)")
    return series


def require_numeric(
    frame: pl.DataFrame, column: str, source: str, *, shown: str | None = None, dtype: pl.DataType = pl.Float64
) -> pl.Series:
    """Column cast to ``dtype``; raise naming the first value that is not a number (or a null)."""
    series = frame[column]
    shown = shown or column
    if series.dtype == pl.String:
        cast = series.str.strip_chars().cast(pl.Float64, strict=False)
    else:
        cast = series.cast(pl.Float64, strict=False)
    bad = cast.is_null() | ~cast.is_finite()  # inf / nan are not usable ratings or timestamps
    if dtype == pl.Int64:
        bad = bad | (cast.abs() >= 2.0**63)  # would overflow the Int64 cast below
    if bad.any():
        row = int(bad.arg_true()[0])
        value = series[row]
        raise DataError(
            f"{source}: column {shown!r} must be numeric; data row {row + 1} holds {value!r} "
            f"({int(bad.sum())} bad value(s) in all)"
        )
    if dtype == pl.Int64:
        if series.dtype.is_integer():  # exact: a float round trip loses digits past 2**53 (ns timestamps)
            return series.cast(pl.Int64).rename(column)
        return cast.round(0).cast(pl.Int64).rename(column)
    return cast.cast(dtype).rename(column)
