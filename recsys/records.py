"""`RunRecord`: the one schema of an evaluated run, written by `recsys fit`, `recsys benchmark`, `recsys tune` and the
scripts alike, so their results join on (dataset, protocol, model, seed)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Mapping

VERSIONED_PACKAGES = ("recsys", "torch", "torchrec", "polars", "numpy", "scipy", "implicit", "lightning")


def versions() -> dict[str, str]:
    """Versions of Python and of the installed packages that decide the numbers."""
    found = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def spread(mean: float, std: float | None) -> str:
    """A metric over seeds as ``mean ± std`` (four places); ``mean ± n/a`` where ``std`` is None: one seed has no
    spread to show, and ``± 0.0000`` would claim one."""
    return f"{mean:.4f} ± {'n/a' if std is None else f'{std:.4f}'}"


def jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` for a JSON record: scalars (ints, floats, strings, booleans, None) as they are, others as text."""
    return {k: v if v is None or isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}


@dataclass
class RunRecord:
    """One evaluated run.

    Attributes:
        dataset, protocol: the data and its split protocol.
        model: the run's name — the experiment YAML's stem (``mf-bpr``), the same wherever it ran.
        seed: the run's seed (split and training), None where a run has none.
        params: scalar constructor parameters of the model / task.
        metrics: test metrics (the `Evaluation` summary).
        timings: seconds (``fit_s``, ``evaluate_s``) and counts (``epochs``; ``threads_min`` / ``threads_max``,
            the torch threads a Lightning fit trained with: `recsys.threads`).
        evaluation: ``full`` or the sampling label of the evaluation.
        versions: package versions (`versions`).
        extra: keys a caller adds beside the schema (``checkpoint``, ``study``, ``p``, …), never instead of it.
    """

    dataset: str
    protocol: str
    model: str
    seed: int | None
    params: dict[str, Any]
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    evaluation: str = "full"
    versions: dict[str, str] = field(default_factory=versions)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object: the schema's keys, then ``extra``'s."""
        schema = {
            "dataset": self.dataset, "protocol": self.protocol, "model": self.model, "seed": self.seed,
            "evaluation": self.evaluation, "params": jsonable_params(self.params), "metrics": self.metrics,
            "timings": self.timings, "versions": self.versions,
        }  # fmt: skip
        clash = sorted(set(schema) & set(self.extra))
        if clash:
            raise ValueError(f"extra keys {clash} would replace the record schema's own")
        return {**schema, **self.extra}
