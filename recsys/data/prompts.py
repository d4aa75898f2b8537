"""Prompts of an LLM recommender: the Alpaca-style template BIGRec and DEALRec fine-tune on, sliding windows of
each user's history (up to ``max_history`` previous items → the next one) and their token ids, truncated from the
oldest history item so that no title is ever cut.

Prompts are assembled from token pieces (the template's head and tail, one piece per item, the separator) rather
than by tokenising each whole prompt: the same ids in training and at inference, every item tokenised once, and
truncation that is exact at item boundaries. Identifiers (`item_identifiers`) are titles by default, or
OpenP5-style sequential or collaborative index strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import polars as pl

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences

Encode = Callable[[str], list[int]]
"""A tokenizer's text → token ids, without special tokens."""

Identifiers = Literal["titles", "sequential", "collaborative"]

ALPACA = ("Below is an instruction that describes a task, paired with an input that provides further context. "
          "Write a response that appropriately completes the request.")  # fmt: skip


@dataclass(frozen=True)
class PromptTemplate:
    """The prompt around a history: ``preamble``, ``### Instruction:``, ``### Input:`` with the history's items
    joined by ``separator`` after ``history_prefix`` and closed by ``history_suffix``, then ``### Response:``.
    The default is DEALRec's (``gen_fewshot.py``) movie wording."""

    preamble: str = ALPACA
    instruction: str = ("Given the movies that the user watched before, please recommend a new movie that the user "
                        "likes to the user.")  # fmt: skip
    history_prefix: str = "The user has watched the following movies before, with titles as: "
    separator: str = "; "
    history_suffix: str = ";"

    def head(self) -> str:
        """Everything before the first history item."""
        return f"{self.preamble} \n\n### Instruction:\n{self.instruction}\n\n### Input:\n{self.history_prefix}"

    def tail(self) -> str:
        """Everything after the last history item, up to where the response starts."""
        return f"{self.history_suffix}\n\n### Response:\n"

    def text(self, items: list[str]) -> str:
        """The prompt of a history given as item strings (oldest first)."""
        return self.head() + self.separator.join(items) + self.tail()


@dataclass(frozen=True)
class Windows:
    """Sliding-window samples: sample ``s`` is user ``users[s]``'s items ``history[indptr[s]:indptr[s + 1]]``
    (oldest first) followed by ``targets[s]``, the item at index ``positions[s]`` of the user's sequence (a
    sample's identity across runs: data pruning selects by it)."""

    users: np.ndarray
    indptr: np.ndarray
    history: np.ndarray
    targets: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def of(self, sample: int) -> np.ndarray:
        return self.history[self.indptr[sample] : self.indptr[sample + 1]]


def history_windows(sequences: Sequences, max_history: int = 10, stride: int = 1) -> Windows:
    """Every (≤ ``max_history`` previous items → next item) window of every user's sequence, as BIGRec builds
    its samples (a user's first item has no history and gives none); with ``stride`` s only every s-th window
    counted back from each user's last item (s = ``max_history`` + 1: windows that tile the sequence, each
    transition inside one prompt once). Vectorised over events."""
    if max_history < 1 or stride < 1:
        raise ValueError(f"max_history and stride must be >= 1, got {max_history}, {stride}")
    lengths = sequences.lengths
    users = np.repeat(np.arange(sequences.n_users), lengths)
    events = np.arange(len(sequences.items))
    starts = sequences.indptr[:-1][users]
    ends = sequences.indptr[1:][users] - 1
    keep = (events > starts) & ((ends - events) % stride == 0)  # positions ≥ 1 of their user's sequence
    users, events, starts = users[keep], events[keep], starts[keep]
    first = np.maximum(starts, events - max_history)
    sizes = events - first
    indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], sizes)
    history = sequences.items[np.repeat(first, sizes) + offsets]
    return Windows(users=users, indptr=indptr, history=history, targets=sequences.items[events],
                   positions=events - starts)


def last_windows(sequences: Sequences, users: np.ndarray, max_history: int = 10) -> list[np.ndarray]:
    """Each of ``users``' last ``max_history`` items (oldest first): the history a recommendation is asked from."""
    return [sequences.of(int(u))[-max_history:] for u in users]


class PromptTokens:
    """Token ids of prompts and responses over one catalogue.

    Args:
        template: the prompt's wording.
        encode: the tokenizer (text → ids, no special tokens).
        items: one identifier string per item code (`item_identifiers`).
        eos: the end-of-sequence id that closes every response.
        max_prompt_tokens: longest prompt; the oldest history items are dropped until a prompt fits.
    """

    def __init__(self, template: PromptTemplate, encode: Encode, items: list[str], eos: int,
                 max_prompt_tokens: int = 512) -> None:  # fmt: skip
        self.template, self.eos, self.max_prompt_tokens = template, eos, max_prompt_tokens
        self.head, self.tail, self.separator = encode(template.head()), encode(template.tail()), encode(template.separator)
        self.items = [encode(text) for text in items]
        longest = max(len(ids) for ids in self.items)
        fixed = len(self.head) + len(self.tail)
        if fixed + longest > max_prompt_tokens:
            raise ValueError(f"max_prompt_tokens {max_prompt_tokens} cannot hold the template ({fixed} tokens) and "
                             f"the longest item ({longest} tokens); raise it or shorten the template")  # fmt: skip

    def prompt(self, history: np.ndarray) -> list[int]:
        """``head + item + sep + … + item + tail`` of a history (codes, oldest first), dropping its oldest items
        until the prompt is at most ``max_prompt_tokens`` long (never cutting an item)."""
        budget = self.max_prompt_tokens - len(self.head) - len(self.tail)
        kept: list[list[int]] = []
        used = 0
        for item in history[::-1]:
            piece = self.items[int(item)]
            cost = len(piece) + (len(self.separator) if kept else 0)
            if used + cost > budget:
                break
            kept.append(piece)
            used += cost
        ids = list(self.head)
        for n, piece in enumerate(reversed(kept)):
            ids += (self.separator if n else []) + piece
        return ids + self.tail

    def response(self, item: int) -> list[int]:
        """The target's ids closed by ``eos``."""
        return self.items[int(item)] + [self.eos]


