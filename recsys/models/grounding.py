"""Grounding an LLM's output to real items: BIGRec's L2 step (distance between embeddings of the generated text and
of every item, optionally re-weighted by popularity) and constrained decoding over a prefix trie of the
catalogue's token sequences, which can only emit real items.

The trie is written here because transformers' ``prefix_allowed_tokens_fn`` knows nothing of a user's exclusions;
this one prunes, per user, the branches whose every item the user has already seen
(`recsys.models.generative.GenerativeLM.beam_search` walks it).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch


class ItemTrie:
    """Prefix tree of each item's token ids (closed by the end-of-sequence id). Items with the same ids (equal
    titles) share a leaf. Node 0 is the root."""

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self.children: list[dict[int, int]] = [{}]
        self.parent, self.token, self.count = [-1], [-1], [0]
        self.items_at: dict[int, list[int]] = {}
        self.leaf_of: list[int] = []
        for item, ids in enumerate(sequences):
            node = 0
            self.count[0] += 1
            for token in ids:
                child = self.children[node].get(token)
                if child is None:
                    child = len(self.children)
                    self.children[node][token] = child
                    self.children.append({})
                    self.parent.append(node)
                    self.token.append(token)
                    self.count.append(0)
                self.count[child] += 1
                node = child
            self.items_at.setdefault(node, []).append(item)
            self.leaf_of.append(node)
        self._tokens: dict[int, torch.Tensor] = {}

    def walk(self, tokens: Iterable[int]) -> int | None:
        """The node reached by ``tokens`` from the root, None when they leave the trie."""
        node = 0
        for token in tokens:
            node = self.children[node].get(int(token), -1)
            if node < 0:
                return None
        return node

    def tokens(self, node: int) -> torch.Tensor:
        """``[C]`` the ids that continue ``node`` (cached)."""
        found = self._tokens.get(node)
        if found is None:
            found = self._tokens[node] = torch.tensor(list(self.children[node]), dtype=torch.long)
        return found

    def dead(self, excluded: Iterable[int]) -> dict[int, list[int]]:
        """``{node: [token, …]}``: the continuations of each node that lead only to ``excluded`` items (codes)."""
        lost: Counter[int] = Counter()
        for item in set(int(i) for i in excluded):
            node = self.leaf_of[item]
            while node > 0:
                lost[node] += 1
                node = self.parent[node]
        cut: dict[int, list[int]] = {}
        for node, n in lost.items():
            if n == self.count[node]:
                cut.setdefault(self.parent[node], []).append(self.token[node])
        return cut


def popularity_adjusted(distances: torch.Tensor, popularity: torch.Tensor, gamma: float) -> torch.Tensor:
    """BIGRec's statistics injection: ``D̂ · (1 + W)^-γ`` with D̂ the per-row min-max normalised ``distances``
    ``[B, N]`` and W the min-max normalised ``popularity`` ``[N]``; γ = 0 leaves the order of D unchanged.
    Lower is better."""
    low, high = distances.min(1, keepdim=True).values, distances.max(1, keepdim=True).values
    normalised = (distances - low) / (high - low).clamp(min=1e-12)
    if gamma == 0:
        return normalised
    weight = (popularity - popularity.min()) / (popularity.max() - popularity.min()).clamp(min=1e-12)
    return normalised * (1 + weight.to(distances))[None, :] ** (-gamma)
