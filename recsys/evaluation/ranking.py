"""Chunked top-K over a scoring function: never more than one ``[batch, n_items]`` block of scores at once."""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from recsys.data.csr import gather_rows

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def csr_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local row index, column) pairs of the nonzeros in ``matrix[rows]``; local rows index into ``rows``."""
    cols, lengths = gather_rows(matrix.indptr, matrix.indices, rows)
    return np.repeat(np.arange(len(rows)), lengths), cols


def _index(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    local, cols = csr_rows(matrix, rows)
    return torch.from_numpy(local).to(device), torch.from_numpy(cols.astype(np.int64)).to(device)


def top_k(
    score: ScoreFn,
    users: np.ndarray,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    candidates: sp.csr_matrix | None = None,
    batch_size: int = 1024,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items of ``score`` for each user code, in batches.

    Args:
        score: maps ``[B]`` int64 user codes (a CPU tensor) to ``[B, n_items]`` scores on any device; the
            returned tensor is masked in place, so it must not be a view of model state.
        users: ``[U]`` user codes.
        k: list length.
        exclude: users × items CSR; its nonzeros are never recommended (e.g. training items).
        candidates: users × items CSR; when given, only its nonzeros are ranked (sampled evaluation).
        batch_size: users scored at once; peak memory is about ``batch_size × n_items × 4`` bytes.
        progress: show a progress bar.

    Returns:
        ``items [U, k]`` int64 and ``scores [U, k]`` float32, best first; excluded or non-candidate slots (when
        a user has fewer than ``k`` rankable items) have score ``-inf``.
    """
    n = len(users)
    items_out = np.empty((n, k), dtype=np.int64)
    scores_out = np.empty((n, k), dtype=np.float32)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="ranking", unit="batch", leave=False)
    with torch.inference_mode():
        for start in starts:
            batch = users[start : start + batch_size]
            block = score(torch.from_numpy(np.array(batch, dtype=np.int64))).to(torch.float32)
            if candidates is not None:
                r, c = _index(candidates, batch, block.device)
                kept = torch.full_like(block, -torch.inf)
                kept[r, c] = block[r, c]
                block = kept
            if exclude is not None:
                r, c = _index(exclude, batch, block.device)
                block[r, c] = -torch.inf
            values, indices = torch.topk(block, k, dim=1)
            items_out[start : start + len(batch)] = indices.cpu().numpy()
            scores_out[start : start + len(batch)] = values.cpu().numpy()
    return items_out, scores_out
