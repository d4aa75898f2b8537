"""Semi-synthetic missing-not-at-random click data from explicit ratings (Saito et al., WSDM 2020, Section 5).

Two small factorisations of a ratings dataset (ML-100k in the paper) define ground truth on the full
users × items grid:

1. relevance: MF without biases (dim 20, MSE on the observed ratings), R̂ = clip(U·Vᵀ, 1, 5) and
   γ = σ(R̂ − ε);
2. exposure: logistic MF (dim 20, cross-entropy on the whole grid, label 1 = rating observed),
   Ô = σ(U·Vᵀ) and θ = Ô^p.

Then every pair draws R ~ Bernoulli(γ), O ~ Bernoulli(θ) and the click Y = O·R. Both factorisations follow the
authors' generator (Xavier-uniform init, Adam lr 0.01, 300 steps of 256 pairs drawn with replacement, the
exposure cross-entropy with its sigmoid, as fixed in their 2020 refactor). They are a few lines of torch here
because data code does not import model code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from recsys.data.interactions import Interactions
from recsys.data.validation import DataError


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of the two generator factorisations (the authors' ``generate_sys_params``).

    Attributes:
        dim: factor dimension of both factorisations.
        lr: Adam learning rate.
        iters: optimisation steps.
        batch_size: pairs per step, drawn with replacement.
        seed: seed of initialisation, batch sampling and the Bernoulli draws.
        exposure_loss: ``"fixed"``: the exposure model's cross-entropy with its sigmoid (the authors' code since
            their June 2020 refactor); ``"original"``: their 2019 code, with which the paper's Figure 1 was made,
            whose negative term is −log(1 − s) on the raw logit s (the sigmoid missing).
    """

    dim: int = 20
    lr: float = 0.01
    iters: int = 300
    batch_size: int = 256
    seed: int = 12345
    exposure_loss: Literal["fixed", "original"] = "fixed"


@dataclass(frozen=True)
class GroundTruth:
    """The fitted generator: relevance predictions and exposure probabilities on the grid, before ε and p.

    Attributes:
        ratings_hat: ``[U, I]`` float64 R̂ = clip(U·Vᵀ, 1, 5).
        exposure_hat: ``[U, I]`` float64 Ô = σ(U·Vᵀ) of the exposure model.
        users, items: raw ids of the grid's rows and columns.
    """

    ratings_hat: np.ndarray
    exposure_hat: np.ndarray
    users: pl.Series
    items: pl.Series


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