def item_titles(data: Interactions) -> list[str]:
    """One display title per item code: ``title (year)`` as MovieLens writes them, the raw id where an item has no
    title."""
    raw = data.items.decode(range(data.n_items)).cast(pl.String).to_list()
    titles = [f"Item {r}" for r in raw]
    features = data.item_features
    if features is None or "title" not in features.columns:
        return titles
    year = features["year"].to_list() if "year" in features.columns else [None] * len(features)
    for code, title, y in zip(features["item"].to_list(), features["title"].to_list(), year):
        if title:
            titles[code] = f"{title} ({y})" if y is not None else str(title)
    return titles


def item_identifiers(train: Interactions, kind: Identifiers = "titles", *, branching: int = 32,
                     seed: int = 0) -> list[str]:  # fmt: skip
    """The string an LLM reads and writes for each item code.

    - ``titles``: `item_titles` (BIGRec).
    - ``sequential``: OpenP5's sequential indexing: numbers from 1001 in the order items first appear when the
      users' training sequences are read one after another, so items met together share leading digits.
    - ``collaborative``: OpenP5's collaborative indexing: recursive spectral clustering of the item co-occurrence
      graph into ``branching`` clusters per level; an item's id is its path of cluster tokens ``c3 c17 c5``, the
      last level numbering the items of a leaf cluster.
    """
    if kind == "titles":
        return item_titles(train)
    sequences = Sequences.from_interactions(train)
    if kind == "sequential":
        order = pl.Series(sequences.items).unique(maintain_order=True).to_numpy()
        rest = np.setdiff1d(np.arange(train.n_items), order)  # items without training events come last
        number = np.empty(train.n_items, dtype=np.int64)
        number[np.concatenate([order, rest])] = np.arange(1001, 1001 + train.n_items)
        return [str(n) for n in number]
    if kind == "collaborative":
        from recsys.data.graph import cooccurrence_clusters

        paths = cooccurrence_clusters(sequences, branching=branching, seed=seed)
        return [" ".join(f"c{level}" for level in path) for path in paths]
    raise ValueError(f"identifiers must be 'titles', 'sequential' or 'collaborative', got {kind!r}")


def catalogue_lines(train: Interactions, identifiers: list[str]) -> list[str]:
    """One line of catalogue text per item, what the catalogue LM is pre-trained on: ``Toy Story (1995). Genres:
    Animation, Children's, Comedy.``, prefixed by the item's index (``1014: …``) when identifiers are not titles."""
    titles = item_titles(train)
    genres = [""] * train.n_items
    features = train.item_features
    if features is not None and "genres" in features.columns:
        for code, values in zip(features["item"].to_list(), features["genres"].to_list()):
            genres[code] = f" Genres: {', '.join(values)}." if values else ""
    return [(f"{ident}: " if ident != title else "") + f"{title}.{genre}"
            for ident, title, genre in zip(identifiers, titles, genres)]  # fmt: skip


class TokenSamples:
    """Tokenised samples, ``ids[indptr[s]:indptr[s + 1]]`` = prompt + response of sample ``s``, the first
    ``prompt_lengths[s]`` of them the prompt: flat arrays, so a cache is one ``.npz``."""

    def __init__(self, ids: np.ndarray, indptr: np.ndarray, prompt_lengths: np.ndarray) -> None:
        self.ids, self.indptr, self.prompt_lengths = ids, indptr, prompt_lengths

    @classmethod
    def build(cls, tokens: PromptTokens, windows: Windows) -> TokenSamples:
        rows, lengths = [], np.zeros(len(windows), dtype=np.int64)
        for s in range(len(windows)):
            prompt = tokens.prompt(windows.of(s))
            rows.append(prompt + tokens.response(int(windows.targets[s])))
            lengths[s] = len(prompt)
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        ids = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(indptr[-1]))
        return cls(ids, indptr, lengths)

    def __len__(self) -> int:
        return len(self.prompt_lengths)

    def __getitem__(self, sample: int) -> tuple[np.ndarray, int]:
        return self.ids[self.indptr[sample] : self.indptr[sample + 1]], int(self.prompt_lengths[sample])

    def subset(self, samples: np.ndarray) -> TokenSamples:
        """The samples at ``samples`` (indices), in that order."""
        sizes = np.diff(self.indptr)[samples]
        starts = self.indptr[:-1][samples]
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ids = self.ids[np.repeat(starts, sizes) + np.arange(indptr[-1]) - np.repeat(indptr[:-1], sizes)]
        return TokenSamples(ids, indptr, self.prompt_lengths[samples])

    def save(self, path: Path) -> None:
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, ids=self.ids, indptr=self.indptr, prompt_lengths=self.prompt_lengths)
        partial.rename(path)

    @classmethod
    def load(cls, path: Path) -> TokenSamples:
        with np.load(path, allow_pickle=False) as arrays:
            return cls(arrays["ids"], arrays["indptr"], arrays["prompt_lengths"])
