"""The three shortcut structures of TGH's paper, measured on a leave-one-out split, with bootstrap 95% CIs.

The paper's exact formulas are not public; these are the operational definitions of the method notes (C.3):

- branching: mean out-degree of the training transition graph (over items with out-edges, and weighted by
  how often each item is a source), and the share of test targets inside ring 1 / rings ≤ 2 of the user's last
  history item (what TGH exploits);
- feature smoothness: mean cosine of the item vectors of consecutive training pairs against random pairs
  with the same item marginals (the second items shuffled), and of (last history item, test target);
- history dependence: a trained sequential model's NDCG@10 with its input cut to the last L items.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from recsys.data.graph import hop_rings, transition_counts
from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences, first_targets
from recsys.evaluation.evaluator import evaluate
from recsys.sequential import SequentialRecommender


@dataclass(frozen=True)
class Estimate:
    """A statistic with its percentile-bootstrap 95% confidence interval over ``n`` resampled units."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


def bootstrap_mean(values: np.ndarray, *, resamples: int = 1000, seed: int = 0, chunk: int = 50) -> Estimate:
    """Mean of ``values`` ``[n]`` with a percentile-bootstrap 95% CI (resampled in chunks to bound memory)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, chunk):
        draws = rng.integers(0, len(values), size=(min(chunk, resamples - start), len(values)))
        means.append(values[draws].mean(axis=1))
    low, high = np.percentile(np.concatenate(means), [2.5, 97.5])
    return Estimate(float(values.mean()), float(low), float(high), len(values))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> Estimate:
    """Mean of ``a - b`` over paired units (e.g. users) with a bootstrap 95% CI."""
    return bootstrap_mean(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), resamples=resamples, seed=seed)


def branching(train: Interactions, history: Sequences, test: Interactions, *, seed: int = 0) -> dict[str, Estimate]:
    """Out-degree of the training graph and ring coverage of the test targets around the last history item."""
    a, b = Sequences.from_interactions(train).transitions()
    counts = transition_counts(a, b, train.n_items)
    out_degree = np.diff(counts.indptr)
    sources = out_degree > 0
    rings = hop_rings(counts, 2)
    users, targets = first_targets(test)
    last = history.last_items(users, 1)[:, 0]
    known = last >= 0
    src = np.where(known, last, 0)
    in_ring1 = np.asarray(rings[0][src, targets]).ravel().astype(bool) & known
    in_ring2 = np.asarray(rings[1][src, targets]).ravel().astype(bool) & known
    return {
        "mean_out_degree": bootstrap_mean(out_degree[sources], seed=seed),
        # per transition: the out-degree of its source, i.e. Σ_a p(a)·outdeg(a)
        "traffic_weighted_out_degree": bootstrap_mean(out_degree[a], seed=seed),
        "target_in_ring1": bootstrap_mean(in_ring1, seed=seed),
        "target_in_rings_le2": bootstrap_mean(in_ring1 | in_ring2, seed=seed),
    }


def smoothness(
    train: Interactions, history: Sequences, test: Interactions, vectors: np.ndarray, *, seed: int = 0
) -> dict[str, Estimate]:
    """Cosine of consecutive training pairs vs random pairs (second items shuffled), and of (last, target)."""
    a, b = Sequences.from_interactions(train).transitions()
    rng = np.random.default_rng(seed)
    shuffled = b[rng.permutation(len(b))]
    consecutive = (vectors[a] * vectors[b]).sum(1)
    random_pairs = (vectors[a] * vectors[shuffled]).sum(1)
    users, targets = first_targets(test)
    last = history.last_items(users, 1)[:, 0]
    known = last >= 0
    test_pairs = (vectors[last[known]] * vectors[targets[known]]).sum(1)
    return {
        "consecutive_cosine": bootstrap_mean(consecutive, seed=seed),
        "random_pair_cosine": bootstrap_mean(random_pairs, seed=seed),
        "consecutive_minus_random": bootstrap_difference(consecutive, random_pairs, seed=seed),
        "test_last_to_target_cosine": bootstrap_mean(test_pairs, seed=seed),
    }


def history_dependence(
    model: SequentialRecommender,
    train: Interactions,
    valid: Interactions,
    test: Interactions,
    lengths: Sequence[int | None] = (1, 2, 5, 10, None),
    *,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Test NDCG@10 of a fitted sequential model reading only the last L history items (``None``: all), plus
    ``HD = 1 − NDCG@10(L=1) / NDCG@10(all)`` (bootstrap over users, paired)."""
    full_history = Sequences.from_interactions(train, valid)
    per_user: dict[str, np.ndarray] = {}
    for length in lengths:
        ev = evaluate(model, test, exclude=[train, valid], k=(10,), history=full_history.truncated(length))
        per_user["all" if length is None else str(length)] = ev.per_user["ndcg@10"].to_numpy()
    out = {f"ndcg@10_last_{key}": bootstrap_mean(values, seed=seed) for key, values in per_user.items()}
    if "1" in per_user and "all" in per_user:
        out["history_dependence"] = _ratio_drop(per_user["1"], per_user["all"], seed=seed)
    return out


def _ratio_drop(short: np.ndarray, full: np.ndarray, *, seed: int, resamples: int = 1000) -> Estimate:
    """``1 − mean(short) / mean(full)`` with users resampled jointly."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(full), size=(resamples, len(full)))
    ratios = 1.0 - short[draws].mean(1) / np.maximum(full[draws].mean(1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return Estimate(float(1.0 - short.mean() / max(full.mean(), 1e-12)), float(low), float(high), len(full))
