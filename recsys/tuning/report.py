"""`recsys tune --show`: the best trial, a ready-to-run YAML of it, and a report that retrains the best and the
default config with the same seeds and compares them on the test split (paired tests on per-user values).

Writes to the output folder: ``best.yaml``, ``results.json`` (one record per config × seed, the benchmark schema
plus ``config`` and ``validation``), ``per_user.parquet``, ``trials.csv``, ``optimization_history.png``,
``param_importances.png``, ``parallel_coordinate.png`` and ``report.md``.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna
import polars as pl
import yaml
from optuna.trial import TrialState

from recsys.evaluation.significance import Comparison, compare_values
from recsys.records import RunRecord, spread, versions
from recsys.tuning.objective import lightning_config, recommender_args, retrain_and_test, seeded, values_of
from recsys.tuning.spec import SpecError, StudySpec
from recsys.tuning.study import open_storage

log = logging.getLogger(__name__)

CONFIGS = ("best", "default")
REPORT_METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10", "ndcg@20")
SPLIT_METRICS = ("auc", "logloss")


@dataclass(frozen=True)
class StudyReport:
    """What `write_report` found: the study, its best trial, the retrain records and the paired tests."""

    study: optuna.Study
    best: optuna.trial.FrozenTrial
    records: list[dict]
    comparisons: dict[str, Comparison]
    output: Path


def load(spec: StudySpec, storage: str | None, name: str) -> optuna.Study:
    """The stored study ``name``; a clear error when there is no storage or it has no such study."""
    if storage is None:
        raise SpecError(f"a report reads a stored study: give the --storage that `recsys tune` ran study {name!r} "
                        "with (e.g. sqlite:///studies.db); a study run without --storage lived in memory and is gone")  # fmt: skip
    store = open_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError as err:
        known = [s.study_name for s in optuna.get_all_study_summaries(store)] if store is not None else []
        raise SpecError(f"no study {name!r} in {storage!r}; it holds {known}") from err


def summary(study: optuna.Study) -> str:
    """A few lines: trials by state, the best trial (value, parameters, seeds) and the default trial's value."""
    states = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    best, default = study.best_trial, default_trial(study)
    is_default = default is not None and best.number == default.number
    lines = [
        f"study {study.study_name}: " + ", ".join(f"{n} {k.lower()}" for k, n in states.items() if n),
        f"best trial #{best.number}: value {best.value:.5f}" + (" (the default configuration)" if is_default else ""),
        *(f"  {key}: {value}" for key, value in best.params.items()),
        f"  seeds: {best.user_attrs.get('seeds')}",
        f"default configuration: trial #{default.number}, value {default.value:.5f}" if default is not None
        else "default configuration: not tried in this study",
    ]  # fmt: skip
    return "\n".join(lines)


def default_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The completed trial of the default configuration (enqueued first by `recsys.tuning.study.open_study`)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return next((t for t in done if t.user_attrs.get("config") == "default"), None)


def warnings_of(spec: StudySpec, study: optuna.Study, records: list[dict]) -> list[str]:
    """What keeps the report from overselling its best trial: a default never tried, and a best whose retrained
    validation value is worse than the default's (mean over the retrain seeds)."""
    found = []
    if default_trial(study) is None:
        found.append("the default configuration was never tried in this study (its values lie outside the search "
                     "space, or the study predates default trials), so the best trial may be worse than the default")  # fmt: skip
    if not records:
        return found
    means = {c: np.mean([r["validation"][spec.metric] for r in records if r["config"] == c]) for c in CONFIGS}
    sign = 1 if spec.direction == "maximize" else -1
    if sign * means["best"] < sign * means["default"]:
        found.append(f"retrained, the best trial is WORSE than the default on validation {spec.metric} "
                     f"({means['best']:.4f} vs {means['default']:.4f}): keep the default configuration")  # fmt: skip
    return found


def best_config(spec: StudySpec, params: dict[str, Any]) -> dict[str, Any]:
    """The best trial as a ready-to-run YAML mapping: a ``recsys fit --config`` experiment for Lightning studies;
    the recommender's class path, constructor arguments and data for recommender studies."""
    values = values_of(spec.space, params)
    if spec.kind == "lightning":
        return lightning_config(spec, values)
    assert spec.recommender is not None
    return {"recommender": {"class_path": spec.recommender["class_path"], "init_args": recommender_args(spec, values)},
            "data": spec.data}  # fmt: skip


