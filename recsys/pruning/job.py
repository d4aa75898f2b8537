"""`recsys prune`: read a pruning run YAML, score the LLM fine-tuning samples (cached), select, write the results.

A pruning run YAML has three keys:

- ``finetune``: the LLM recommender's run YAML whose training samples are pruned (a path relative to this file, or
  a shipped experiment's name), read by the same engine as ``recsys fit``;
- ``fewshot``: CLI overrides (``trainer.max_epochs: 40``) for fine-tuning on a selection — a few hundred samples
  need more epochs than the whole set;
- ``pruning``: `DataPruning`'s typed arguments (method, ratio, λ, bins, surrogate, LiSSA, …).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.errors import RunError
from recsys.pruning.pruner import DataPruning
from recsys.runs import named_run, read_yaml

KEYS = {"finetune", "fewshot", "pruning"}


@dataclass(frozen=True)
class PruningRun:
    """A pruning run YAML: the fine-tuning run it prunes, its few-shot overrides and the `DataPruning`."""

    path: Path
    finetune: Path
    fewshot: dict[str, Any]
    pruning: DataPruning

    def finetune_overrides(self, seed: int | None = None, selection: str | Path | None = None) -> list[str]:
        """CLI arguments of the fine-tuning run: ``seed`` for training, and with a ``selection`` the few-shot
        overrides plus ``--data.selection``."""
        words = [] if seed is None else ["--seed_everything", str(seed), "--model.init_args.seed", str(seed)]
        if selection is not None:
            for key, value in self.fewshot.items():
                words += [f"--{key}", str(value)]
            words += ["--data.selection", str(selection)]
        return words

    def settings(self) -> dict[str, Any]:
        """What a selection's ``prune.json`` records of the run (the method and ratio come from the selection)."""
        pruning = self.pruning
        return {"config": str(self.path), "finetune": str(self.finetune), **pruning.settings(), "lam": pruning.lam,
                "bins": pruning.bins, "hard_prune": pruning.hard_prune}  # fmt: skip


def read_pruning_run(path: str | Path, **overrides: Any) -> PruningRun:
    """Check and build a pruning YAML; ``overrides`` replace `DataPruning` arguments (``ratio``, ``method``,
    ``seed``) where not None."""
    from jsonargparse import ArgumentParser

    path = Path(path)
    raw = read_yaml(path)
    extra = sorted(set(raw) - KEYS)
    if extra or "finetune" not in raw:
        raise RunError(f"{path}: a pruning run has keys {sorted(KEYS)} ('finetune' required); got {sorted(raw)}")
    local = path.parent / str(raw["finetune"])
    finetune = local if local.exists() else named_run(str(raw["finetune"])).path
    fewshot = raw.get("fewshot") or {}
    if not isinstance(fewshot, dict):
        raise RunError(f"{path}: fewshot must map CLI keys to values, e.g. {{trainer.max_epochs: 40}}")
    arguments = {**(raw.get("pruning") or {}), **{k: v for k, v in overrides.items() if v is not None}}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DataPruning, "pruning")
    try:
        config = parser.parse_object({"pruning": arguments})
        pruning = parser.instantiate_classes(config).pruning
    except Exception as err:  # jsonargparse reports type and key errors as several exception types
        raise RunError(f"{path}: pruning: {str(err).strip()}") from err
    return PruningRun(path, finetune, fewshot, pruning)


def built_finetune(run: PruningRun, seed: int | None = None) -> tuple[Any, Any]:
    """The fine-tuning run's LLM task built on its data (the LM loaded or pre-trained, not fine-tuned) and its
    data module, split."""
    from recsys.lightning_cli import load_experiment

    experiment = load_experiment(run.finetune, run.finetune_overrides(seed))
    data = experiment.data
    data.setup("fit")
    experiment.task.attach(data)
    return experiment.task, data


def prune(run: PruningRun, output: Path, progress: bool = True) -> dict[str, Any]:
    """Score (or read cached scores), select with the run's method and ratio, and write `report.write_outputs`
    into ``output``, which must not hold results already. Returns the ``prune.json`` record."""
    from recsys.pruning.report import write_outputs

    if output.exists() and any(output.iterdir()):
        raise RunError(f"{output} is not empty: give a new --output folder (nothing is overwritten)")
    started = time.perf_counter()
    task, data = built_finetune(run)
    pruning = run.pruning
    scores = pruning.scores(task, data, progress)
    selected = pruning.select(scores)
    selected.timings["total_s"] = time.perf_counter() - started
    return write_outputs(output, scores, selected, run.settings(), pruning.lam, pruning.bins)
