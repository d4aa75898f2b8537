"""Sample selections: which training samples a pruned fine-tuning trains on, as a Parquet file of one row per
sample with its identity in the training split — ``user`` (raw id), ``position`` (the target's index in the user's
time-ordered training sequence) and ``item`` (the target's raw id, a check that the split is the same).

`read_selection` validates such a file against a training split and fails on the first row that names no
training sample (wrong user, position past the sequence, another item there), so nothing is silently dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.errors import RunError

COLUMNS = ("user", "position", "item")


@dataclass(frozen=True)
class Selection:
    """A validated selection: ``users`` (codes) and ``positions`` ``[S]``, the file it came from and its hash."""

    users: np.ndarray
    positions: np.ndarray
    path: str
    sha256: str

    def __len__(self) -> int:
        return len(self.users)

    def keys(self) -> np.ndarray:
        """``[S]`` one int64 key per sample, ``user · 2³² + position``."""
        return sample_keys(self.users, self.positions)

    def provenance(self) -> dict[str, str | int]:
        """What a run record keeps of it."""
        return {"selection": self.path, "selection_sha256": self.sha256, "selected_samples": len(self)}


def sample_keys(users: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``[N]`` int64 keys of (user code, position) pairs."""
    return np.asarray(users, dtype=np.int64) * (1 << 32) + np.asarray(positions, dtype=np.int64)


def read_selection(path: str | Path, train: Interactions) -> Selection:
    """Read and check a selection file against the training split ``train``; a `RunError` names the file and the
    first bad row."""
    path = Path(path)
    try:
        frame = pl.read_parquet(path)
    except FileNotFoundError as err:
        raise RunError(f"{path}: no such selection file") from err
    except Exception as err:  # polars raises several error types for a file that is not Parquet
        raise RunError(f"{path}: not a readable Parquet selection: {err}") from err
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise RunError(f"{path}: selection lacks column(s) {missing}; it needs {list(COLUMNS)}")
    if frame.is_empty():
        raise RunError(f"{path}: the selection names no sample")
    if frame.select(COLUMNS).null_count().sum_horizontal().item():
        row = frame.with_row_index("_row").filter(pl.any_horizontal(pl.col(COLUMNS).is_null()))["_row"][0]
        raise RunError(f"{path}: row {row} has an empty user, position or item")
    sequences = Sequences.from_interactions(train)
    users = _codes(train, "users", frame["user"], path)
    items = _codes(train, "items", frame["item"], path)
    positions = frame["position"].cast(pl.Int64).to_numpy()
    lengths = sequences.lengths[np.maximum(users, 0)]
    inside = (users >= 0) & (positions >= 1) & (positions < lengths)
    at = np.clip(sequences.indptr[np.maximum(users, 0)] + np.where(inside, positions, 0), 0, len(sequences.items) - 1)
    found = np.where(inside, sequences.items[at], -1)
    bad = np.flatnonzero(~inside | (items < 0) | (found != items))
    if len(bad):
        row = int(bad[0])
        values = frame.row(row, named=True)
        raise RunError(f"{path}: row {row} (user {values['user']!r}, position {values['position']}, item "
                       f"{values['item']!r}) names no training sample of {train.name}: "
                       f"{_why(users[row], positions[row], items[row], found[row], lengths[row])}; "
                       f"{len(bad)} of {len(frame)} rows are unknown")  # fmt: skip
    keys = sample_keys(users, positions)
    if len(np.unique(keys)) != len(keys):
        _, first = np.unique(keys, return_index=True)
        row = int(np.setdiff1d(np.arange(len(keys)), first)[0])
        raise RunError(f"{path}: row {row} repeats a sample named before (user {frame['user'][row]!r}, position "
                       f"{frame['position'][row]})")  # fmt: skip
    return Selection(users=users, positions=positions, path=str(path), sha256=_sha256(path))


def _codes(train: Interactions, which: str, raw: pl.Series, path: Path) -> np.ndarray:
    """Codes of raw ids (-1 where the training vocabulary lacks one)."""
    vocabulary = getattr(train, which)
    try:
        return vocabulary.encode(raw, strict=False).fill_null(-1).to_numpy().astype(np.int64)
    except Exception as err:  # a column of another type than the vocabulary's
        raise RunError(f"{path}: column {which[:-1]!r} cannot be read as {train.name}'s ids: {err}") from err


def _why(user: int, position: int, item: int, found: int, length: int) -> str:
    if user < 0:
        return "no such user in the training split"
    if not 1 <= position < length:
        return f"the user's training sequence has positions 1..{length - 1} as targets"
    if item < 0:
        return "no such item in the training split"
    return "another item is at that position"


def write_selection(path: Path, frame: pl.DataFrame) -> None:
    """Write a selection (``user``, ``position``, ``item`` and any score columns) as Parquet."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"a selection needs columns {list(COLUMNS)}; missing {missing}")
    frame.write_parquet(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