def write_report(
    spec: StudySpec, storage: str | None, name: str, output: Path, *, seeds: Sequence[int] = (2026, 2027, 2028),
    retrain: bool = True,
) -> StudyReport:
    """Print the best trial and write the report folder (see the module docstring); ``retrain=False`` skips the
    test-set retrains (plots, best YAML and trials only)."""
    study = load(spec, storage, name)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SpecError(f"study {name!r} has no completed trial yet")
    best = study.best_trial
    print(summary(study))
    output.mkdir(parents=True, exist_ok=True)
    (output / "best.yaml").write_text(
        f"# best trial #{best.number} of study {name} ({spec.metric} {best.value:.5f} on validation)\n"
        + yaml.safe_dump(best_config(spec, best.params), sort_keys=False)
    )
    _trials_frame(study).write_csv(output / "trials.csv")
    plots = _plots(study, output)
    records: list[dict] = []
    per_user: list[pl.DataFrame] = []
    comparisons: dict[str, Comparison] = {}
    if retrain:
        env = versions()
        best_values = values_of(spec.space, best.params)
        if not seeded(spec):
            log.warning("%s takes no seed: trained once (seed %d), since other seeds give the same model",
                        spec.recommender["class_path"], seeds[0])  # type: ignore[index]  # fmt: skip
            seeds = seeds[:1]
        for seed in seeds:
            for config, values in (("best", best_values), ("default", {})):
                log.warning("retraining the %s config with seed %d", config, seed)
                ev, extra = retrain_and_test(spec, values, seed)
                records.append(RunRecord(
                    _dataset(spec), _protocol(spec), f"{name}-{config}", seed, extra["params"], ev.summary,
                    extra["timings"], ev.mode, env, extra={"validation": extra["validation"], "config": config,
                    "study": name, "trial": best.number if config == "best" else None},
                ).to_json())  # fmt: skip
                per_user.append(ev.per_user.with_columns(pl.lit(config).alias("config"), pl.lit(seed).alias("seed")))
        users = pl.concat(per_user, how="vertical_relaxed")
        users.write_parquet(output / "per_user.parquet")
        comparisons = paired_tests(users, [m for m in REPORT_METRICS if m in users.columns])
    (output / "results.json").write_text(json.dumps(records, indent=2, default=str))
    cautions = warnings_of(spec, study, records)
    for caution in cautions:
        print(f"warning: {caution}")
    (output / "report.md").write_text(_markdown(spec, study, name, records, comparisons, plots, cautions))
    print(f"wrote {output}/: report.md, best.yaml, results.json, trials.csv" + (", per_user.parquet" if retrain else "")
          + "".join(f", {p}" for p in plots))  # fmt: skip
    return StudyReport(study, best, records, comparisons, output)


def paired_tests(per_user: pl.DataFrame, metrics: Sequence[str]) -> dict[str, Comparison]:
    """Best vs default per metric: per-user values averaged over the seeds, paired by user."""
    means = per_user.group_by("config", "user").agg(*(pl.col(m).mean() for m in metrics))
    joined = means.filter(pl.col("config") == "best").join(means.filter(pl.col("config") == "default"), on="user",
                                                            suffix="_default").sort("user")  # fmt: skip
    return {m: compare_values(joined[m].to_numpy(), joined[f"{m}_default"].to_numpy(), m) for m in metrics}


def _trials_frame(study: optuna.Study) -> pl.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     "epochs": len(t.intermediate_values), "seconds": t.duration.total_seconds() if t.duration else None,
                     **{f"params_{k}": str(v) for k, v in t.params.items()}})  # fmt: skip
    return pl.DataFrame(rows)


