"""The one ranking kernel: top-K with ties broken by item code, over score blocks, scoring functions and candidate
lists. Recommending, full and sampled evaluation, IPS/MAR evaluation and the MNAR study all rank through it, so a
list never depends on which other cut-offs were asked for or on which path ranked it.

Order: higher score first; equal scores by ascending item code. ``-inf`` marks an item that must not be
recommended (excluded, not a candidate); NaN and ``+inf`` are refused, since they would otherwise rank first.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from recsys.data.csr import gather_rows

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


class NonFiniteScoreError(ValueError):
    """A model scored an item NaN or +inf (its rank would be meaningless)."""


def check_finite(
    block: torch.Tensor,
    users: np.ndarray,
    labels: Callable[[np.ndarray], Sequence] | None = None,
    items: torch.Tensor | None = None,
) -> None:
    """Raise `NonFiniteScoreError` naming the first user with a NaN / +inf score.

    Args:
        block: ``[B, N]`` scores, or each row's top values: `torch.topk` ranks NaN and +inf above every number, so
            a row's top-K holds them whenever the row has any.
        users: ``[B]`` user codes of the rows.
        labels: maps codes to the ids the message names (raw ids); the codes themselves when not given.
        items: ``[B, k]`` item codes of the slots of ``block`` when it holds top values (the columns otherwise).
    """
    bad = torch.isnan(block) | (block == torch.inf)
    if bool(bad.any()):
        row, col = (int(x) for x in bad.nonzero()[0])
        user = labels(users[row : row + 1])[0] if labels is not None else int(users[row])
        item = int(items[row, col]) if items is not None else col
        raise NonFiniteScoreError(
            f"score() returned {float(block[row, col])} for user {user!r} (item code {item}); "
            f"{int(bad.any(1).sum())} of {len(block)} users in this batch have NaN or +inf scores"
        )


def top_k_block(
    scores: torch.Tensor, k: int, check: Callable[[torch.Tensor, torch.Tensor], None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row of ``scores`` ``[B, N]``, best first, ties by ascending column.

    `torch.topk` picks among tied values arbitrarily, and differently for different ``k``; here its picks are put in
    (score desc, column asc) order, and only rows whose tie straddles the k-th place (sparse or count scores) are
    re-picked exactly. Whether a tie straddles it is read off one more top value (the (k+1)-th equals the k-th), so
    float scores pay no extra pass over the ``[B, N]`` block.

    ``check`` sees the raw top values and columns first (where NaN and +inf rank above every number).

    Returns:
        ``values [B, k]`` and ``columns [B, k]`` (int64).
    """
    values, columns = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)
    if check is not None:
        check(values, columns)
    straddling = values[:, k] == values[:, k - 1] if values.shape[1] > k else torch.zeros(len(values), dtype=torch.bool)
    values, columns = _order(values[:, :k], columns[:, :k])
    if bool(straddling.any()):
        rows = straddling.nonzero()[:, 0]
        values[rows], columns[rows] = _exact(scores[rows], k)
    return values, columns


def _order(values: torch.Tensor, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` / ``columns`` ``[B, k]`` sorted by value desc, then column asc (a stable sort after a column sort)."""
    by_column = columns.argsort(dim=1)
    values, columns = values.gather(1, by_column), columns.gather(1, by_column)
    by_value = values.argsort(dim=1, descending=True, stable=True)
    return values.gather(1, by_value), columns.gather(1, by_value)


def _exact(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact top-``k`` of rows with a tie across the k-th place: everything above the k-th value, then the
    lowest columns among the tied."""
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    wanted = k - above.sum(1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(1) <= wanted))
    columns = chosen.nonzero()[:, 1].view(len(scores), k)  # row-major: ascending columns within a row
    return _order(scores.gather(1, columns), columns)


def rank_candidates(scores: np.ndarray, items: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``[U, C]`` order that ranks each user's candidate list: valid first, higher score first, ties by item code.

    Args:
        scores: ``[U, C]`` scores of the candidates.
        items: ``[U, C]`` their item codes (the tie-break).
        valid: ``[U, C]`` False on padding (ranked last).
    """
    padding = np.zeros(scores.shape, dtype=bool) if valid is None else ~valid
    return np.lexsort((items, -scores, padding), axis=-1)


def _index(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(local row, column) index tensors of the nonzeros in ``matrix[rows]``; local rows index into ``rows``."""
    cols, lengths = gather_rows(matrix.indptr, matrix.indices, rows)
    local = np.repeat(np.arange(len(rows)), lengths)
    return torch.from_numpy(local).to(device), torch.from_numpy(cols.astype(np.int64)).to(device)


def top_k(
    score: ScoreFn,
    users: np.ndarray,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    candidates: sp.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
    batch_size: int = 1024,
    progress: bool = False,
    labels: Callable[[np.ndarray], Sequence] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items of ``score`` for each user code, in batches (never more than one ``[batch, n_items]`` block).

    Args:
        score: maps ``[B]`` int64 user codes (a CPU tensor) to ``[B, n_items]`` scores on any device; the
            returned tensor is masked in place, so it must not be a view of model state.
        users: ``[U]`` user codes.
        k: list length (at most the number of items).
        exclude: users × items CSR; its nonzeros are never recommended (e.g. training items).
        candidates: users × items CSR; when given, only its nonzeros are ranked (sampled evaluation).
        allowed: ``[n_items]`` bool; when given, only these items are ranked, for every user (a serving filter).
        batch_size: users scored at once; peak memory is about ``batch_size × n_items × 4`` bytes.
        progress: show a progress bar.
        labels: maps user codes to the ids an error message names (raw ids); codes when not given.

    Returns:
        ``items [U, k]`` int64 and ``scores [U, k]`` float32, best first, ties by item code; excluded or
        non-candidate slots (when a user has fewer than ``k`` rankable items) have score ``-inf``.

    Raises:
        NonFiniteScoreError: ``score`` returned NaN or +inf for some user.
    """
    n = len(users)
    items_out = np.empty((n, k), dtype=np.int64)
    scores_out = np.empty((n, k), dtype=np.float32)
    starts = range(0, n, batch_size)
    banned = None if allowed is None else torch.from_numpy(~np.asarray(allowed, dtype=bool))
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="ranking", unit="batch", leave=False)
    with torch.inference_mode():
        for start in starts:
            batch = np.array(users[start : start + batch_size], dtype=np.int64)  # a writable copy for torch
            block = score(torch.from_numpy(batch)).to(torch.float32)
            if candidates is not None:
                r, c = _index(candidates, batch, block.device)
                kept = torch.full_like(block, -torch.inf)
                kept[r, c] = block[r, c]
                block = kept
            if banned is not None:
                block[:, banned.to(block.device)] = -torch.inf
            if exclude is not None:
                r, c = _index(exclude, batch, block.device)
                block[r, c] = -torch.inf
            # NaN / +inf rank above every number, so the raw top values hold them whenever a row has any
            values, indices = top_k_block(block, k, check=lambda v, c: check_finite(v, batch, labels, c))
            items_out[start : start + len(batch)] = indices.cpu().numpy()
            scores_out[start : start + len(batch)] = values.cpu().numpy()
    return items_out, scores_out
