"""Thin wrappers around `implicit`'s ALS and BPR (CPU): its own fitting code, our `Recommender` interface."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Self

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import Recommender, fold_in, history_csr


class _ImplicitFactors(Recommender):
    """Fits an `implicit` model on the users × items CSR and scores by the dot product of its factors. A history
    outside training is folded in by ridge regression against the item factors (`fold_in`; ALS: its own solve)."""

    progress: bool
    fitted_attributes = ("user_factors_", "item_factors_")

    @abstractmethod
    def _build(self) -> Any:
        """The configured, unfitted `implicit` model."""

    def fit(self, train: Interactions, valid: Interactions | None = None) -> Self:
        self._remember(train)
        # implicit warns (and slows down) when BLAS runs its own threads beside implicit's.
        with threadpool_limits(1, "blas"):
            model = self._build()
            model.fit(self.seen(), show_progress=self.progress)
        self.user_factors_ = torch.from_numpy(np.ascontiguousarray(model.user_factors, dtype=np.float32))
        self.item_factors_ = torch.from_numpy(np.ascontiguousarray(model.item_factors, dtype=np.float32))
        return self

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        return self.user_factors_[users] @ self.item_factors_.T

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        return self.item_factors_ @ fold_in(self.item_factors_, items)

    def item_vectors(self) -> torch.Tensor:
        return self.item_factors_


class ALS(_ImplicitFactors):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit.cpu.als``.

    Args:
        factors: latent dimension.
        regularization: L2 penalty.
        alpha: confidence scale (c = 1 + alpha · x).
        iterations: ALS sweeps.
        seed: random initialisation.
        threads: implicit's worker threads (0 = all cores).
        progress: show implicit's progress bar.
    """

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 5.0,
        alpha: float = 1.0,
        iterations: int = 30,
        seed: int = 2026,
        threads: int = 0,
        progress: bool = False,
    ) -> None:
        self.factors, self.regularization, self.alpha, self.iterations = factors, regularization, alpha, iterations
        self.seed, self.threads, self.progress = seed, threads, progress

    def _build(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha, iterations=self.iterations,
            random_state=self.seed, num_threads=self.threads,
        )  # fmt: skip

    def score_history(self, items: np.ndarray) -> torch.Tensor:
        """The user's factors as implicit's ALS solves them against the frozen item factors
        (``recalculate_user``: confidence 1 + alpha · count of each history item)."""
        model = self._build()
        model.item_factors = self.item_factors_.numpy()
        with threadpool_limits(1, "blas"):
            user = model.recalculate_user(0, history_csr(items, self.n_items))
        return self.item_factors_ @ torch.from_numpy(np.asarray(user, dtype=np.float32))


class BPR(_ImplicitFactors):
    """Bayesian personalised ranking (Rendle et al. 2009) via ``implicit.cpu.bpr`` (one item-bias column).

    Args:
        factors: latent dimension (implicit adds one bias column).
        learning_rate: SGD step.
        regularization: L2 penalty.
        iterations: epochs over the positives.
        seed: random initialisation and sampling.
        threads: implicit's worker threads; 1 (the default) keeps SGD deterministic for a seed, 0 = all cores.
        progress: show implicit's progress bar.
    """

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.005,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 2026,
        threads: int = 1,
        progress: bool = False,
    ) -> None:
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.seed, self.threads, self.progress = iterations, seed, threads, progress

    def _build(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate, regularization=self.regularization,
            iterations=self.iterations, random_state=self.seed, num_threads=self.threads,
        )  # fmt: skip