def _plots(study: optuna.Study, output: Path) -> list[str]:
    """Optimisation history, parameter importances and parallel coordinates as PNG (Optuna's matplotlib
    plots, offline); a plot Optuna cannot draw (e.g. importances from one trial) is logged and skipped. Optuna draws
    through pyplot, whose backend is the caller's (headless machines fall back to Agg by themselves)."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []
    for file, draw in (
        ("optimization_history.png", ovm.plot_optimization_history),
        ("param_importances.png", ovm.plot_param_importances),
        ("parallel_coordinate.png", ovm.plot_parallel_coordinate),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
                axes = draw(study)
            figure = (axes.flat[0] if isinstance(axes, np.ndarray) else axes).get_figure()
            figure.set_size_inches(10, 6)
            figure.tight_layout()
            figure.savefig(output / file, dpi=110)
            plt.close(figure)
            written.append(file)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.warning("skipped %s: %s", file, err)
    return written


def _dataset(spec: StudySpec) -> str:
    return str(spec.data["dataset"]) if spec.kind == "recommender" else str(spec.base.get("data", {}).get("dataset", ""))


def _protocol(spec: StudySpec) -> str:
    return str(spec.data["protocol"]) if spec.kind == "recommender" else str(spec.base.get("data", {}).get("protocol", ""))


def _markdown(
    spec: StudySpec, study: optuna.Study, name: str, records: list[dict], comparisons: dict[str, Comparison],
    plots: list[str], cautions: list[str],
) -> str:
    best, default = study.best_trial, default_trial(study)
    is_default = default is not None and best.number == default.number
    states = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    what = f"`{spec.lightning}`" if spec.kind == "lightning" else f"`{spec.recommender['class_path']}`"  # type: ignore[index]
    lines = [
        f"# Study `{name}`", "",
        f"Spec `{spec.path}` over {what}; {spec.direction} validation {spec.metric}; sampler {spec.sampler}; "
        f"pruner {spec.pruner}.", "",
        "Trials: " + ", ".join(f"{n} {k.lower()}" for k, n in states.items() if n) + ".", "",
        *(f"**Warning: {caution}.**" for caution in cautions), *([""] if cautions else []),
        f"Best trial #{best.number}: validation {spec.metric} = {best.value:.5f}, seeds {best.user_attrs.get('seeds')}"
        + (" — the default configuration itself: tuning found nothing better." if is_default else "."), "",
        f"Default configuration: trial #{default.number}, validation {spec.metric} = {default.value:.5f}." if default
        else "Default configuration: not tried in this study.", "",
        "| parameter | best value |", "|---|---|",
        *(f"| `{k}` | {v} |" for k, v in best.params.items()), "",
        "Ready to run: `recsys fit --config best.yaml`.", "",
    ]  # fmt: skip
    if records:
        # Split-level metrics (a click task's AUC / log loss) have no per-user values to pair: shown, not tested.
        shown = [m for m in SPLIT_METRICS if m in records[0]["metrics"]] + list(comparisons)
        once = "" if seeded(spec) else "; the recommender takes no seed, so it is trained once"
        lines += [f"## Retrained on train, early-stopped on validation, tested (seeds "
                  f"{sorted({r['seed'] for r in records})}{once})", "",
                  f"| config | validation {spec.metric} | " + " | ".join(f"test {m}" for m in shown) + " |",
                  "|---|---|" + "---|" * len(shown)]  # fmt: skip
        for config in CONFIGS:
            rows = [r for r in records if r["config"] == config]
            cells = [_over_seeds([r["metrics"][m] for r in rows]) for m in shown]
            valid = _over_seeds([r["validation"][spec.metric] for r in rows])
            lines.append(f"| {config} | {valid} | " + " | ".join(cells) + " |")
        lines += ["", "Paired tests, best − default (per-user values averaged over seeds):", "",
                  "| metric | users | best | default | difference | t-test p | Wilcoxon p |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for m, c in comparisons.items():
            lines.append(f"| {m} | {c.n_users} | {c.mean_a:.4f} | {c.mean_b:.4f} | {c.mean_difference:+.4f} | "
                         f"{c.t_pvalue:.3g} | {c.wilcoxon_pvalue:.3g} |")  # fmt: skip
        lines.append("")
    lines += [f"![{p.removesuffix('.png')}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _over_seeds(values: list[float]) -> str:
    """Per-seed values as ``mean ± std`` (sample std, as the benchmark's), ``± n/a`` for one seed."""
    return spread(float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None)
