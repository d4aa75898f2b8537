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
    """One field's ids in blocks of descending training frequency (block 0 holds the most frequent ids).

    Attributes:
        block_of: ``[rows]`` int8 block of each id. Inside a block, ids keep their own order (an id's row in its
            block's table is the number of smaller ids in the block), so one byte an id is all a mixed-dimension
            table stores besides its weights.
        mass: share of the field's training lookups that fall in each block (sums to 1; by size without data).
    """

    block_of: np.ndarray
    mass: tuple[float, ...]

    @classmethod
    def from_counts(cls, counts: np.ndarray, split: int | Sequence[float]) -> FrequencyBlocks:
        """Blocks of the ids of ``counts`` (``[rows]`` lookups per id; ties keep id order).

        Args:
            counts: how often each id occurs in the training data.
            split: the number of equal blocks, or the fraction of ids in each block (summing to 1), as the DNIS
                code's ``feature_split`` (e.g. ``[0.1, 0.2, 0.2, 0.2, 0.3]``); at most 127 blocks.
        """
        counts = np.asarray(counts, dtype=np.float64)
        rows = len(counts)
        fractions = np.full(split, 1.0 / split) if isinstance(split, int) else np.asarray(split, dtype=np.float64)
        if not 1 <= len(fractions) <= 127 or (fractions <= 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
            raise ValueError(f"split must be 1-127 blocks or positive fractions summing to 1, got {split!r}")
        bounds = np.concatenate([[0], np.round(np.cumsum(fractions) * rows)]).astype(np.int64)
        bounds[-1] = rows
        block_of = np.empty(rows, dtype=np.int8)
        block_of[np.argsort(-counts, kind="stable")] = np.repeat(np.arange(len(fractions)), np.diff(bounds))
        total = counts.sum()
        per_block = np.bincount(block_of, weights=counts, minlength=len(fractions))
        mass = per_block / total if total > 0 else np.diff(bounds) / max(rows, 1)
        return cls(block_of, tuple(float(m) for m in mass))

    @property
    def n_blocks(self) -> int:
        return len(self.mass)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in np.bincount(self.block_of, minlength=self.n_blocks))

    @property
    def position(self) -> np.ndarray:
        """``[rows]`` int64 row of each id in its block's table."""
        position = np.empty(len(self.block_of), dtype=np.int64)
        for b in range(self.n_blocks):
            members = self.block_of == b
            position[members] = np.arange(int(members.sum()))
        return position

    def ids(self, block: int) -> np.ndarray:
        """The ids of ``block``, in the order of their rows in the block's table."""
        return np.flatnonzero(self.block_of == block)


def field_counts(space: FeatureSpace, part: Interactions, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{field: [cardinality] lookups}``: how often each feature id of the fields ``names`` is looked up by the
    split's (user, item) rows (a genre counts once per interaction of an item that has it)."""
    counts = {}
    for name in names:
        field = space.field(name)
        values, _ = field.lookup(part.frame[field.side].to_numpy())
        counts[name] = np.bincount(values, minlength=field.cardinality).astype(np.int64)
    return counts
