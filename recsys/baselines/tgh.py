"""TGH, the few-hop Transition-Graph Heuristic (Han et al., arXiv 2605.07125), as the authors' code does it
(``haoyuhan1/GraphRec`` ``src/tgh.py``).

A directed graph counts consecutive training pairs a → b. Around a source item s, ring h holds the items at
shortest directed distance exactly h (BFS layers by sparse products; s itself and earlier rings removed).
Candidates in a ring are scored by the cosine of their text vector with the anchor (the source's vector) plus,
in ring 1 only, ``alpha · log(1 + c(s→j)) / max_k log(1 + c(s→k))``. Each ring yields its top picks; the list
takes the top ``budget[h]`` of ring 1, then of ring 2, …, so ring order outranks score. Short rings are topped
up from earlier rings' overflow, then the list is padded with random graph nodes (``random.Random(seed +
user)``).

- TGH-1: source = the last history item, budgets 7 / 2 / 1 over rings 1–3.
- TGH-2: the last item with budgets 5 / 1, then the second-to-last with 3 / 1, excluding items already taken.

History items are not filtered (as the authors); ``filter_history=True`` removes them from rings and padding.
Beyond its top-``sum(budgets)`` list TGH has no order; as a full-ranking `Recommender` the remaining items are
ranked below the list by their cosine to the anchor (this only matters past K = 10, or when the evaluator masks
history items that TGH put in its list).
"""

from __future__ import annotations

import random
from typing import Literal, Self, Sequence

import numpy as np
import torch

from recsys.data.graph import edge_bonus, hop_rings, transition_counts
from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.ranking import top_k_block
from recsys.sequential import SequentialRecommender

DEFAULT_BUDGETS = {"tgh-1": ((7, 2, 1), ()), "tgh-2": ((5, 1), (3, 1))}


def assemble(
    picks: Sequence[np.ndarray], budgets: Sequence[int], total: int, pool: np.ndarray, rng: random.Random,
    used: set[int],
) -> list[int]:  # fmt: skip
    """One user's list from each ring's score-ordered picks (``-1`` = none), as ``_assemble_with_overflow``.

    Walking rings in order, a ring short of its budget is first topped up from the overflow of earlier rings
    (their picks beyond budget, in order); leftover overflow is appended; then random items of ``pool`` not in
    ``used`` (items already taken elsewhere, or history when filtered) pad the list to ``total``. ``used`` is
    updated with everything taken.
    """
    result: list[int] = []
    overflow: list[int] = []
    for ring, want in zip(picks, budgets):
        ring = [int(p) for p in ring if p >= 0 and int(p) not in used]
        top_up = overflow[: max(0, want - len(ring))]
        result += top_up
        overflow = overflow[len(top_up) :]
        want -= len(top_up)
        result += ring[:want]
        overflow += ring[want:]
    result += overflow[: max(0, total - len(result))]
    used.update(result)
    if len(result) < total:
        free = [int(x) for x in pool if int(x) not in used]
        padding = rng.sample(free, min(total - len(result), len(free)))
        result += padding
        used.update(padding)
    return result[:total]


