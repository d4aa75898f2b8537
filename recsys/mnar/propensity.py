"""Propensity models: the probability θ that a user was exposed to an item, for IPS training and evaluation.

Each model is fitted on training `Interactions` (its vocabularies give the codes), answers θ for aligned
``(user, item)`` code pairs, and exports itself as a polars frame of raw ids, so the propensities a run used
are data saved beside its results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import torch

from recsys.data.interactions import Interactions
from recsys.mnar.factorise import factorise
from recsys.mnar.semisynthetic import GeneratorConfig
from recsys.data.validation import DataError


class Propensity(ABC):
    """Base of the propensity models: ``fit(train)``, then ``pairs(users, items) -> θ``."""

    train_: Interactions | None = None

    @abstractmethod
    def fit(self, train: Interactions) -> Self:
        """Estimate (or align) the propensities for ``train``'s users and items; returns ``self``."""

    @abstractmethod
    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B]`` float32 θ of aligned ``[B]`` user and item codes of the training vocabularies."""

    @abstractmethod
    def frame(self) -> pl.DataFrame:
        """The fitted propensities in raw ids (``item, theta`` or ``user, item, theta``)."""

    @property
    def fitted(self) -> bool:
        return self.train_ is not None

    def _require_fitted(self) -> Interactions:
        if self.train_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train) first")
        return self.train_

    def save(self, path: Path) -> Path:
        """Write `frame` as Parquet."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame().write_parquet(path)
        return path


class PopularityPropensity(Propensity):
    """Relative item popularity ``θ_i = (n_i / max_j n_j)^η`` (the Rel-MF paper's estimate on real data).

    Args:
        eta: the exponent η (0.5 in the paper; RecBole-Debias tunes it in {0.5, 0.7, 0.8, 1}).
        threshold: count only interactions with ``rating >= threshold`` (the paper's positives, rating ≥ 4);
            ``None`` counts every training interaction.
        floor: lower bound of θ. With 0, items without a counted interaction get θ = 0: they are never clicked
            in training, so IPS training never divides by it, but IPS evaluation refuses such a test item.
    """

    def __init__(self, eta: float = 0.5, threshold: float | None = None, floor: float = 0.0) -> None:
        if eta < 0:
            raise ValueError(f"eta must be non-negative, got {eta}")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {floor}")
        self.eta, self.threshold, self.floor = eta, threshold, floor

    def fit(self, train: Interactions) -> Self:
        frame = train.frame
        if self.threshold is not None:
            if not train.has_rating:
                raise DataError(f"{train.name}: PopularityPropensity(threshold={self.threshold}) needs ratings")
            frame = frame.filter(pl.col("rating") >= self.threshold)
        counts = np.bincount(frame["item"].to_numpy(), minlength=train.n_items).astype(np.float64)
        if counts.max() == 0:
            raise DataError(f"{train.name}: no interaction counts towards popularity (threshold {self.threshold})")
        theta = np.maximum((counts / counts.max()) ** self.eta, self.floor)
        self.item_theta_ = torch.from_numpy(theta).to(torch.float32)  # [I]
        self.train_ = train
        return self

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        self._require_fitted()
        return self.item_theta_.to(items.device)[items]

    def frame(self) -> pl.DataFrame:
        train = self._require_fitted()
        return pl.DataFrame({"item": train.items.decode(np.arange(train.n_items)), "theta": self.item_theta_.numpy()})


