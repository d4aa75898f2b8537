"""Each dataset-format parser reads faithful fixtures of the real files exactly, and bad input fails clearly."""

from __future__ import annotations

import gzip
import re
import importlib.util
from pathlib import Path

import polars as pl
import pytest

from recsys.data.formats import ML100K_GENRES, PARSERS, RawTables
from recsys.data.registry import DatasetCard, available_cards
from recsys.data.validation import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Parser name → role → fixture file, in the roles the cards use.
FORMAT_FIXTURES: dict[str, dict[str, Path]] = {
    "movielens-100k": {
        "ratings": FIXTURES / "ml-100k" / "u.data",
        "items": FIXTURES / "ml-100k" / "u.item",
        "users": FIXTURES / "ml-100k" / "u.user",
    },
    "recbole-atomic": {
        "ratings": FIXTURES / "ml-100k-recbole" / "ml-100k.inter",
        "items": FIXTURES / "ml-100k-recbole" / "ml-100k.item",
        "users": FIXTURES / "ml-100k-recbole" / "ml-100k.user",
    },
    "movielens-1m": {
        "ratings": FIXTURES / "ml-1m" / "ratings.dat",
        "items": FIXTURES / "ml-1m" / "movies.dat",
        "users": FIXTURES / "ml-1m" / "users.dat",
    },
    "movielens-csv": {
        "ratings": FIXTURES / "ml-20m" / "ratings.csv",
        "items": FIXTURES / "ml-20m" / "movies.csv",
    },
    "amazon-2014": {
        "ratings": FIXTURES / "amazon2014" / "reviews_Beauty_5.json.gz",
        "items": FIXTURES / "amazon2014" / "meta_Beauty.json.gz",
    },
    "amazon-2018": {
        "ratings": FIXTURES / "amazon2018" / "All_Beauty_5.json.gz",
        "items": FIXTURES / "amazon2018" / "meta_All_Beauty.json.gz",
    },
    "yahoo-r3": {
        "train": FIXTURES / "yahoo-r3" / "ydata-ymusic-rating-study-v1_0-train.txt",
        "test": FIXTURES / "yahoo-r3" / "ydata-ymusic-rating-study-v1_0-test.txt",
    },
    "coat": {
        "train": FIXTURES / "coat" / "train.ascii",
        "test": FIXTURES / "coat" / "test.ascii",
        "users": FIXTURES / "coat" / "user_item_features" / "user_features.ascii",
        "items": FIXTURES / "coat" / "user_item_features" / "item_features.ascii",
    },
}

CARDS = available_cards()


def parse(fmt: str, **overrides: Path) -> RawTables:
    return PARSERS[fmt]({**FORMAT_FIXTURES[fmt], **overrides})


def by_item(frame: pl.DataFrame, key: str = "item") -> dict:
    return {row[key]: row for row in frame.iter_rows(named=True)}


def ratings(frame: pl.DataFrame) -> list[float]:
    return frame["rating"].cast(pl.Float64).to_list()


def timestamps(frame: pl.DataFrame) -> list[int]:
    return frame["timestamp"].cast(pl.Int64).to_list()


# ------------------------------------------------------------------------------------------------ fixtures
def test_fixture_files_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.all_fixtures()
    for rel, data in expected.items():
        assert (FIXTURES / rel).read_bytes() == data, f"{rel} is stale: rerun tests/fixtures/make_fixtures.py"
    assert module.all_fixtures() == expected  # deterministic (gzip mtime=0)


def test_every_parser_has_a_fixture() -> None:
    assert set(FORMAT_FIXTURES) == set(PARSERS)
    for files in FORMAT_FIXTURES.values():
        for path in files.values():
            assert path.is_file(), path


# ------------------------------------------------------------------------------------------------ cards
def test_cards_exist() -> None:
    assert {"ml-100k", "ml-1m", "ml-20m", "coat", "yahoo-r3", "amazon2014-beauty", "amazon2018-beauty"} <= set(CARDS)


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_loads_and_each_source_parses_its_fixture(name: str) -> None:
    card = DatasetCard.from_file(CARDS[name].path)
    assert card.name == name == card.path.stem
    assert card.sources, f"{name}: card has no sources"
    for source in card.sources:
        assert source.format in PARSERS, f"{name}/{source.name}: unknown format {source.format!r}"
        if source.format not in FORMAT_FIXTURES:
            pytest.fail(f"{name}/{source.name}: format {source.format!r} has no fixture in tests/fixtures")
        fixtures = FORMAT_FIXTURES[source.format]
        missing = set(source.files) - set(fixtures)
        assert not missing, f"{name}/{source.name}: roles {missing} have no fixture for {source.format}"
        assert source.is_manual == (source.instructions is not None), f"{name}/{source.name}: manual needs instructions"
        tables = PARSERS[source.format]({role: fixtures[role] for role in source.files})
        assert tables.interactions.height > 0
        assert {"user", "item"} <= set(tables.interactions.columns)


