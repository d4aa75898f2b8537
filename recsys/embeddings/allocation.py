"""How many embedding dimensions each frequency block keeps under a parameter budget: DNIS's magnitude pruning of
a searched model, and the fixed rules it is compared with at equal budgets (uniform, MDE, random).

A budget is a fraction of the full tables' entries (scalar columns included, and always kept); every rule fills
what is left for embedding dimensions, rounding down, so a layout never exceeds its budget.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np

from recsys.embeddings.blocks import FrequencyBlocks
from recsys.embeddings.mixed import FieldLayout
from recsys.embeddings.tables import TableSpec

FixedRule = Literal["uniform", "mde", "random"]


def full_params(specs: Sequence[TableSpec]) -> int:
    """Entries of the full-width tables."""
    return sum(s.num_embeddings * s.dim for s in specs)


def layout_params(specs: Sequence[TableSpec], layouts: Mapping[str, FieldLayout]) -> int:
    """Entries the layouts store."""
    return sum(layouts[s.name].params(s) for s in specs)


def vector_budget(specs: Sequence[TableSpec], budget: float) -> int:
    """Entries left for embedding dimensions at ``budget`` (a fraction of `full_params`) once every scalar column
    is kept."""
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"budget must be a fraction in (0, 1], got {budget}")
    scalars = sum(s.num_embeddings * s.scalars for s in specs)
    left = int(np.floor(budget * full_params(specs))) - scalars
    if left < 0:
        raise ValueError(f"budget {budget} is below the scalar columns' share of the tables ({scalars} entries)")
    return left


def _scaled_dims(shapes: dict[str, np.ndarray], specs: Sequence[TableSpec], blocks: Mapping[str, FrequencyBlocks],
                 available: int, min_dim: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-block dims ``clip(round(λ · shape), min_dim, D)`` with the largest λ whose dims fit ``available``
    entries (bisection; the cost only grows with λ)."""

    def dims(scale: float) -> dict[str, np.ndarray]:
        return {s.name: np.clip(np.floor(scale * shapes[s.name] + 0.5), min_dim, s.vector_dim).astype(np.int64) for s in specs}

    def cost(candidate: dict[str, np.ndarray]) -> int:
        return int(sum(np.dot(blocks[s.name].sizes, candidate[s.name]) for s in specs))

    if cost(dims(0.0)) > available:
        raise ValueError(f"the budget leaves {available} entries, fewer than {min_dim} dimension(s) a row")
    low, high = 0.0, 1.0
    while cost(dims(high)) <= available and high < 1e12:
        high *= 2.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if cost(dims(middle)) <= available else (low, middle)
    return dims(low)


