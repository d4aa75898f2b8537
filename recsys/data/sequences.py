"""Per-user item sequences in time order, as CSR-style arrays, and the padded tensors sequential models read.

`Sequences` holds every user's items (time order, file order breaking ties) as ``indptr [U + 1]`` and
``items [E]``; all views are vectorised (no Python loop over users). Padding uses the id ``n_items`` (one past
the last item code), so an item table for sequences has ``n_items + 1`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from recsys.data.interactions import Interactions, concat

IGNORE = -100
"""Target value of padded positions (``torch.nn.functional.cross_entropy``'s default ``ignore_index``)."""


@dataclass(frozen=True)
class Sequences:
    """Users' item sequences. ``items[indptr[u]:indptr[u + 1]]`` is user ``u``'s history, oldest first."""

    indptr: np.ndarray
    items: np.ndarray
    n_items: int

    @classmethod
    def from_interactions(cls, *parts: Interactions) -> Sequences:
        """Sequences of the union of ``parts`` (splits of one dataset, e.g. train and valid), by timestamp."""
        data = parts[0] if len(parts) == 1 else concat(parts)
        frame = data.frame.with_row_index("_order")
        keys = ["user", "timestamp", "_order"] if data.has_timestamp else ["user", "_order"]
        frame = frame.sort(keys)
        counts = np.bincount(frame["user"].to_numpy(), minlength=data.n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr=indptr, items=frame["item"].to_numpy().astype(np.int64), n_items=data.n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        """``[U]`` history length per user."""
        return np.diff(self.indptr)

    @property
    def pad(self) -> int:
        return self.n_items

    def of(self, user: int) -> np.ndarray:
        """One user's items, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def truncated(self, last: int | None) -> Sequences:
        """Only each user's ``last`` most recent items (``None``: unchanged)."""
        if last is None:
            return self
        if last < 1:
            raise ValueError(f"last must be >= 1 or None, got {last}")
        keep = np.minimum(self.lengths, last)
        position = np.arange(len(self.items)) - np.repeat(self.indptr[:-1], self.lengths)  # index in the user's sequence
        kept = position >= np.repeat(self.lengths - keep, self.lengths)
        indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        return Sequences(indptr=indptr, items=self.items[kept], n_items=self.n_items)

    def last_items(self, users: np.ndarray, n: int) -> np.ndarray:
        """``[B, n]`` the last ``n`` items of each user, right-aligned, ``-1`` where the history is shorter."""
        return _right_aligned(self, np.asarray(users, dtype=np.int64), n, fill=-1)

    def padded(self, users: np.ndarray, max_len: int) -> np.ndarray:
        """``[B, max_len]`` model input: the last ``max_len`` items, left-padded with ``pad``."""
        return _right_aligned(self, np.asarray(users, dtype=np.int64), max_len, fill=self.pad)

    def transitions(self) -> tuple[np.ndarray, np.ndarray]:
        """Consecutive pairs ``(a [T], b [T])``: every ``a`` directly followed by ``b`` in one user's sequence."""
        follows = np.ones(len(self.items), dtype=bool)
        follows[self.indptr[:-1][self.lengths > 0]] = False  # a user's first item follows nothing
        idx = np.flatnonzero(follows)
        return self.items[idx - 1], self.items[idx]

    def windows(self, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Training windows: every position predicts its next item, each target exactly once.

        A user's sequence ``s`` (length ``n``) has targets ``s[1:]`` with inputs ``s[:-1]``; they are cut into
        windows of ``max_len`` from the end, right-aligned (the last window ends at the last item, a short first
        window is left-padded). Returns ``inputs [R, max_len]`` (``pad`` at padded slots) and ``targets
        [R, max_len]`` (`IGNORE` at padded slots).
        """
        n_targets = np.maximum(self.lengths - 1, 0)
        n_windows = -(-n_targets // max_len)
        first_row = np.concatenate([[0], np.cumsum(n_windows)])[:-1]
        users = np.repeat(np.arange(self.n_users), n_targets)
        # target t of user u sits at items[indptr[u] + t], t = 1..n-1; r = distance from the end (0..n-2)
        t = np.arange(len(users)) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets) + 1
        r = np.repeat(n_targets, n_targets) - t
        rows = first_row[users] + r // max_len
        slots = max_len - 1 - r % max_len
        positions = self.indptr[users] + t
        inputs = np.full((int(n_windows.sum()), max_len), self.pad, dtype=np.int64)
        targets = np.full((int(n_windows.sum()), max_len), IGNORE, dtype=np.int64)
        inputs[rows, slots] = self.items[positions - 1]
        targets[rows, slots] = self.items[positions]
        return inputs, targets


def _right_aligned(seqs: Sequences, users: np.ndarray, width: int, fill: int) -> np.ndarray:
    lengths = seqs.lengths[users]
    take = np.minimum(lengths, width)
    out = np.full((len(users), width), fill, dtype=np.int64)
    rows = np.repeat(np.arange(len(users)), take)
    offset = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)  # 0..take-1 per row
    source = np.repeat(seqs.indptr[users + 1] - take, take) + offset
    out[rows, np.repeat(width - take, take) + offset] = seqs.items[source]
    return out


def first_targets(target: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Users with a ``target`` interaction and each one's earliest target item (leave-one-out: the only one)."""
    seqs = Sequences.from_interactions(target)
    users = np.flatnonzero(seqs.lengths > 0)
    return users, seqs.items[seqs.indptr[users]]
