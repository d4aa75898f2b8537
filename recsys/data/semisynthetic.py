"""`SemiSynthetic`: a semi-synthetic missing-not-at-random click dataset on the full users × items grid (relevance
γ and R, exposure θ and O, clicks Y = O·R), with its Parquet round trip. The generator that fits and samples one
from explicit ratings is `recsys.mnar.semisynthetic` (it trains two small factorisations, which is model code)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.validation import DataError


@dataclass(frozen=True)
class SemiSynthetic:
    """One generated dataset: every user–item pair with its parameters and draws.

    Attributes:
        gamma: ``[U, I]`` relevance probability σ(R̂ − ε).
        theta: ``[U, I]`` exposure probability Ô^p.
        relevance: ``[U, I]`` int8 R ~ Bernoulli(γ).
        exposure: ``[U, I]`` int8 O ~ Bernoulli(θ).
        click: ``[U, I]`` int8 Y = O·R.
        users, items: raw ids of rows and columns.
        eps, power: the ε and p it was generated with.
    """

    gamma: np.ndarray
    theta: np.ndarray
    relevance: np.ndarray
    exposure: np.ndarray
    click: np.ndarray
    users: pl.Series
    items: pl.Series
    eps: float
    power: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.gamma.shape

    def frame(self) -> pl.DataFrame:
        """One row per pair: raw ``user``, ``item`` and ``Y, O, R, theta, gamma`` (the authors' column order)."""
        n_users, n_items = self.shape
        return pl.DataFrame(
            {
                "user": np.repeat(self.users.to_numpy(), n_items),
                "item": np.tile(self.items.to_numpy(), n_users),
                "Y": self.click.ravel(),
                "O": self.exposure.ravel(),
                "R": self.relevance.ravel(),
                "theta": self.theta.ravel(),
                "gamma": self.gamma.ravel(),
            }
        )

    def save(self, path: Path) -> Path:
        """Write `frame` plus constant ``eps`` and ``power`` columns as Parquet, so a run's data can be audited."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame().with_columns(pl.lit(self.eps).alias("eps"), pl.lit(self.power).alias("power")).write_parquet(path)
        return path

    @classmethod
    def load(cls, path: Path) -> SemiSynthetic:
        """Read a file written by `save` (a full grid in row-major order is required)."""
        frame = pl.read_parquet(path)
        missing = [c for c in ("user", "item", "Y", "O", "R", "theta", "gamma", "eps", "power") if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: not a semi-synthetic dataset, missing column(s) {missing}")
        users, items = frame["user"].unique(maintain_order=True), frame["item"].unique(maintain_order=True)
        if frame.height != len(users) * len(items):
            raise DataError(f"{path}: {frame.height} rows is not the full {len(users)} × {len(items)} grid")
        shape = (len(users), len(items))

        def grid(col: str, dtype: type) -> np.ndarray:
            return frame[col].to_numpy().astype(dtype).reshape(shape)

        return cls(
            gamma=grid("gamma", np.float64), theta=grid("theta", np.float64), relevance=grid("R", np.int8),
            exposure=grid("O", np.int8), click=grid("Y", np.int8), users=users, items=items,
            eps=float(frame["eps"][0]), power=float(frame["power"][0]),
        )  # fmt: skip


__all__ = ["SemiSynthetic"]
