"""ExpoMF (Liang, Charlin, McInerney, Blei: "Modeling User Exposure in Recommendation", WWW 2016).

Each click y_ui is generated only if the user was exposed (a_ui ~ Bernoulli(μ_i)); given exposure,
y_ui ~ N(θ_u·β_i, 1/λ_y). EM alternates:

- E-step: the exposure posterior p_ui = 1 where y_ui = 1, else
  μ_i·N(0 | θ_u·β_i, 1/λ_y) / (μ_i·N(0 | θ_u·β_i, 1/λ_y) + 1 − μ_i);
- M-step: exposure-weighted ridge regressions
  θ_u = (λ_y Σ_i p_ui β_i β_iᵀ + λ_θ I)⁻¹ λ_y Σ_i p_ui y_ui β_i (and symmetrically β_i), and the per-item prior
  μ_i = (α₁ + Σ_u p_ui − 1) / (α₁ + α₂ + n_users − 2).

Defaults are the reference implementation's (``n_components`` aside): λ_θ = λ_β = 1e-5, λ_y = 1, μ₀ = 0.01,
α₁ = α₂ = 1, init std 0.01. Scores are θ_u·β_i (the clicked-if-exposed preference), or μ_i·θ_u·β_i with
``exposure_scores``. The grid is held densely (users × items), fine for ML-100k-, Coat- and Yahoo! R3-sized data.
A history outside training is folded in by ridge regression against the item factors β (`fold_in`).
"""

from __future__ import annotations

import logging
import math
from typing import Self

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import Recommender, fold_in

log = logging.getLogger(__name__)


class ExpoMF(Recommender):
    """Exposure MF fitted by EM (see the module docstring).

    Args:
        n_components: factor dimension.
        max_iter: EM iterations.
        lambda_theta, lambda_beta: L2 precision of user and item factors.
        lambda_y: precision of the click given exposure.
        init_mu: initial exposure prior μ_i.
        alpha1, alpha2: Beta prior of μ_i.
        init_std: standard deviation of the initial factors.
        exposure_scores: rank by μ_i·θ_u·β_i instead of θ_u·β_i.
        seed: initialisation seed.
    """

    fitted_attributes = ("theta_", "beta_", "mu_")

    def __init__(
        self,
        n_components: int = 20,
        max_iter: int = 10,
        lambda_theta: float = 1e-5,
        lambda_beta: float = 1e-5,
        lambda_y: float = 1.0,
        init_mu: float = 0.01,
        alpha1: float = 1.0,
        alpha2: float = 1.0,
        init_std: float = 0.01,
        exposure_scores: bool = False,
        seed: int = 2026,
    ) -> None:
        self.n_components, self.max_iter = n_components, max_iter
        self.lambda_theta, self.lambda_beta, self.lambda_y = lambda_theta, lambda_beta, lambda_y
        self.init_mu, self.alpha1, self.alpha2, self.init_std = init_mu, alpha1, alpha2, init_std
        self.exposure_scores, self.seed = exposure_scores, seed

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        self._remember(train)
        y = torch.from_numpy(self.seen().toarray().astype(np.float64)).clamp_(max=1.0)  # [U, I] clicks
        generator = torch.Generator().manual_seed(self.seed)
        theta = self.init_std * torch.randn(train.n_users, self.n_components, generator=generator, dtype=torch.float64)
        beta = self.init_std * torch.randn(train.n_items, self.n_components, generator=generator, dtype=torch.float64)
        mu = torch.full((train.n_items,), self.init_mu, dtype=torch.float64)
        for iteration in range(self.max_iter):
            exposure = self._posterior(y, theta, beta, mu)  # [U, I]
            theta = self._ridge(exposure, y, beta, self.lambda_theta)
            beta = self._ridge(exposure.T, y.T, theta, self.lambda_beta)
            mu = (self.alpha1 + exposure.sum(0) - 1.0) / (self.alpha1 + self.alpha2 + train.n_users - 2.0)
            log.debug("ExpoMF iteration %d: mean exposure %.4f", iteration + 1, float(exposure.mean()))
        self.theta_, self.beta_, self.mu_ = theta.float(), beta.float(), mu.float()
        return self

    def _posterior(self, y: torch.Tensor, theta: torch.Tensor, beta: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """``[U, I]`` E[a_ui | y_ui]: 1 for clicks, else the posterior probability of an unclicked exposure."""
        mean = theta @ beta.T
        density = math.sqrt(self.lambda_y / (2 * math.pi)) * torch.exp(-0.5 * self.lambda_y * mean**2)  # N(0 | mean, 1/λ_y)
        posterior = mu * density / (mu * density + 1.0 - mu)
        return torch.where(y > 0, torch.ones_like(posterior), posterior)

    def _ridge(self, weights: torch.Tensor, y: torch.Tensor, other: torch.Tensor, lam: float) -> torch.Tensor:
        """``[R, K]`` rows solving (λ_y Σ_j w_rj o_j o_jᵀ + λ I) x_r = λ_y Σ_j w_rj y_rj o_j (all rows at once)."""
        gram = self.lambda_y * torch.einsum("rj,jk,jl->rkl", weights, other, other)  # [R, K, K]
        gram += lam * torch.eye(other.shape[1], dtype=other.dtype)
        rhs = self.lambda_y * (weights * y) @ other  # [R, K]
        return torch.linalg.solve(gram, rhs)

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        if not hasattr(self, "theta_"):
            _ = self.train_data  # raises NotFittedError
        scores = self.theta_[users.cpu()] @ self.beta_.T  # [B, I]
        return scores * self.mu_ if self.exposure_scores else scores

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        scores = self.beta_ @ fold_in(self.beta_, items)
        return scores * self.mu_ if self.exposure_scores else scores

    def item_vectors(self) -> torch.Tensor:
        return self.beta_
