"""What `recsys prune` writes: the selection, every sample's scores, ``prune.json`` and a Markdown report with the
score distributions and the selection's coverage of the score bins as PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recsys.data.selection import write_selection
from recsys.pruning.pruner import SCORE_COLUMNS, SampleScores, Selected
from recsys.pruning.selection import combined_score

SELECTION = "selection.parquet"
SCORES = "scores.parquet"


def scores_frame(scores: SampleScores, selected: Selected, lam: float) -> pl.DataFrame:
    """Every sample: identity, the four scores, ``combined`` (DEALRec's, at ``lam``), the method's ``score`` and
    ``bin``, and ``selected``."""
    chosen = np.zeros(len(scores.frame), dtype=bool)
    chosen[selected.indices] = True
    combined = combined_score(scores.column("influence"), scores.column("effort"), lam)
    score = selected.score if selected.score is not None else np.full(len(chosen), np.nan)
    return scores.frame.with_columns(pl.Series("combined", combined), pl.Series("score", score),
                                     pl.Series("bin", selected.bins), pl.Series("selected", chosen))  # fmt: skip


def write_outputs(folder: Path, scores: SampleScores, selected: Selected, settings: dict[str, Any], lam: float,
                  bins: int) -> dict[str, Any]:  # fmt: skip
    """Write ``selection.parquet``, ``scores.parquet``, ``prune.json``, ``report.md``, ``scores.png`` and
    ``bins.png`` into ``folder`` (created; it must hold none of them). Returns the ``prune.json`` record."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = scores_frame(scores, selected, lam)
    write_selection(folder / SELECTION, frame.filter(pl.col("selected")).drop("selected"))
    frame.write_parquet(folder / SCORES)
    record = {
        "method": selected.method, "ratio": selected.ratio, "budget": selected.budget, "samples": len(frame),
        "scores_cached": scores.cached, "cache_key": scores.key,
        "timings": {**scores.timings, **selected.timings}, "settings": settings,
    }  # fmt: skip
    (folder / "prune.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    _plot_scores(frame, folder / "scores.png")
    coverage = _plot_bins(frame, bins, folder / "bins.png")
    (folder / "report.md").write_text(_markdown(record, frame, coverage), encoding="utf-8")
    return record


def _plot_scores(frame: pl.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    names = [*SCORE_COLUMNS, "combined"]
    figure = Figure(figsize=(3.2 * len(names), 2.8))
    chosen = frame["selected"].to_numpy()
    for n, name in enumerate(names):
        ax = figure.add_subplot(1, len(names), n + 1)
        values = frame[name].to_numpy()
        edges = np.histogram_bin_edges(values, bins=40)
        ax.hist(values, bins=edges, color="#9ab", label="all")
        ax.hist(values[chosen], bins=edges, color="#c43", label="selected")
        ax.set_title(name)
        ax.set_yscale("log")
        if n == 0:
            ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _plot_bins(frame: pl.DataFrame, bins: int, path: Path) -> list[tuple[int, int, int]]:
    """Per bin of the method's score: samples and selected samples (log scale). Returns ``(bin, samples,
    selected)`` rows of the non-empty bins."""
    from matplotlib.figure import Figure

    binned = frame.filter(pl.col("bin") >= 0)
    counts = binned.group_by("bin").agg(pl.len().alias("samples"), pl.col("selected").sum().alias("chosen")).sort("bin")
    rows = [(int(b), int(s), int(c)) for b, s, c in counts.iter_rows()]
    figure = Figure(figsize=(8, 3))
    ax = figure.add_subplot(1, 1, 1)
    if rows:
        x = np.array([r[0] for r in rows])
        ax.bar(x, [r[1] for r in rows], color="#9ab", label="samples")
        ax.bar(x, [r[2] for r in rows], color="#c43", label="selected")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlim(-1, bins)
    ax.set_xlabel("score bin (low → high)")
    ax.set_title("selection per score bin" if rows else "no score bins (random selection)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return rows


def _markdown(record: dict[str, Any], frame: pl.DataFrame, coverage: list[tuple[int, int, int]]) -> str:
    timings = record["timings"]
    lines = [
        f"# Data pruning: {record['method']} at {record['ratio']:.2%}", "",
        f"{record['budget']} of {record['samples']} training samples selected "
        f"(scores {'from the cache' if record['scores_cached'] else 'computed'}, key `{record['cache_key']}`).", "",
        "| timing | seconds |", "|---|---|",
        *(f"| {k} | {v:.1f} |" for k, v in timings.items()), "",
        "## Scores", "",
        "| score | min | median | max | mean (selected) | mean (all) |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    chosen = frame.filter(pl.col("selected"))
    for name in [*SCORE_COLUMNS, "combined"]:
        values = frame[name]
        lines.append(f"| {name} | {values.min():.4g} | {values.median():.4g} | {values.max():.4g} | "
                     f"{chosen[name].mean():.4g} | {values.mean():.4g} |")  # fmt: skip
    lines += ["", "![score distributions](scores.png)", "", "## Coverage of the score bins", ""]
    if coverage:
        lines += [f"{sum(1 for r in coverage if r[2])} of {len(coverage)} non-empty bins are sampled.", "",
                  "![bins](bins.png)"]  # fmt: skip
    else:
        lines.append("The method draws uniformly: no score bins.")
    users = chosen["user"].n_unique()
    lines += ["", f"The selection covers {users} users and {chosen['item'].n_unique()} distinct target items.", ""]
    return "\n".join(lines)
