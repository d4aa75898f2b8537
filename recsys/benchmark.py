"""`recsys benchmark`: every model × seed through one split → fit → full-ranking evaluation pipeline, with a
leaderboard, per-user results, paired significance tests against the best model and a Markdown report."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import polars as pl

from recsys.data.interactions import Interactions
from recsys.data.registry import load
from recsys.data.splits import split
from recsys.evaluation.significance import compare_values
from recsys.records import RunRecord, spread, versions
from recsys.recommender import Recommender
from recsys.errors import RunError
from recsys.runs import FittedRun, NamedRun, fit_run, judge, named_run

log = logging.getLogger(__name__)

ModelFactory = Callable[[int], Recommender]
"""Builds an unfitted recommender for a seed (the Python API's alternative to a named run)."""

DEFAULT_MODELS = ("pop", "itemknn", "ease", "als", "bpr", "mf-bpr", "mf-bpr-tuned", "neumf")
DEFAULT_SEEDS = (2026, 2027, 2028)
DEFAULT_KS = (1, 5, 10, 20, 50)
LEADERBOARD_METRICS = ("ndcg@10", "recall@10", "precision@10", "hit@10", "mrr@10", "map@10", "ndcg@20", "coverage@10")


@dataclass(frozen=True)
class BenchmarkResult:
    """All records (one per model × seed), per-user values, and the leaderboard (mean ± std per model)."""

    records: list[dict]
    primary: str
    per_user: pl.DataFrame
    leaderboard: pl.DataFrame
    significance: pl.DataFrame
    output: Path | None


def resolve_models(
    models: Sequence[str | Path | NamedRun] | Mapping[str, ModelFactory], dataset: str
) -> dict[str, ModelFactory | NamedRun]:
    """What each benchmark entry runs, by name: named runs (shipped experiment names, YAML paths or `NamedRun`s,
    checked before any fit), or a mapping of the caller's own factories."""
    if isinstance(models, Mapping):
        return dict(models)
    runs = [ref if isinstance(ref, NamedRun) else named_run(ref, dataset) for ref in models]
    names = [run.name for run in runs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RunError(f"two benchmark entries share the name(s) {repeated}; rename one of the files")
    return {run.name: run for run in runs}


def run_benchmark(
    dataset: str | Interactions = "ml-100k",
    *,
    protocol: str = "user-811",
    models: Sequence[str | Path | NamedRun] | Mapping[str, ModelFactory] = DEFAULT_MODELS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    ks: Sequence[int] = DEFAULT_KS,
    output: Path | None = None,
    progress: bool = True,
) -> BenchmarkResult:
    """Split ``dataset`` by ``protocol`` once per seed, fit every model on train (early-stopping on validation
    where it trains), judge it on test with train and validation items excluded (full ranking), and write
    ``results.json``, ``per_user.parquet``, ``leaderboard.csv``, ``ndcg_at_k.png`` and ``report.md`` to
    ``output`` when given.

    ``models`` are named runs (`recsys.runs.named_run`: ``mf-bpr``, ``sasrec``, ``path/to/mine.yaml``), trained
    by the same engine as `recsys fit` with each seed as training seed, or ``{name: factory(seed)}``."""
    data = load(dataset) if isinstance(dataset, str) else dataset
    factories = resolve_models(models, data.name)
    env = versions()
    records, per_user = [], []
    jobs = [(seed, name) for seed in seeds for name in factories]
    bar = _progress(len(jobs), progress)
    for seed in seeds:
        train, valid, test = split(data, protocol, seed=seed)
        for name, factory in factories.items():
            bar.set_description(f"{name} seed {seed}")
            fitted = _fit(factory, train, valid, seed)
            model = fitted.model
            ev = judge(model, test, [train, valid], ks)
            params = {**model.params(), **(factory.fit_kwargs if isinstance(factory, NamedRun) else {})}
            record = RunRecord(data.name, protocol, name, seed, params, ev.summary,
                               {**fitted.timings, "evaluate_s": ev.seconds}, ev.mode, env)  # fmt: skip
            records.append(record.to_json())
            per_user.append(ev.per_user.with_columns(pl.lit(name).alias("model"), pl.lit(seed).alias("seed")))
            bar.update(1)
    bar.close()
    users = pl.concat(per_user, how="vertical_relaxed")
    primary = primary_metric(ks)
    board = leaderboard(records, primary)
    significance = significance_vs_best(users, board, primary)
    result = BenchmarkResult(records, primary, users, board, significance, output)
    if output is not None:
        write_outputs(result, data, protocol, ks)
    return result


def _fit(entry: ModelFactory | NamedRun, train: Interactions, valid: Interactions, seed: int) -> FittedRun:
    if isinstance(entry, NamedRun):
        return fit_run(entry, train, valid, seed)
    started = time.perf_counter()
    model = entry(seed).fit(train, valid)
    return FittedRun(model, {"fit_s": time.perf_counter() - started})


def primary_metric(ks: Sequence[int]) -> str:
    """The metric that orders the leaderboard: NDCG@10, or NDCG at the largest cut-off when 10 is not one."""
    return "ndcg@10" if 10 in ks else f"ndcg@{max(ks)}"


def leaderboard(records: list[dict], primary: str = "ndcg@10") -> pl.DataFrame:
    """Mean and standard deviation over seeds of every metric and timing, best ``primary`` first (the deviation is
    null for a model run with one seed)."""
    rows = [{"model": r["model"], "seed": r["seed"], **r["metrics"], **r["timings"]} for r in records]
    frame = pl.DataFrame(rows)
    values = [c for c in frame.columns if c not in ("model", "seed")]
    board = frame.group_by("model", maintain_order=True).agg(
        pl.len().alias("seeds"),
        *[pl.col(c).mean().alias(c) for c in values],
        *[pl.col(c).std(ddof=1).alias(f"{c}_std") for c in values],
    )
    return board.sort(primary, descending=True)


def significance_vs_best(per_user: pl.DataFrame, board: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Paired tests of each model against the best on ``metric``, per-user values averaged over seeds."""
    best = board["model"][0]
    means = per_user.group_by("model", "user").agg(pl.col(metric).mean())
    reference = means.filter(pl.col("model") == best).select("user", pl.col(metric).alias("best"))
    rows = []
    for name in board["model"][1:]:
        joined = means.filter(pl.col("model") == name).join(reference, on="user")
        result = compare_values(joined["best"].to_numpy(), joined[metric].to_numpy(), metric)
        rows.append({"model": name, "versus": best, **result.as_dict()})
    schema = {"model": pl.String, "versus": pl.String}
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema=schema)


# ------------------------------------------------------------------------------------------------ outputs
def write_outputs(result: BenchmarkResult, data: Interactions, protocol: str, ks: Sequence[int]) -> None:
    out = result.output
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result.records, indent=2))
    result.per_user.write_parquet(out / "per_user.parquet")
    result.leaderboard.write_csv(out / "leaderboard.csv")
    _plot_ndcg_at_k(result.leaderboard, ks, out / "ndcg_at_k.png")
    (out / "report.md").write_text(render_report(result, data, protocol))


def format_leaderboard(board: pl.DataFrame, metrics: Sequence[str] = LEADERBOARD_METRICS) -> str:
    """Markdown table: one row per model, ``mean ± std`` per metric (``± n/a`` for one seed), plus fit / evaluation
    seconds.

    Metrics at cut-offs the benchmark did not compute are left out; with none of ``metrics`` present, every
    NDCG / recall column is shown."""
    shown = [m for m in metrics if m in board.columns]
    if not shown:
        shown = [c for c in board.columns if c.startswith(("ndcg@", "recall@")) and not c.endswith("_std")]
    header = ["model", *shown, "fit s", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in board.iter_rows(named=True):
        cells = [row["model"], *[spread(row[m], row[m + "_std"]) for m in shown]]
        cells += [f"{row['fit_s']:.2f}", f"{row['evaluate_s']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_report(result: BenchmarkResult, data: Interactions, protocol: str) -> str:
    stats = data.describe()
    seeds = sorted({r["seed"] for r in result.records})
    lines = [
        f"# Benchmark: {data.name}, protocol `{protocol}`",
        "",
        f"Data: {stats['interactions']} interactions, {stats['users']} users, {stats['items']} items "
        f"(density {stats['density']:.4f}). Seeds: {', '.join(map(str, seeds))}. "
        f"Evaluation: {result.records[0]['evaluation']} ranking over the whole catalogue, training and validation "
        "items excluded; users without test items are not evaluated. Values are mean ± std over seeds (n/a: one seed).",
        "",
        "## Leaderboard",
        "",
        format_leaderboard(result.leaderboard),
        "",
        f"## Significance against the best model ({result.primary})",
        "",
        f"Per-user {result.primary} averaged over seeds, two-sided paired tests.",
        "",
        "| model | versus | users | Δ mean (best − model) | t-test p | Wilcoxon p |",
        "|---|---|---|---|---|---|",
    ]
    for row in result.significance.iter_rows(named=True):
        lines.append(
            f"| {row['model']} | {row['versus']} | {row['n_users']} | {row['mean_difference']:.4f} | "
            f"{row['t_pvalue']:.2e} | {row['wilcoxon_pvalue']:.2e} |"
        )
    lines += [
        "",
        "## NDCG@K",
        "",
        "![NDCG@K over K](ndcg_at_k.png)",
        "",
        "## Files",
        "",
        "- `results.json`: one record per model × seed (params, metrics, timings, versions)",
        "- `per_user.parquet`: every metric per evaluated user, model and seed",
        "- `leaderboard.csv`: the table above with all metrics",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result.records[0]["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def _plot_ndcg_at_k(board: pl.DataFrame, ks: Sequence[int], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for row in board.iter_rows(named=True):
        values = [row[f"ndcg@{k}"] for k in ks]
        errors = [row[f"ndcg@{k}_std"] or 0.0 for k in ks]  # one seed: no bar
        ax.errorbar(list(ks), values, yerr=errors, marker="o", capsize=3, label=row["model"])
    ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_xlabel("K")
    ax.set_ylabel("NDCG@K")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", disable=not enabled)


__all__ = ["DEFAULT_MODELS", "BenchmarkResult", "leaderboard", "run_benchmark"]
