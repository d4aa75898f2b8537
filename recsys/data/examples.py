"""Training examples that tasks build from a split: observed pairs, the all-pairs grid, sequence windows.

Each returns aligned tensors (rows are examples) for `recsys.data.modules.EpochBatches`."""

from __future__ import annotations

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences


def observed_pairs(part: Interactions, label_threshold: float | None = None) -> dict[str, torch.Tensor]:
    """The split's rows: ``user``, ``item`` (int64 ``[R]``), ``rating`` (float32, where the split has ratings) and,
    with ``label_threshold``, ``label = rating >= label_threshold`` (float32; click-style tasks)."""
    frame = part.frame
    tensors = {
        "user": torch.from_numpy(frame["user"].to_numpy().copy()),
        "item": torch.from_numpy(frame["item"].to_numpy().copy()),
    }
    if part.has_rating:
        tensors["rating"] = torch.from_numpy(frame["rating"].to_numpy().astype(np.float32))
    if label_threshold is not None:
        if "rating" not in tensors:
            raise ValueError(f"{part.name}: click labels (rating >= {label_threshold}) need a dataset with ratings")
        tensors["label"] = (tensors["rating"] >= label_threshold).to(torch.float32)
    return tensors


def all_pairs(part: Interactions) -> dict[str, torch.Tensor]:
    """Every (user, item) pair of the grid in row-major order: ``user``, ``item`` (int64 ``[U·I]``) and ``label``
    (float32, 1 where ``part`` has the interaction)."""
    n_users, n_items = part.n_users, part.n_items
    label = torch.zeros(n_users * n_items, dtype=torch.float32)
    codes = part.frame["user"].to_numpy().astype(np.int64) * n_items + part.frame["item"].to_numpy()
    label[torch.from_numpy(codes)] = 1.0
    grid = torch.arange(n_users * n_items)
    return {"user": grid // n_items, "item": grid % n_items, "label": label}


def sequence_windows(part: Interactions, length: int) -> dict[str, torch.Tensor]:
    """Per-user windows of the split's time-ordered sequences: ``input``, ``target`` (int64 ``[W, length]``; every
    position predicts its next item, see `Sequences.windows`)."""
    inputs, targets = Sequences.from_interactions(part).windows(length)
    return {"input": torch.from_numpy(inputs), "target": torch.from_numpy(targets)}
