"""Frequency blocks: a field's feature ids sorted by how often training data looks them up, cut into contiguous
blocks (block 0 holds the most frequent ids). DNIS learns, and mixed-dimension tables store, one set of embedding
dimensions per block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recsys.data.features import FeatureSpace
from recsys.data.interactions import Interactions


@dataclass(frozen=True)
class FrequencyBlocks:
    """One field's ids in blocks of descending training frequency.

    Attributes:
        rank: ``[rows]`` int32 frequency rank of each id (0 = most frequent; ties keep id order). Block ``b``
            holds the ranks ``bounds[b] .. bounds[b+1] - 1``, so an id's block and its row in the block's table
            follow from its rank: four bytes an id is all a mixed-dimension table stores besides its weights.
        bounds: ``[S + 1]`` int64 rank offsets of the blocks.
        mass: share of the field's training lookups that fall in each block (sums to 1; by size without data).
    """

    rank: np.ndarray
    bounds: np.ndarray
    mass: tuple[float, ...]

    @classmethod
    def from_counts(cls, counts: np.ndarray, split: int | Sequence[float]) -> FrequencyBlocks:
        """Blocks of the ids of ``counts`` (``[rows]`` lookups per id).

        Args:
            counts: how often each id occurs in the training data.
            split: the number of equal blocks, or the fraction of ids in each block (summing to 1), as the DNIS
                code's ``feature_split`` (e.g. ``[0.1, 0.2, 0.2, 0.2, 0.3]``).
        """
        counts = np.asarray(counts, dtype=np.float64)
        rows = len(counts)
        fractions = np.full(split, 1.0 / split) if isinstance(split, int) else np.asarray(split, dtype=np.float64)
        if len(fractions) < 1 or (fractions <= 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
            raise ValueError(f"split must be a positive number of blocks or positive fractions summing to 1, got {split!r}")
        bounds = np.concatenate([[0], np.round(np.cumsum(fractions) * rows)]).astype(np.int64)
        bounds[-1] = rows
        rank = np.empty(rows, dtype=np.int32)
        rank[np.argsort(-counts, kind="stable")] = np.arange(rows, dtype=np.int32)
        sizes = np.diff(bounds)
        total = counts.sum()
        per_block = np.bincount(np.repeat(np.arange(len(sizes)), sizes), weights=np.sort(counts)[::-1], minlength=len(sizes))
        mass = per_block / total if total > 0 else sizes / max(rows, 1)
        return cls(rank, bounds, tuple(float(m) for m in mass))

    @property
    def n_blocks(self) -> int:
        return len(self.bounds) - 1

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in np.diff(self.bounds))

    @property
    def block_of(self) -> np.ndarray:
        """``[rows]`` int64 block of each id."""
        return np.searchsorted(self.bounds, self.rank, side="right") - 1

    def ids(self, block: int) -> np.ndarray:
        """The ids of ``block``, in the order of their rows in the block's table."""
        order = np.argsort(self.rank, kind="stable")
        return order[self.bounds[block] : self.bounds[block + 1]]


def field_counts(space: FeatureSpace, part: Interactions, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{field: [cardinality] lookups}``: how often each feature id of the fields ``names`` is looked up by the
    split's (user, item) rows (a genre counts once per interaction of an item that has it)."""
    counts = {}
    for name in names:
        field = space.field(name)
        values, _ = field.lookup(part.frame[field.side].to_numpy())
        counts[name] = np.bincount(values, minlength=field.cardinality).astype(np.int64)
    return counts
