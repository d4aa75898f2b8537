"""Paired significance tests between two evaluations over the same users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from recsys.evaluation.evaluator import Evaluation


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of one metric: mean difference (a − b), paired t-test and Wilcoxon signed-rank."""

    metric: str
    n_users: int
    mean_a: float
    mean_b: float
    mean_difference: float
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float

    def as_dict(self) -> dict[str, float | int | str]:
        return dict(self.__dict__)


def paired_values(a: Evaluation, b: Evaluation, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user values of ``metric`` for the users both evaluations scored, aligned by raw user id."""
    for name, ev in (("a", a), ("b", b)):
        if metric not in ev.per_user.columns:
            raise KeyError(f"evaluation {name} has no per-user metric {metric!r}; it has {ev.per_user.columns}")
    joined = a.per_user.select("user", metric).join(b.per_user.select("user", metric), on="user", suffix="_b")
    return joined[metric].to_numpy(), joined[f"{metric}_b"].to_numpy()


def compare(a: Evaluation, b: Evaluation, metric: str = "ndcg@10") -> Comparison:
    """Paired t-test and Wilcoxon signed-rank test of ``metric`` between ``a`` and ``b`` (two-sided)."""
    x, y = paired_values(a, b, metric)
    return compare_values(x, y, metric)


def compare_values(x: np.ndarray, y: np.ndarray, metric: str) -> Comparison:
    """`compare` on aligned per-user arrays (used when per-user values are averaged over seeds first)."""
    if len(x) < 2:
        raise ValueError(f"need at least two paired users to test {metric}, got {len(x)}")
    diff = x - y
    if np.allclose(diff, 0):
        t_stat, t_p, w_stat, w_p = 0.0, 1.0, 0.0, 1.0
    else:
        t_stat, t_p = stats.ttest_rel(x, y)
        w_stat, w_p = stats.wilcoxon(x, y, zero_method="wilcox")
    return Comparison(
        metric=metric,
        n_users=len(x),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        mean_difference=float(diff.mean()),
        t_statistic=float(t_stat),
        t_pvalue=float(t_p),
        wilcoxon_statistic=float(w_stat),
        wilcoxon_pvalue=float(w_p),
    )
