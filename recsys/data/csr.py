"""Vectorised row gathers from CSR-style ``(indptr, values)`` arrays."""

from __future__ import annotations

import numpy as np


def gather_rows(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``values[indptr[r]:indptr[r+1]]`` of each of ``rows``, and each row's length.

    Returns ``(values [nnz], lengths [len(rows)])``, without a Python loop over rows.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return values[np.repeat(starts, lengths) + offsets], lengths
