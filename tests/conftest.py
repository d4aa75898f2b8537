"""Shared fixtures: the real ML-100k (prepared once into the user's cache) and a small synthetic dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

# Lightning gives its loggers a stream handler of the stderr of the moment it is first imported; imported here,
# that is the session's, not the captured stderr of whichever test happens to import it first (closed after it).
import lightning  # noqa: F401
import numpy as np
import polars as pl
import pytest

import recsys
from recsys.data.interactions import Interactions
from recsys.data.registry import import_file


@pytest.fixture(scope="session", autouse=True)
def private_trainer_registry(tmp_path_factory) -> Iterator[None]:
    """A registry of training processes (`recsys.threads`) of this test session alone, so the fits here train with
    the same threads whatever else trains on the machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
        yield


@pytest.fixture(scope="session")
def ml100k() -> Interactions:
    """MovieLens-100k from the offline RecBole wheel (or GroupLens when reachable), cached after first use."""
    return recsys.datasets.load("ml-100k")


@pytest.fixture(scope="session")
def small_frame() -> pl.DataFrame:
    """60 users × 40 items of random raw-id interactions with timestamps and ratings."""
    rng = np.random.default_rng(7)
    rows = []
    for user in range(60):
        items = rng.choice(40, size=int(rng.integers(5, 15)), replace=False)
        rows += [(f"user{user}", 1000 + int(i), float(rng.integers(1, 6)), int(rng.integers(0, 10_000))) for i in items]
    return pl.DataFrame(rows, schema=["uid", "iid", "stars", "ts"], orient="row")


def import_tiny(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """50 users × 12 of 60 items with timestamps, imported as ``tiny`` into a data cache under ``folder``
    (returned), for end-to-end runs of configs that name a dataset."""
    monkeypatch.setenv("RECSYS_DATA_DIR", str(folder / "cache"))
    rng = np.random.default_rng(5)
    rows = [(u, int(i), int(t)) for u in range(50) for t, i in enumerate(rng.choice(60, 12, replace=False))]
    pl.DataFrame(rows, schema=["u", "i", "t"], orient="row").write_csv(folder / "tiny.csv")
    import_file(folder / "tiny.csv", name="tiny", user_col="u", item_col="i", timestamp_col="t")
    return folder


@pytest.fixture()
def tiny_dataset(tmp_path, monkeypatch) -> Path:
    """`import_tiny` for one test."""
    return import_tiny(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def tiny_dataset_module(tmp_path_factory) -> Iterator[Path]:
    """`import_tiny` for the tests of one module (for runs fitted once and read by several tests)."""
    with pytest.MonkeyPatch.context() as patch:
        yield import_tiny(tmp_path_factory.mktemp("tiny"), patch)


@pytest.fixture(scope="module")
def rich() -> Interactions:
    """Users and items with side features, a multi-valued genre bag and a missing feature row."""
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"user": rng.integers(0, 12, 80), "item": rng.integers(100, 115, 80), "rating": rng.integers(1, 6, 80)})
    users = pl.DataFrame({"user": list(range(11)), "age": [15, 22, 30, 40, 47, 52, 60, 33, 27, 19, 45],
                          "gender": list("MFMFMFMFMFM"), "occupation": ["a", "b", "c"] * 3 + ["a", "b"]})  # fmt: skip
    items = pl.DataFrame({"item": list(range(100, 115)), "year": [1940 + 5 * i for i in range(15)],
                          "genres": [["x"], ["x", "y"], ["y", "z"], [], ["z"]] * 3})  # fmt: skip
    frame = frame.unique(["user", "item"])
    return Interactions.from_frame(frame, rating_col="rating", user_features=users, item_features=items)