class LogisticMFPropensity(Propensity):
    """Exposure model θ = σ(p_u · q_i): a logistic MF fitted on the whole grid, label 1 where an interaction is
    observed and 0 elsewhere (the exposure half of the semi-synthetic generator, here as an estimator).

    Args:
        dim: factor dimension.
        lr: Adam learning rate.
        iters: optimisation steps.
        batch_size: grid pairs per step, drawn with replacement.
        seed: seed of initialisation and batches.
        floor: lower bound of the returned θ (a logistic model can be arbitrarily close to 0).
    """

    def __init__(
        self, dim: int = 20, lr: float = 0.01, iters: int = 2000, batch_size: int = 4096, seed: int = 2026,
        floor: float = 1e-4,
    ) -> None:  # fmt: skip
        self.dim, self.lr, self.iters, self.batch_size, self.seed, self.floor = dim, lr, iters, batch_size, seed, floor

    def fit(self, train: Interactions) -> Self:
        n_users, n_items = train.n_users, train.n_items
        observed = torch.zeros(n_users * n_items, dtype=torch.float64)
        codes = train.frame["user"].to_numpy().astype(np.int64) * n_items + train.frame["item"].to_numpy()
        observed[torch.from_numpy(codes)] = 1.0

        def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            idx = torch.randint(n_users * n_items, (self.batch_size,), generator=g)
            return idx // n_items, idx % n_items, observed[idx]

        config = GeneratorConfig(dim=self.dim, lr=self.lr, iters=self.iters, batch_size=self.batch_size, seed=self.seed)
        user, item = factorise(n_users, n_items, draw, "bce", config, torch.Generator().manual_seed(self.seed))
        self.user_factors_ = torch.from_numpy(user).to(torch.float32)  # [U, dim]
        self.item_factors_ = torch.from_numpy(item).to(torch.float32)  # [I, dim]
        self.train_ = train
        return self

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        self._require_fitted()
        logits = (self.user_factors_[users.cpu()] * self.item_factors_[items.cpu()]).sum(-1)
        return torch.sigmoid(logits).clamp(min=self.floor).to(items.device)

    def frame(self) -> pl.DataFrame:
        train = self._require_fitted()
        theta = torch.sigmoid(self.user_factors_ @ self.item_factors_.T).clamp(min=self.floor)  # [U, I]
        return pl.DataFrame(
            {
                "user": train.users.decode(np.repeat(np.arange(train.n_users), train.n_items)),
                "item": train.items.decode(np.tile(np.arange(train.n_items), train.n_users)),
                "theta": theta.numpy().ravel(),
            }
        )


class KnownPropensity(Propensity):
    """Given propensities (e.g. the true θ of semi-synthetic data): a frame or Parquet file ``user, item, theta``
    in raw ids, or ``item, theta`` for per-item propensities.

    Args:
        path: Parquet file with the propensities (for YAML configs).
        table: the same as a frame (from Python); exactly one of ``path`` and ``table`` is given.

    Fitting aligns the table with the training vocabularies; asking for a pair the table lacks is an error.
    """

    def __init__(self, path: str | None = None, table: pl.DataFrame | None = None) -> None:
        if (path is None) == (table is None):
            raise ValueError("KnownPropensity takes exactly one of path= and table=")
        self.path, self.table = path, table

    def _table(self) -> pl.DataFrame:
        table = pl.read_parquet(self.path) if self.table is None else self.table
        source = self.path or "table"
        if "theta" not in table.columns or "item" not in table.columns:
            raise DataError(f"{source}: propensities need columns 'item', 'theta' (and 'user' for per-pair values)")
        bad = table.filter((pl.col("theta") <= 0) | (pl.col("theta") > 1) | pl.col("theta").is_null())
        if bad.height:
            raise DataError(f"{source}: theta must be in (0, 1]; first bad row {bad.row(0, named=True)}")
        return table

    def fit(self, train: Interactions) -> Self:
        table = self._table()
        per_user = "user" in table.columns
        items = train.items.encode(table["item"], strict=False, what="item")
        keep = items.is_not_null()
        theta = np.full((train.n_users if per_user else 1, train.n_items), np.nan, dtype=np.float32)
        if per_user:
            users = train.users.encode(table["user"], strict=False, what="user")
            keep &= users.is_not_null()
            theta[users.filter(keep).to_numpy(), items.filter(keep).to_numpy()] = table["theta"].filter(keep).to_numpy()
        else:
            theta[0, items.filter(keep).to_numpy()] = table["theta"].filter(keep).to_numpy()
        self.grid_ = torch.from_numpy(theta)  # [U or 1, I], NaN where unknown
        self.train_ = train
        return self

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        self._require_fitted()
        rows = users.cpu() if self.grid_.shape[0] > 1 else torch.zeros_like(users.cpu())
        theta = self.grid_[rows, items.cpu()]
        missing = torch.isnan(theta)
        if missing.any():
            first = int(missing.nonzero()[0, 0])
            raise KeyError(
                f"no known propensity for user code {int(users[first])}, item code {int(items[first])} "
                f"in {self.path or 'the table'}"
            )
        return theta.to(items.device)

    def frame(self) -> pl.DataFrame:
        return self._table()


__all__ = ["KnownPropensity", "LogisticMFPropensity", "PopularityPropensity", "Propensity"]