class TGH(SequentialRecommender):
    """Transition-Graph Heuristic (no training: a graph of the training transitions and item text vectors).

    Args:
        variant: ``tgh-1`` (one source, budgets 7/2/1) or ``tgh-2`` (two sources, 5/1 then 3/1).
        alpha: weight of the ring-1 edge bonus (authors: 0.5).
        budgets: per-ring budgets of the last item (default: the variant's).
        second_budgets: per-ring budgets of the second-to-last item (``tgh-2``; default 3/1).
        encoder: item text encoder (`recsys.embeddings.text.item_vectors`): ``minilm``, ``tfidf``, ``features``
            or a sentence-transformers folder.
        filter_history: remove the user's history items from the rings and the padding.
        seed: padding seed; user ``u`` pads with ``random.Random(seed + u)`` (authors: 42).
    """

    def __init__(
        self,
        variant: Literal["tgh-1", "tgh-2"] = "tgh-1",
        alpha: float = 0.5,
        budgets: Sequence[int] | None = None,
        second_budgets: Sequence[int] | None = None,
        encoder: str = "minilm",
        filter_history: bool = False,
        seed: int = 42,
    ) -> None:
        if variant not in DEFAULT_BUDGETS:
            raise ValueError(f"variant must be one of {sorted(DEFAULT_BUDGETS)}, got {variant!r}")
        default_first, default_second = DEFAULT_BUDGETS[variant]
        self.variant, self.alpha, self.encoder = variant, alpha, encoder
        self.budgets = tuple(budgets) if budgets is not None else default_first
        self.second_budgets = tuple(second_budgets) if second_budgets is not None else default_second
        if variant == "tgh-1" and self.second_budgets:
            raise ValueError("tgh-1 has one source: second_budgets must be empty")
        if not self.budgets or min(self.budgets + self.second_budgets) < 0:
            raise ValueError(f"budgets must be non-negative and non-empty, got {self.budgets} / {self.second_budgets}")
        self.filter_history, self.seed = filter_history, seed

    @property
    def list_length(self) -> int:
        return sum(self.budgets) + sum(self.second_budgets)

    # ------------------------------------------------------------------------------------------ fit
    fitted_attributes = ("vectors_",)
    """The unit text vectors (the encoder is not run again at load); the graph comes back from the training data."""

    def fit(self, train: Interactions, valid: Interactions | None = None, *, vectors: np.ndarray | None = None) -> Self:
        """Build the transition graph and rings from ``train``; ``vectors`` ``[n_items, d]`` overrides the encoder."""
        from recsys.embeddings.text import item_vectors  # on use: recsys.embeddings loads torchrec

        self.restore(train)
        chosen = item_vectors(train, self.encoder) if vectors is None else vectors
        if chosen.shape[0] != train.n_items:
            raise ValueError(f"item vectors have {chosen.shape[0]} rows; the data has {train.n_items} items")
        norms = np.linalg.norm(chosen, axis=1, keepdims=True)
        self.vectors_ = (chosen / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        return self

    def restore(self, train: Interactions) -> None:
        """The transition graph, rings, edge bonus and padding pool of ``train``."""
        self._remember(train)
        a, b = self.history_or_training(None).transitions()
        self.counts_ = transition_counts(a, b, train.n_items)
        self.rings_ = hop_rings(self.counts_, max(len(self.budgets), len(self.second_budgets)))
        self.bonus_ = edge_bonus(self.counts_)
        self.nodes_ = np.unique(np.concatenate([a, b]))  # the padding pool: every graph node, ascending

    def item_similarity(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]`` what a history of each item alone scores: its TGH list from the transition graph first
        (the text cosine alone carries no sense of which items follow which)."""
        return torch.stack([self.score_history(np.array([item])) for item in items.tolist()])

    # ------------------------------------------------------------------------------------------ lists
    def rank_lists(self, users: np.ndarray, history: Sequences | None = None) -> np.ndarray:
        """``[B, list_length]`` item codes of each user's TGH list from their ``history`` (the training sequences
        when None), best first."""
        users = np.asarray(users, dtype=np.int64)
        known = self.history_or_training(history)
        last = known.last_items(users, 2)  # [B, 2], -1 where the history is shorter
        history_items = [known.of(int(u)) for u in users]  # each user's items, for filtering
        first_picks = self._ring_picks(last[:, 1], len(self.budgets), sum(self.budgets), history_items)
        lists = []
        for row, user in enumerate(users):
            used = set(history_items[row]) if self.filter_history else set()
            first = assemble([p[row] for p in first_picks], self.budgets, sum(self.budgets), self.nodes_,
                             random.Random(self.seed + int(user)), used)  # fmt: skip
            lists.append(first)
        if self.second_budgets:
            taken = [set(x) for x in lists]
            second_picks = self._ring_picks(
                last[:, 0], len(self.second_budgets), sum(self.second_budgets), history_items, taken
            )
            for row, user in enumerate(users):
                if last[row, 0] < 0:  # history of one item: no second source, only padding
                    continue
                used = taken[row] | (set(history_items[row]) if self.filter_history else set())
                lists[row] = lists[row] + assemble(
                    [p[row] for p in second_picks], self.second_budgets, sum(self.second_budgets), self.nodes_,
                    random.Random(self.seed + int(user)), used,
                )  # fmt: skip
        out = np.empty((len(users), self.list_length), dtype=np.int64)
        for row, user in enumerate(users):
            chosen = lists[row]
            if len(chosen) < self.list_length:  # tgh-2 without a second source: random padding to the full length
                banned = set(chosen) | (set(history_items[row]) if self.filter_history else set())
                chosen = chosen + assemble([], [], self.list_length - len(chosen), self.nodes_,
                                           random.Random(self.seed + int(user)), banned)  # fmt: skip
            out[row] = (chosen + [-1] * self.list_length)[: self.list_length]  # -1: a catalogue too small to fill
        return out

    def _ring_picks(
        self, sources: np.ndarray, depth: int, k: int, history: list[np.ndarray], taken: list[set[int]] | None = None
    ) -> list[np.ndarray]:
        """Per ring, ``[B, k]`` items of the ring ordered by score (ties: lower item code first), ``-1`` past the
        ring's size; ``k`` is the source's total budget, as the authors. Items of ``taken`` (and history, when
        filtered) are left out."""
        has_source = sources >= 0
        src = np.where(has_source, sources, 0)
        anchors = self.vectors_[src] * has_source[:, None]  # [B, d]
        similarity = anchors @ self.vectors_.T  # [B, N]
        blocked = np.zeros_like(similarity, dtype=bool)
        for row in range(len(sources)):
            if taken is not None:
                blocked[row, list(taken[row])] = True
            if self.filter_history:
                blocked[row, history[row]] = True
        picks = []
        for h in range(depth):
            inside = self.rings_[h][src].toarray().astype(bool) & has_source[:, None] & ~blocked
            scores = similarity + (self.alpha * self.bonus_[src].toarray() if h == 0 else 0.0)
            scores = np.where(inside, scores, -np.inf)
            order = top_k_block(torch.from_numpy(scores), min(k, scores.shape[1]))[1].numpy()
            top = np.take_along_axis(scores, order, axis=1)
            picks.append(np.where(np.isfinite(top), order, -1))
        return picks

    # ------------------------------------------------------------------------------------------ scoring
    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        """``[B, n_items]`` from each user's ``history`` (the training sequences when None): the TGH list scores
        ``L + 1 … 2`` (``L`` = list length, best first), every other item its anchor cosine minus 2 (in
        ``[-3, -1]``), so the list always ranks first."""
        codes = users.cpu().numpy().astype(np.int64)
        known = self.history_or_training(history)
        last = known.last_items(codes, 1)[:, 0]
        has = last >= 0
        anchors = self.vectors_[np.where(has, last, 0)] * has[:, None]
        scores = anchors @ self.vectors_.T - 2.0
        lists = self.rank_lists(codes, known)
        rows, cols = np.nonzero(lists >= 0)
        scores[rows, lists[rows, cols]] = (self.list_length + 1 - cols).astype(np.float32)
        return torch.from_numpy(scores.astype(np.float32))
