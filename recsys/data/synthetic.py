"""Synthetic item sequences with a controllable branching factor and feature smoothness, to show when a local
transition heuristic (TGH) is enough and when a history-reading model (SASRec) is needed.

Items carry random unit feature vectors (item feature column ``vector``). Every item has ``branching``
successors: with probability ``smoothness`` a successor slot takes the item's nearest not-yet-chosen neighbour in
feature space, otherwise a uniformly random item. Users belong to one of ``groups`` types, and successor slot
``s`` belongs to type ``s % groups``: a user's next item is drawn uniformly from their type's slots of the
current item's successors. The graph's out-degree is ``branching``; a user's is ``branching / groups``.

- Low branching + high smoothness: the last item nearly determines the next, and it looks like it (TGH's case).
- High branching + no smoothness + several groups: the last item alone leaves ``branching`` look-alike
  candidates; the user's type, read from earlier transitions, narrows them to ``branching / groups`` (the
  sequence model's case).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys.data.interactions import Interactions


def synthetic_sequences(
    n_users: int = 500,
    n_items: int = 200,
    length: int = 20,
    branching: int = 3,
    smoothness: float = 1.0,
    groups: int = 1,
    dim: int = 16,
    seed: int = 0,
) -> Interactions:
    """`Interactions` (timestamps = positions) of ``n_users`` sequences of ``length`` items each.

    Args:
        n_users: users (one sequence each).
        n_items: catalogue size.
        length: items per sequence (consecutive repeats are possible only through self-successors).
        branching: successors per item (the transition graph's out-degree).
        smoothness: probability in [0, 1] that a successor is a nearest feature neighbour rather than random.
        groups: user types (each user draws one); must divide into ``branching`` at least once.
        dim: feature dimension.
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
    """
    if not 0.0 <= smoothness <= 1.0:
        raise ValueError(f"smoothness must be in [0, 1], got {smoothness}")
    if not 1 <= branching < n_items:
        raise ValueError(f"branching must be in [1, n_items), got {branching}")
    if not 1 <= groups <= branching or length < 2:
        raise ValueError(f"need 1 <= groups <= branching and length >= 2, got groups={groups}, length={length}")
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argsort(-similarity, axis=1)  # [N, N - 1 real + self last]
    successors = np.empty((n_items, branching), dtype=np.int64)
    for item in range(n_items):
        smooth = rng.random(branching) < smoothness
        near = iter(neighbours[item])
        chosen: list[int] = []
        for slot in range(branching):
            candidate = next(near) if smooth[slot] else int(rng.integers(n_items))
            while candidate in chosen:
                candidate = next(near) if smooth[slot] else int(rng.integers(n_items))
            chosen.append(int(candidate))
        successors[item] = chosen
    slots = [np.arange(g, branching, groups) for g in range(groups)]  # successor slots of each user type
    rows = []
    for user in range(n_users):
        own = slots[int(rng.integers(groups))]
        current = int(rng.integers(n_items))
        for position in range(length):
            rows.append((user, current, position))
            current = int(successors[current, rng.choice(own)])
    frame = pl.DataFrame(rows, schema=["user", "item", "timestamp"], orient="row")
    features = pl.DataFrame({"item": np.arange(n_items), "vector": vectors.astype(np.float32).tolist()})
    name = f"synthetic-b{branching}-s{smoothness:g}-g{groups}"
    return Interactions.from_frame(frame, timestamp_col="timestamp", item_features=features, name=name)
