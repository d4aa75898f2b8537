"""Vectorised row gathers from CSR-style ``(indptr, values)`` arrays, and binary users × items matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def binary_csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """0/1 CSR with sorted indices of the ``(users[k], items[k])`` pairs; a pair listed twice counts once."""
    # The COO → CSR conversion sums duplicates (cheaper than deduplicating first); the sums become 1.
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def gather_rows(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``values[indptr[r]:indptr[r+1]]`` of each of ``rows``, and each row's length.

    Returns ``(values [nnz], lengths [len(rows)])``, without a Python loop over rows.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return values[np.repeat(starts, lengths) + offsets], lengths