# ------------------------------------------------------------------------------------------------ MovieLens 100k
def test_movielens_100k_ratings() -> None:
    inter = parse("movielens-100k").interactions
    assert inter.columns == ["user", "item", "rating", "timestamp"]
    assert inter["user"].dtype == pl.Int64 and inter["item"].dtype == pl.Int64
    assert inter["user"].to_list() == [1, 1, 2, 2, 3, 3]
    assert inter["item"].to_list() == [1, 2, 1, 543, 23, 267]
    assert ratings(inter) == [5.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    assert timestamps(inter) == [874965758, 876893171, 888550871, 888551022, 889237455, 889237499]


def test_movielens_100k_items() -> None:
    items = parse("movielens-100k").items
    assert items.columns == ["item", "title", "year", "genres"]
    assert items["item"].to_list() == [1, 2, 23, 267, 543]
    rows = by_item(items)
    assert rows[1] == {"item": 1, "title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    assert rows[2]["genres"] == ["Action", "Adventure", "Thriller"]
    # Latin-1 byte 0xE9 decodes to é.
    assert rows[543]["title"] == "Misérables, Les"
    assert rows[543]["genres"] == ["Drama", "Musical"]
    # The year is the film's (from the title), not the 1996 re-release date of u.item.
    assert rows[23]["title"] == "Taxi Driver" and rows[23]["year"] == 1976
    assert rows[267] == {"item": 267, "title": "unknown", "year": None, "genres": ["unknown"]}


def test_movielens_100k_genre_flags_follow_u_genre_order() -> None:
    assert len(ML100K_GENRES) == 19
    assert ML100K_GENRES[0] == "unknown" and ML100K_GENRES[-1] == "Western"


def test_movielens_100k_users() -> None:
    users = parse("movielens-100k").users
    assert users.columns == ["user", "age", "gender", "occupation", "zip_code"]
    assert users.schema["age"] == pl.Int64 and users.schema["zip_code"] == pl.String
    assert users.rows() == [
        (1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (3, 23, "M", "writer", "32067")
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ RecBole atomic
def test_recbole_atomic_ml_100k() -> None:
    tables = parse("recbole-atomic")
    inter = tables.interactions
    assert inter.columns == ["user", "item", "rating", "timestamp"]
    assert inter["user"].dtype == pl.Int64 and inter["item"].dtype == pl.Int64
    assert inter["item"].to_list() == [1, 2, 1, 543, 23, 267]
    assert ratings(inter) == [5.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    rows = by_item(tables.items)
    assert tables.items.columns == ["item", "title", "year", "genres"]
    assert rows[1] == {"item": 1, "title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    assert rows[543]["title"] == "Misérables, Les"
    assert rows[267]["year"] is None  # RecBole's release_year for it is the token 'unkonwn'
    assert tables.users.rows()[1] == (2, 53, "F", "other", "94043")


def test_recbole_and_grouplens_sources_of_ml_100k_agree() -> None:
    """Both sources of the ml-100k card must give the same ids, ratings and features."""
    grouplens, recbole = parse("movielens-100k"), parse("recbole-atomic")
    cast = [pl.col("rating").cast(pl.Float64), pl.col("timestamp").cast(pl.Int64)]
    assert grouplens.interactions.with_columns(cast).equals(recbole.interactions.with_columns(cast))
    assert grouplens.users.equals(recbole.users)
    known = pl.col("item") != 267  # RecBole spells the unknown movie's title 'unkonwn'
    assert grouplens.items.filter(known).equals(recbole.items.filter(known))


# ------------------------------------------------------------------------------------------------ MovieLens 1M
def test_movielens_1m() -> None:
    tables = parse("movielens-1m")
    inter = tables.interactions
    assert inter["user"].to_list() == [1, 1, 1, 2, 2]
    assert inter["item"].to_list() == [1193, 1, 73, 1193, 30]
    assert ratings(inter) == [5.0, 5.0, 4.0, 5.0, 3.0]
    assert timestamps(inter) == [978300760, 978824268, 978301968, 978298709, 978299620]
    rows = by_item(tables.items)
    assert rows[1] == {"item": 1, "title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    assert rows[73]["title"] == "Misérables, Les"  # Latin-1
    # Only the trailing year is stripped, not an earlier parenthesised alternative title.
    assert rows[30]["title"] == "Shanghai Triad (Yao a yao yao dao waipo qiao)" and rows[30]["year"] == 1995
    assert rows[1193] == {"item": 1193, "title": "One Flew Over the Cuckoo's Nest", "year": 1975, "genres": ["Drama"]}
    users = tables.users
    assert users.columns == ["user", "gender", "age", "occupation", "zip_code"]
    assert users.rows() == [(1, "F", 1, "10", "48067"), (2, "M", 56, "16", "70072")]


# ------------------------------------------------------------------------------------------------ MovieLens 20M
def test_movielens_csv_ml_20m() -> None:
    tables = parse("movielens-csv")
    inter = tables.interactions
    assert inter.columns == ["user", "item", "rating", "timestamp"]
    assert inter["user"].to_list() == [1, 1, 1, 2, 2]
    assert inter["item"].to_list() == [2, 29, 11, 1, 11]
    assert ratings(inter) == [3.5, 3.5, 0.5, 4.0, 5.0]
    assert timestamps(inter) == [1112486027, 1112484676, 1112484819, 974820889, 974820691]
    assert tables.users is None
    rows = by_item(tables.items)
    assert tables.items["item"].to_list() == [1, 2, 11, 29]
    assert rows[11]["title"] == "American President, The"  # quoted field with a comma
    assert rows[11]["year"] == 1995 and rows[11]["genres"] == ["Comedy", "Drama", "Romance"]
    assert rows[29]["title"] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert rows[29]["genres"] == ["Adventure", "Drama", "Fantasy", "Mystery", "Sci-Fi"]
    assert rows[1]["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]


# ------------------------------------------------------------------------------------------------ Amazon
def test_amazon_2014_reviews() -> None:
    inter = parse("amazon-2014").interactions
    assert inter.schema == {"user": pl.String, "item": pl.String, "rating": pl.Float64, "timestamp": pl.Int64}
    assert inter["user"].to_list() == ["A1YJEY40YUW4SE", "A60XNB876KYML", "A3G6XNM240RMWA", "A1YJEY40YUW4SE"]
    assert inter["item"].to_list() == ["7806397051", "7806397051", "9759091062", "B00004TMFE"]
    assert inter["rating"].to_list() == [1.0, 3.0, 4.0, 5.0]
    assert inter["timestamp"].to_list() == [1391040000, 1397779200, 1378425600, 1355270400]


def test_amazon_2014_metadata_python_literals() -> None:
    items = parse("amazon-2014").items
    assert items.columns == ["item", "title", "brand", "categories"]
    rows = by_item(items)
    assert items["item"].to_list() == ["7806397051", "9759091062", "B00004TMFE"]
    assert rows["7806397051"]["title"] == "Salon Pro Eyeshadow Palette"
    assert rows["7806397051"]["brand"] == "Salon Pro"
    # Category paths are flattened into one sorted, de-duplicated list.
    assert rows["7806397051"]["categories"] == ["Beauty", "Eye Shadow", "Eyes", "Makeup", "Makeup Palettes"]
    assert rows["9759091062"]["title"] == "Xtreme Brite's Brightening Gel 1oz."  # double-quoted literal
    assert rows["9759091062"]["categories"] == ["Beauty", "Creams & Moisturizers", "Face", "Skin Care"]
    assert rows["B00004TMFE"] == {"item": "B00004TMFE", "title": None, "brand": None, "categories": ["Beauty"]}


def test_amazon_2014_reviews_without_metadata() -> None:
    tables = PARSERS["amazon-2014"]({"ratings": FORMAT_FIXTURES["amazon-2014"]["ratings"]})
    assert tables.items is None and tables.interactions.height == 4


def test_amazon_2018_reviews() -> None:
    inter = parse("amazon-2018").interactions
    assert inter.schema == {"user": pl.String, "item": pl.String, "rating": pl.Float64, "timestamp": pl.Int64}
    assert inter["user"].to_list() == ["A3CIUOJXQ5VDQ2", "A3H7T87S984REU", "A3J034YH7UG4KT", "A3H7T87S984REU"]
    assert inter["item"].to_list() == ["B0000530HU", "B0000530HU", "B0000530HU", "B00006L9LC"]
    assert inter["rating"].to_list() == [5.0, 5.0, 1.0, 4.0]
    assert inter["timestamp"].to_list() == [1472688000, 1384387200, 1376784000, 1304380800]


def test_amazon_2018_metadata_drops_duplicate_asins() -> None:
    path = FORMAT_FIXTURES["amazon-2018"]["items"]
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert len(lines) == 4  # the fixture repeats B0000530HU, as the real file does
    items = parse("amazon-2018").items
    assert items.columns == ["item", "title", "brand", "categories"]
    assert items["item"].to_list() == ["0143026860", "B0000530HU", "B00006L9LC"]
    rows = by_item(items)
    assert rows["0143026860"]["categories"] == ["Beauty & Personal Care", "Skin Care", "Face"]  # path order kept
    assert rows["0143026860"]["title"] == "Howard LC0008 Leather Conditioner, 8oz (Packaging may vary)"
    assert rows["B0000530HU"] == {
        "item": "B0000530HU",
        "title": "Gillette Foamy Sensitive Skin Shave Foam 11 oz",
        "brand": "Gillette",
        "categories": [],
    }


# ------------------------------------------------------------------------------------------------ MNAR sets
def test_yahoo_r3_partitions() -> None:
    tables = parse("yahoo-r3")
    inter = tables.interactions
    assert inter.columns == ["user", "item", "rating", "partition"]
    assert inter["user"].dtype == pl.Int64 and inter["item"].dtype == pl.Int64
    train = inter.filter(pl.col("partition") == "train")
    test = inter.filter(pl.col("partition") == "test")
    assert train.select("user", "item").rows() == [(1, 14), (1, 35), (1, 46), (2, 12), (3, 14)]
    assert ratings(train) == [5.0, 1.0, 1.0, 3.0, 2.0]
    assert test.select("user", "item").rows() == [(1, 5), (1, 14), (2, 12), (3, 40)]
    assert ratings(test) == [3.0, 4.0, 1.0, 5.0]
    assert tables.users is None and tables.items is None


def test_coat_matrices_and_features() -> None:
    tables = parse("coat")
    inter = tables.interactions
    assert inter.schema == {"user": pl.Int64, "item": pl.Int64, "rating": pl.Float64, "partition": pl.String}
    train = inter.filter(pl.col("partition") == "train")
    test = inter.filter(pl.col("partition") == "test")
    # Zero-based (row, column) of every non-zero cell, row-major.
    assert train.select("user", "item", "rating").rows() == [
        (0, 2, 4.0), (0, 4, 2.0), (1, 0, 1.0), (1, 3, 5.0), (2, 1, 3.0), (3, 4, 4.0)
    ]  # fmt: skip
    assert test.select("user", "item", "rating").rows() == [
        (0, 0, 2.0), (0, 4, 3.0), (1, 2, 5.0), (2, 1, 4.0), (2, 3, 1.0), (3, 0, 3.0)
    ]  # fmt: skip
    users, items = tables.users, tables.items
    assert users["user"].to_list() == [0, 1, 2, 3]
    assert [list(f) for f in users["features"].to_list()] == [
        [1, 0, 0, 1, 0], [0, 1, 1, 0, 0], [0, 1, 0, 0, 1], [1, 0, 0, 1, 0]
    ]  # fmt: skip
    assert items["item"].to_list() == [0, 1, 2, 3, 4]
    assert [list(f) for f in items["features"].to_list()][1] == [1, 0, 0, 1]


# ------------------------------------------------------------------------------------------------ bad input
def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_wrong_delimiter_is_named(tmp_path: Path) -> None:
    spaced = write(tmp_path, "u.data", "1 1 5 874965758\n1 2 3 876893171\n")
    with pytest.raises(DataError, match=r"u\.data: expected 4 '\\t'-separated fields.*found 1.*delimiter"):
        parse("movielens-100k", ratings=spaced)


def test_ml_1m_single_colon_separator_is_rejected(tmp_path: Path) -> None:
    bad = write(tmp_path, "ratings.dat", "1:1193:5:978300760\n")
    with pytest.raises(DataError, match=r"ratings\.dat: expected 4 '::'-separated fields.*delimiter"):
        parse("movielens-1m", ratings=bad)


def test_u_item_with_a_missing_genre_flag(tmp_path: Path) -> None:
    lines = FORMAT_FIXTURES["movielens-100k"]["items"].read_bytes().split(b"\n")
    lines[0] = lines[0].rsplit(b"|", 1)[0]  # 23 fields instead of 24
    bad = write(tmp_path, "u.item", b"\n".join(lines))
    with pytest.raises(DataError, match=r"u\.item: expected 24 '\|'-separated fields.*found 23"):
        parse("movielens-100k", items=bad)


def test_row_with_extra_fields(tmp_path: Path) -> None:
    bad = write(tmp_path, "u.data", "1\t1\t5\t874965758\n1\t2\t3\t876893171\t9\n")
    with pytest.raises(DataError, match=r"u\.data: cannot parse"):
        parse("movielens-100k", ratings=bad)


@pytest.mark.parametrize(
    ("fmt", "role", "name", "data"),
    [
        ("movielens-100k", "ratings", "u.data", b""),
        ("movielens-1m", "ratings", "ratings.dat", b"\n\n"),
        ("movielens-csv", "ratings", "ratings.csv", b""),
        ("recbole-atomic", "ratings", "ml-100k.inter", b""),
        ("amazon-2014", "ratings", "reviews_Beauty_5.json.gz", gzip.compress(b"", mtime=0)),
        ("amazon-2018", "items", "meta_All_Beauty.json.gz", gzip.compress(b"\n", mtime=0)),
        ("yahoo-r3", "test", "ydata-ymusic-rating-study-v1_0-test.txt", b""),
        ("coat", "train", "train.ascii", b" \n"),
    ],
)
def test_empty_file(tmp_path: Path, fmt: str, role: str, name: str, data: bytes) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(DataError, match=re.escape(name) + ": file is empty"):
        parse(fmt, **{role: path})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u\.user: file not found"):
        parse("movielens-100k", users=tmp_path / "u.user")


def test_amazon_bad_json_line_is_numbered(tmp_path: Path) -> None:
    good = gzip.decompress(FORMAT_FIXTURES["amazon-2018"]["ratings"].read_bytes()).decode().splitlines()
    truncated = "\n".join([good[0], good[1][:40], good[2]]) + "\n"
    bad = write(tmp_path, "All_Beauty_5.json.gz", gzip.compress(truncated.encode()))
    with pytest.raises(DataError, match=r"All_Beauty_5\.json\.gz: line 2 is not a valid record"):
        parse("amazon-2018", ratings=bad)


def test_amazon_2018_metadata_must_be_strict_json(tmp_path: Path) -> None:
    bad = write(tmp_path, "meta_All_Beauty.json.gz", gzip.compress(b"{'asin': 'B0000530HU', 'title': 'x'}\n"))
    with pytest.raises(DataError, match=r"meta_All_Beauty\.json\.gz: line 1 is not a valid record"):
        parse("amazon-2018", items=bad)


def test_amazon_2014_bad_metadata_literal_is_numbered(tmp_path: Path) -> None:
    good = gzip.decompress(FORMAT_FIXTURES["amazon-2014"]["items"].read_bytes()).decode().splitlines()
    lines = [good[0], good[1], good[2][:-1]]  # unbalanced brace on line 3
    bad = write(tmp_path, "meta_Beauty.json.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataError, match=r"meta_Beauty\.json\.gz: line 3 is not a valid record"):
        parse("amazon-2014", items=bad)


def test_amazon_review_without_rating_field(tmp_path: Path) -> None:
    lines = [
        '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1}',
        '{"reviewerID": "A2", "asin": "B1", "unixReviewTime": 2}',
    ]
    bad = write(tmp_path, "reviews_Beauty_5.json.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataError, match=r"reviews_Beauty_5\.json\.gz: record 2 lacks field\(s\) \['overall'\]"):
        parse("amazon-2014", ratings=bad)


def test_plain_json_lines_are_read_too(tmp_path: Path) -> None:
    text = gzip.decompress(FORMAT_FIXTURES["amazon-2018"]["ratings"].read_bytes())
    plain = write(tmp_path, "All_Beauty_5.json", text)
    assert parse("amazon-2018", ratings=plain).interactions.equals(parse("amazon-2018").interactions)


def test_recbole_header_without_types(tmp_path: Path) -> None:
    bad = write(tmp_path, "ml-100k.inter", "user_id\titem_id\trating\ttimestamp\n1\t1\t5\t874965758\n")
    with pytest.raises(DataError, match=r"ml-100k\.inter: header .* not RecBole's 'name:type' form"):
        parse("recbole-atomic", ratings=bad)


def test_coat_ragged_matrix(tmp_path: Path) -> None:
    bad = write(tmp_path, "test.ascii", "2 0 0 0 3\n0 0 5 0\n")
    with pytest.raises(DataError, match=r"test\.ascii: row 2 has 4 values, the first row has 5"):
        parse("coat", test=bad)


def test_coat_non_numeric_cell(tmp_path: Path) -> None:
    bad = write(tmp_path, "train.ascii", "0 0 4 0 2\n1 0 x 5 0\n")
    with pytest.raises(DataError, match=r"train\.ascii: non-numeric value"):
        parse("coat", train=bad)