def _xavier_uniform(rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """TF's ``xavier_initializer()`` (uniform, fan_in = rows, fan_out = dim) for a ``[rows, dim]`` table."""
    limit = math.sqrt(6.0 / (rows + dim))
    return ((torch.rand(rows, dim, generator=generator, dtype=torch.float64) * 2 - 1) * limit).requires_grad_()


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def factorise(
    n_users: int, n_items: int, draw: Callable[[torch.Generator], Batch], loss: Literal["mse", "bce", "bce_original"],
    config: GeneratorConfig,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Factors ``([U, dim], [I, dim])`` of a bias-free MF fitted by Adam on batches ``draw(g) -> (u, i, target)``.

    ``loss`` is ``"mse"`` (regression on ratings), ``"bce"`` (logistic, targets in {0, 1}) or ``"bce_original"``
    (the authors' 2019 exposure loss, see `GeneratorConfig`). Also used by the logistic-MF exposure (propensity)
    model of `recsys.mnar`.
    """
    user = _xavier_uniform(n_users, config.dim, generator)
    item = _xavier_uniform(n_items, config.dim, generator)
    optimizer = torch.optim.Adam([user, item], lr=config.lr)
    for _ in range(config.iters):
        u, i, target = draw(generator)
        logits = (user[u] * item[i]).sum(-1)  # [B]
        if loss == "mse":
            value = F.mse_loss(logits, target)
        elif loss == "bce":
            value = F.binary_cross_entropy_with_logits(logits, target)
        elif loss == "bce_original":
            # log(1 − s) is NaN for s > 1, but only where the target is 1 and its weight 0: the gradient stays finite
            # (as in TF), so, as there, only the value is undefined; Adam reads gradients alone.
            value = -(target * F.logsigmoid(logits) + (1 - target) * torch.log(1 - logits)).mean()
        else:
            raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return user.detach().numpy(), item.detach().numpy()


def fit_ground_truth(ratings: Interactions, config: GeneratorConfig = GeneratorConfig()) -> GroundTruth:
    """Fit the relevance MF (on the rated pairs) and the exposure logistic MF (on the whole grid) of ``ratings``.

    The grid is every user × item of the data's vocabularies (943 × 1682 for ML-100k).
    """
    if not ratings.has_rating:
        raise DataError(f"{ratings.name}: the semi-synthetic generator needs explicit ratings (no 'rating' column)")
    n_users, n_items = ratings.n_users, ratings.n_items
    users = torch.from_numpy(ratings.frame["user"].to_numpy().astype(np.int64))
    items = torch.from_numpy(ratings.frame["item"].to_numpy().astype(np.int64))
    values = torch.from_numpy(ratings.frame["rating"].to_numpy().astype(np.float64))
    observed = torch.zeros(n_users * n_items, dtype=torch.float64)
    observed[users * n_items + items] = 1.0
    generator = torch.Generator().manual_seed(config.seed)

    def rated(g: torch.Generator) -> Batch:
        idx = torch.randint(len(values), (config.batch_size,), generator=g)
        return users[idx], items[idx], values[idx]

    def grid(g: torch.Generator) -> Batch:
        idx = torch.randint(n_users * n_items, (config.batch_size,), generator=g)
        return idx // n_items, idx % n_items, observed[idx]

    relevance_u, relevance_v = factorise(n_users, n_items, rated, "mse", config, generator)
    exposure_loss = "bce" if config.exposure_loss == "fixed" else "bce_original"
    exposure_u, exposure_v = factorise(n_users, n_items, grid, exposure_loss, config, generator)
    return GroundTruth(
        ratings_hat=np.clip(relevance_u @ relevance_v.T, 1.0, 5.0),
        exposure_hat=1.0 / (1.0 + np.exp(-(exposure_u @ exposure_v.T))),
        users=ratings.users.decode(np.arange(n_users)),
        items=ratings.items.decode(np.arange(n_items)),
    )


def sample(truth: GroundTruth, *, eps: float = 5.0, power: float = 1.0, seed: int = 12345) -> SemiSynthetic:
    """γ = σ(R̂ − ε), θ = Ô^p and the draws R, O, Y = O·R for every pair.

    R is drawn first from its own stream, so datasets of the same ``seed`` and ε share R across p (as the
    authors' generator, which reseeds before each p).
    """
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    gamma = 1.0 / (1.0 + np.exp(-(truth.ratings_hat - eps)))
    theta = truth.exposure_hat**power
    relevance_rng, exposure_rng = (np.random.default_rng([seed, stream]) for stream in (0, 1))
    relevance = (relevance_rng.random(gamma.shape) < gamma).astype(np.int8)
    exposure = (exposure_rng.random(theta.shape) < theta).astype(np.int8)
    return SemiSynthetic(
        gamma=gamma, theta=theta, relevance=relevance, exposure=exposure, click=relevance * exposure,
        users=truth.users, items=truth.items, eps=eps, power=power,
    )  # fmt: skip


def generate(
    ratings: Interactions, *, eps: float = 5.0, power: float = 1.0, config: GeneratorConfig = GeneratorConfig()
) -> SemiSynthetic:
    """Fit the generator on ``ratings`` and sample one dataset (see `fit_ground_truth` and `sample`)."""
    return sample(fit_ground_truth(ratings, config), eps=eps, power=power, seed=config.seed)


__all__ = ["GeneratorConfig", "GroundTruth", "SemiSynthetic", "factorise", "fit_ground_truth", "generate", "sample"]
