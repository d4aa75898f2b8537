"""Parsers for the on-disk formats of the built-in datasets, into one raw-id form.

Every parser returns a `RawTables`: an interactions frame with columns ``user``, ``item`` and, where the
format has them, ``rating`` and ``timestamp`` (plus format-specific extras such as ``partition``), and
optional user / item feature frames keyed by raw ``user`` / ``item`` ids. A dataset card names the parser
(``format:``) and the files it reads; `PARSERS` maps one to the other.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import polars as pl

from recsys.data.validation import DataError

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")


@dataclass(frozen=True)
class RawTables:
    """Parsed dataset with raw ids: interactions plus optional user / item feature frames."""

    interactions: pl.DataFrame
    users: pl.DataFrame | None = None
    items: pl.DataFrame | None = None


Files = Mapping[str, Path]


# ------------------------------------------------------------------------------------------------ helpers
def read_delimited(
    path: Path,
    columns: list[str],
    *,
    separator: str = "\t",
    has_header: bool = False,
    encoding: str = "utf-8",
) -> pl.DataFrame:
    """Read a delimited text file as strings, checking the field count (a wrong delimiter is named).

    Multi-character separators (MovieLens-1M's ``::``) and non-UTF-8 encodings are handled by decoding in
    Python first, since polars' reader takes one-byte separators and UTF-8 only.
    """
    raw = _read_bytes(path)
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not {encoding} text (byte {err.start}: {raw[err.start:err.start + 1]!r}); "
                        f"save the file as {encoding}") from err  # fmt: skip
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the first column's name
    sep = separator
    if len(separator) > 1:
        text, sep = text.replace(separator, "\x1f"), "\x1f"
    first = text.split("\n", 1)[0].rstrip("\r")
    found = len(first.split(sep))
    if found != len(columns):
        raise DataError(
            f"{path}: expected {len(columns)} {separator!r}-separated fields {columns}, found {found} in the first "
            f"line {first[:80]!r}; is the delimiter right?"
        )
    try:
        frame = pl.read_csv(
            io.BytesIO(text.encode("utf-8")),
            separator=sep,
            has_header=has_header,
            new_columns=columns,
            infer_schema=False,
            quote_char='"' if sep == "," else None,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.ComputeError as err:
        raise DataError(f"{path}: cannot parse as {columns} separated by {separator!r}: {err}") from err
    # polars fills a short line with nulls: only then is the text scanned for it (a clean file pays nothing)
    short = _short_line(text, sep, len(columns), skip=1 if has_header else 0) if frame.null_count().sum_horizontal().item() else None
    if short is not None:
        number, fields = short
        raise DataError(f"{path}: line {number} has {fields} field(s), expected {len(columns)} {columns}")
    return frame.with_columns(pl.col(pl.String).str.strip_chars())


def _short_line(text: str, sep: str, expected: int, skip: int) -> tuple[int, int] | None:
    """``(line number, fields)`` of the first non-blank line with fewer fields than ``expected`` (polars fills a
    short line with nulls, which would otherwise surface as a misleading null-id error), or None. Lines with
    quoted separators are counted by the csv module."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number <= skip or not line.strip():
            continue
        fields = line.count(sep) + 1
        if fields < expected and '"' in line:
            fields = len(next(csv.reader([line], delimiter=sep)))
        if fields < expected:
            return number, fields
    return None


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def integer_ids(frame: pl.DataFrame, columns: tuple[str, ...] = ("user", "item")) -> pl.DataFrame:
    """Cast id columns to Int64 where every value is an integer, so all sources of a dataset agree on ids."""
    casts = []
    for col in columns:
        if col in frame.columns and frame[col].dtype == pl.String:
            as_int = frame[col].cast(pl.Int64, strict=False)
            if as_int.null_count() == frame[col].null_count():
                casts.append(as_int)
    return frame.with_columns(casts) if casts else frame


def _title_and_year(title: pl.Expr) -> list[pl.Expr]:
    year = title.str.extract(r"\((\d{4})\)\s*$", 1).cast(pl.Int64, strict=False)
    return [title.str.replace(_YEAR_SUFFIX.pattern, "").alias("title"), year.alias("year")]


def _json_lines(path: Path, *, python_literals: bool = False) -> list[dict]:
    """Parse JSON-lines (or the Python-literal lines of Amazon-2014 metadata), naming the bad line."""
    rows = []
    for number, line in enumerate(_read_bytes(path).decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(ast.literal_eval(line) if python_literals else json.loads(line))
        except (ValueError, SyntaxError) as err:
            raise DataError(f"{path}: line {number} is not a valid record: {err}") from err
    if not rows:
        raise DataError(f"{path}: file is empty")
    return rows


def _records_frame(rows: list[dict], fields: Mapping[str, str], path: Path) -> pl.DataFrame:
    """Frame of the named ``fields`` (source → target) from parsed records; a missing field is an error."""
    for number, row in enumerate(rows, start=1):
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataError(f"{path}: record {number} lacks field(s) {missing}")
    return pl.DataFrame({dst: [row[src] for row in rows] for src, dst in fields.items()}, strict=False)


# ------------------------------------------------------------------------------------------------ MovieLens
def parse_movielens_100k(files: Files) -> RawTables:
    """GroupLens ML-100k: ``u.data`` (tab), ``u.item`` and ``u.user`` (pipe, Latin-1)."""
    ratings = read_delimited(files["ratings"], ["user", "item", "rating", "timestamp"])
    items = read_delimited(
        files["items"],
        ["item", "title_raw", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES],
        separator="|",
        encoding="latin-1",
    )
    genres = pl.concat_list(
        [pl.when(pl.col(g) == "1").then(pl.lit(g)).otherwise(None) for g in ML100K_GENRES]
    ).list.drop_nulls()
    title, title_year = _title_and_year(pl.col("title_raw"))
    # The film's year is the one in its title; u.item's release date is often a later (video) re-release
    # (Taxi Driver (1976): 16-Feb-1996), so it only fills in for titles without a year.
    release_year = pl.col("release_date").str.slice(-4).cast(pl.Int64, strict=False)
    items = items.select("item", title, pl.coalesce(title_year, release_year).alias("year"), genres.alias("genres"))
    users = read_delimited(files["users"], ["user", "age", "gender", "occupation", "zip_code"], separator="|")
    users = users.with_columns(pl.col("age").cast(pl.Int64))
    return RawTables(integer_ids(ratings), integer_ids(users), integer_ids(items))


def parse_movielens_1m(files: Files) -> RawTables:
    """GroupLens ML-1M: ``ratings.dat``, ``movies.dat``, ``users.dat`` separated by ``::`` (Latin-1)."""
    ratings = read_delimited(files["ratings"], ["user", "item", "rating", "timestamp"], separator="::")
    movies = read_delimited(files["items"], ["item", "title_raw", "genres_raw"], separator="::", encoding="latin-1")
    items = movies.select("item", *_title_and_year(pl.col("title_raw")), pl.col("genres_raw").str.split("|").alias("genres"))
    users = read_delimited(files["users"], ["user", "gender", "age", "occupation", "zip_code"], separator="::")
    users = users.with_columns(pl.col("age").cast(pl.Int64))
    return RawTables(integer_ids(ratings), integer_ids(users), integer_ids(items))


def parse_movielens_csv(files: Files) -> RawTables:
    """GroupLens ML-20M / ML-25M / latest: ``ratings.csv`` and ``movies.csv`` with headers (UTF-8)."""
    ratings = read_delimited(
        files["ratings"], ["userId", "movieId", "rating", "timestamp"], separator=",", has_header=True
    ).rename({"userId": "user", "movieId": "item"})
    movies = read_delimited(files["items"], ["movieId", "title", "genres"], separator=",", has_header=True)
    items = movies.select(
        pl.col("movieId").alias("item"),
        *_title_and_year(pl.col("title")),
        pl.col("genres").str.split("|").alias("genres"),
    )
    return RawTables(integer_ids(ratings), None, integer_ids(items))


def parse_recbole_atomic(files: Files) -> RawTables:
    """RecBole atomic files (``.inter``, ``.user``, ``.item``): tab-separated, header ``name:type``.

    Column names map onto recsys names: ``user_id``→user, ``item_id``→item, ``movie_title``→title,
    ``release_year``→year, ``class``→genres (a space-separated token sequence).
    """
    renames = {"user_id": "user", "item_id": "item", "movie_title": "title", "release_year": "year", "class": "genres"}

    def read(path: Path) -> pl.DataFrame:
        raw = _read_bytes(path)
        if not raw.strip():
            raise DataError(f"{path}: file is empty")
        header = raw.decode("utf-8").split("\n", 1)[0].rstrip("\r").split("\t")
        names = [renames.get(h.split(":")[0], h.split(":")[0]) for h in header]
        if any(":" not in h for h in header):
            raise DataError(f"{path}: header {header} is not RecBole's 'name:type' form (tab-separated)")
        frame = read_delimited(path, names, has_header=True)
        seq_cols = [n for n, h in zip(names, header) if h.endswith(":token_seq") and n == "genres"]
        return frame.with_columns([pl.col(c).str.split(" ") for c in seq_cols])

    ratings = read(files["ratings"])
    users = read(files["users"]) if "users" in files else None
    items = read(files["items"]) if "items" in files else None
    if users is not None and "age" in users.columns:
        users = users.with_columns(pl.col("age").cast(pl.Int64))
    if items is not None and "year" in items.columns:
        items = items.with_columns(pl.col("year").cast(pl.Int64, strict=False))
    return RawTables(
        integer_ids(ratings), integer_ids(users) if users is not None else None, integer_ids(items) if items is not None else None
    )


# ------------------------------------------------------------------------------------------------ Amazon
_AMAZON_REVIEW_FIELDS = {"reviewerID": "user", "asin": "item", "overall": "rating", "unixReviewTime": "timestamp"}


def _parse_amazon(files: Files, *, literal_meta: bool, categories: Callable[[dict], list[str]]) -> RawTables:
    """Reviews (strict JSON lines) plus optional metadata; the two releases differ only in the metadata."""
    path = files["ratings"]
    reviews = _records_frame(_json_lines(path), _AMAZON_REVIEW_FIELDS, path)
    if "items" not in files:
        return RawTables(reviews)
    meta = _json_lines(files["items"], python_literals=literal_meta)
    items = pl.DataFrame(
        {
            "item": [m["asin"] for m in meta],
            "title": [m.get("title") for m in meta],
            "brand": [m.get("brand") for m in meta],
            "categories": [categories(m) for m in meta],
        },
        schema_overrides={"title": pl.String, "brand": pl.String, "categories": pl.List(pl.String)},
    ).unique("item", keep="first", maintain_order=True)
    return RawTables(reviews, None, items)


def parse_amazon_2014(files: Files) -> RawTables:
    """McAuley's Amazon 2014 5-core reviews and metadata (Python-literal lines, category paths flattened)."""
    return _parse_amazon(
        files, literal_meta=True, categories=lambda m: sorted({c for path in m.get("categories", []) for c in path})
    )


def parse_amazon_2018(files: Files) -> RawTables:
    """Ni et al.'s Amazon 2018 5-core reviews and metadata, both strict JSON lines (repeated asins kept once)."""
    return _parse_amazon(files, literal_meta=False, categories=lambda m: list(m.get("category", [])))


# ------------------------------------------------------------------------------------------------ MNAR sets
def parse_yahoo_r3(files: Files) -> RawTables:
    """Yahoo! R3: MNAR ``train`` (user-selected songs) and MAR ``test`` (randomly shown), ``user\\titem\\trating``."""
    parts = [
        read_delimited(files[part], ["user", "item", "rating"]).with_columns(pl.lit(part).alias("partition"))
        for part in ("train", "test")
    ]
    return RawTables(integer_ids(pl.concat(parts)))


def parse_coat(files: Files) -> RawTables:
    """Coat: dense ASCII rating matrices (users × items, 0 = not rated) for MNAR train and MAR test.

    User and item features are the one-hot ``.ascii`` matrices shipped beside them (one row per id).
    """
    parts = []
    for part in ("train", "test"):
        matrix = _ascii_matrix(files[part])
        users, items = np.nonzero(matrix)
        parts.append(
            pl.DataFrame(
                {
                    "user": users.astype(np.int64),
                    "item": items.astype(np.int64),
                    "rating": matrix[users, items].astype(np.float64),
                    "partition": [part] * len(users),
                }
            )
        )
    tables = {}
    for key in ("users", "items"):
        if key in files:
            features = _ascii_matrix(files[key])
            tables[key] = pl.DataFrame(
                {key[:-1]: np.arange(features.shape[0], dtype=np.int64), "features": features.astype(np.int8)}
            )
    return RawTables(pl.concat(parts), tables.get("users"), tables.get("items"))


def _ascii_matrix(path: Path) -> np.ndarray:
    text = _read_bytes(path).decode("utf-8")
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise DataError(f"{path}: file is empty")
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DataError(f"{path}: row {number} has {len(row)} values, the first row has {width}")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: non-numeric value in the matrix ({err})") from err


PARSERS: dict[str, Callable[[Files], RawTables]] = {
    "movielens-100k": parse_movielens_100k,
    "movielens-1m": parse_movielens_1m,
    "movielens-csv": parse_movielens_csv,
    "recbole-atomic": parse_recbole_atomic,
    "amazon-2014": parse_amazon_2014,
    "amazon-2018": parse_amazon_2018,
    "yahoo-r3": parse_yahoo_r3,
    "coat": parse_coat,
}
