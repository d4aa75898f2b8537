"""DNIS's soft selection layer: per frequency block, a weight in [0, 1] for every embedding dimension, learned by
gradient descent on the validation loss (Cheng et al., arXiv 2006.04466; the authors' ``Dnis`` module)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

SelectionMode = Literal["free", "feature_block", "embedding_block"]


class SoftSelection(nn.Module):
    """Weights ``W [S, D]`` of the ``D`` embedding dimensions of ``S`` frequency blocks, from parameters ``alpha``.

    Modes (as the authors' code):
        ``free``: ``alpha [S, D]`` in [0, 1] is W itself (the released scripts' choice).
        ``feature_block``: ``alpha [D]`` in [0, S]; ``W[b, j] = clamp(alpha[j] − b, 0, 1)``, so a more frequent block
            never weighs a dimension less than a rarer one.
        ``embedding_block``: ``alpha [S]`` in [1, D]; ``W[b, j] = clamp(alpha[b] − rank[j], 0, 1)``, a soft count
            of leading dimensions per block (``rank`` from `TableSpec.dimension_ranks`).

    Every mode starts with all weights 1 (``free``: ``alpha = 1``, as the authors' ``init_alpha``).
    """

    def __init__(self, blocks: int, dim: int, mode: SelectionMode = "free", ranks: torch.Tensor | None = None) -> None:
        super().__init__()
        if mode not in ("free", "feature_block", "embedding_block"):
            raise ValueError(f"unknown selection mode {mode!r}; choose free, feature_block or embedding_block")
        self.mode, self.blocks, self.dim = mode, blocks, dim
        shape = {"free": (blocks, dim), "feature_block": (dim,), "embedding_block": (blocks,)}[mode]
        start = {"free": 1.0, "feature_block": float(blocks), "embedding_block": float(dim)}[mode]
        self.alpha = nn.Parameter(torch.full(shape, start))
        self.register_buffer("block_index", torch.arange(blocks, dtype=torch.float32)[:, None], persistent=False)
        rank = ranks if ranks is not None else torch.arange(dim)
        self.register_buffer("rank", rank.to(torch.float32)[None, :], persistent=False)

    def weights(self) -> torch.Tensor:
        """``[S, D]`` dimension weights of each block."""
        if self.mode == "free":
            return self.alpha
        if self.mode == "feature_block":
            return (self.alpha[None, :] - self.block_index).clamp(0.0, 1.0)
        return (self.alpha[:, None] - self.rank).clamp(0.0, 1.0)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project ``alpha`` back to its range after a step."""
        upper = {"free": 1.0, "feature_block": float(self.blocks), "embedding_block": float(self.dim)}[self.mode]
        lower = 1.0 if self.mode == "embedding_block" else 0.0
        self.alpha.clamp_(lower, upper)

    @torch.no_grad()
    def normalise_grad_(self) -> None:
        """Divide ``alpha``'s gradient by its mean magnitude per block row (``free``) or overall (the structured
        modes), so frequent blocks, whose gradients are largest, do not dominate (the authors' ``alpha_grad_norm``)."""
        grad = self.alpha.grad
        if grad is None:
            return
        if grad.dim() == 2:
            grad /= grad.abs().mean(dim=1, keepdim=True) + 1e-8
        else:
            grad /= grad.abs().mean() + 1e-8