def fixed_layouts(rule: FixedRule, specs: Sequence[TableSpec], blocks: Mapping[str, FrequencyBlocks], budget: float,
                  *, temperature: float = 0.3, seed: int = 0) -> dict[str, FieldLayout]:  # fmt: skip
    """Leading-dimension layouts at ``budget`` by a fixed rule, trained from scratch as baselines:

    - ``uniform``: every block of every field the same dims (a smaller dense model);
    - ``mde``: Ginart et al.'s power-law sizing, dims ∝ (a block's lookups per row)^temperature, so frequent ids
      get more dimensions (as the DNIS code's ``main_MDE.py``, which keeps leading dims, not projections);
    - ``random``: random non-increasing dims over each field's blocks (the DNIS code's ``main_rs.py``), scaled to
      the budget; ``seed`` draws them.
    """
    available = vector_budget(specs, budget)
    if rule == "uniform":
        rows = sum(s.num_embeddings for s in specs)
        width = {s.name: min(s.vector_dim, available // max(rows, 1)) for s in specs}
        dims = {s.name: np.full(blocks[s.name].n_blocks, width[s.name]) for s in specs}
    elif rule == "mde":
        shapes = {}
        for s in specs:
            per_row = np.asarray(blocks[s.name].mass) / np.maximum(blocks[s.name].sizes, 1)
            shapes[s.name] = per_row**temperature / np.max(per_row**temperature)
        dims = _scaled_dims(shapes, specs, blocks, available, min_dim=0)
    elif rule == "random":
        rng = np.random.default_rng(seed)
        shapes = {s.name: np.sort(rng.uniform(0.05, 1.0, blocks[s.name].n_blocks))[::-1] for s in specs}
        dims = _scaled_dims(shapes, specs, blocks, available, min_dim=0)
    else:
        raise ValueError(f"unknown rule {rule!r}; choose uniform, mde or random")
    return {s.name: FieldLayout.leading(blocks[s.name], s, dims[s.name]) for s in specs}


def pruned_layouts(magnitudes: Mapping[str, np.ndarray], specs: Sequence[TableSpec], blocks: Mapping[str, FrequencyBlocks],
                   *, budget: float | None = None, threshold: float | None = None,
                   nested: bool = True) -> dict[str, FieldLayout]:  # fmt: skip
    """DNIS's pruning: keep the (field, block, dimension) columns of largest α-weighted magnitude.

    ``magnitudes[field]`` is ``[S, D]`` (`SearchedTables.column_magnitudes`), divided here by the field's mean so
    that fields of different scales (MF's user and item tables) compete on relative importance. With ``budget``,
    columns are kept in descending magnitude while their entries fit (a column of block ``b`` costs its rows: like
    pruning single entries by magnitude, but whole columns, so each block stays a smaller dense table); with
    ``threshold``, every column of normalised magnitude ≥ ``threshold``.

    ``nested`` (the default) decides how many dimensions each block keeps from its own magnitudes (its ``j``-th
    largest column competes for the ``j``-th slot) and which from one order shared by all fields (the dimensions by
    total α-weighted mass), so a user block keeping 10 dimensions and an item block keeping 5 share those 5:
    dot-product and FM interactions only use dimensions both sides keep, and unaligned free choices waste the
    budget on dimensions the other side dropped. Without it, each block keeps its own largest columns.
    """
    if (budget is None) == (threshold is None):
        raise ValueError("give exactly one of budget and threshold")
    scaled = {s.name: magnitudes[s.name] / max(float(np.mean(magnitudes[s.name])), 1e-12) for s in specs}
    order = None
    if nested:
        mass = sum(np.asarray(blocks[s.name].sizes, dtype=np.float64) @ scaled[s.name] for s in specs)
        order = np.argsort(-mass, kind="stable")
        scaled = {name: -np.sort(-m, axis=1) for name, m in scaled.items()}  # slot j: the block's j-th largest
    keep = {s.name: np.zeros_like(scaled[s.name], dtype=bool) for s in specs}
    if threshold is not None:
        keep = {name: m >= threshold for name, m in scaled.items()}
    else:
        assert budget is not None
        available = vector_budget(specs, budget)
        candidates = sorted(((-float(scaled[s.name][b, k]), i, b, k) for i, s in enumerate(specs)
                             for b in range(blocks[s.name].n_blocks) for k in range(s.vector_dim)))  # fmt: skip
        for _, i, b, k in candidates:
            name = specs[i].name
            cost = blocks[name].sizes[b]
            if cost <= available and (order is None or k == 0 or keep[name][b, k - 1]):
                keep[name][b, k] = True
                available -= cost
    layouts = {}
    for s in specs:
        columns = [np.sort(order[row]) if order is not None else np.flatnonzero(row) for row in keep[s.name]]
        layouts[s.name] = FieldLayout(blocks[s.name], tuple(columns))
    return layouts


def allocation_rows(specs: Sequence[TableSpec], layouts: Mapping[str, FieldLayout]) -> list[dict]:
    """One row per (field, block): rows, share of lookups, kept dims, entries — the allocation report's table."""
    out = []
    for s in specs:
        layout = layouts[s.name]
        for b, (rows, mass, dims) in enumerate(zip(layout.blocks.sizes, layout.blocks.mass, layout.dims)):
            out.append({"field": s.name, "block": b, "rows": rows, "lookup_share": round(mass, 6), "dims": dims,
                        "of": s.vector_dim, "params": rows * (dims + s.scalars) if dims + s.scalars else 0})  # fmt: skip
    return out

