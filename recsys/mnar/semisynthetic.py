"""Semi-synthetic missing-not-at-random click data from explicit ratings (Saito et al., WSDM 2020, Section 5).

Two small factorisations of a ratings dataset (ML-100k in the paper) define ground truth on the full
users × items grid:

1. relevance: MF without biases (dim 20, MSE on the observed ratings), R̂ = clip(U·Vᵀ, 1, 5) and
   γ = σ(R̂ − ε);
2. exposure: logistic MF (dim 20, cross-entropy on the whole grid, label 1 = rating observed),
   Ô = σ(U·Vᵀ) and θ = Ô^p.

Then every pair draws R ~ Bernoulli(γ), O ~ Bernoulli(θ) and the click Y = O·R. Both factorisations follow the
authors' generator (Xavier-uniform init, Adam lr 0.01, 300 steps of 256 pairs drawn with replacement, the
exposure cross-entropy with its sigmoid, as fixed in their 2020 refactor). The dataset itself is a
`recsys.data.semisynthetic.SemiSynthetic`; the factorisations are `recsys.mnar.factorise`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import torch

from recsys.data.interactions import Interactions
from recsys.data.semisynthetic import SemiSynthetic
from recsys.data.validation import DataError
from recsys.mnar.factorise import Batch, factorise


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


__all__ = ["GeneratorConfig", "GroundTruth", "fit_ground_truth", "generate", "sample"]
