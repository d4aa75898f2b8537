"""Where run folders go and what every `recsys fit` run folder holds beside its results: the learning curve and a
short ``report.md``.

Run folders live under the run root: ``--trainer.default_root_dir`` of a Lightning run, else ``$RECSYS_RUNS_DIR``,
else ``runs`` in the working directory; each is ``<root>/<dataset>/<experiment>/version_N``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from recsys.records import RunRecord

RUNS_ENV = "RECSYS_RUNS_DIR"
DEFAULT_RUNS = "runs"
"""The run root when neither ``--trainer.default_root_dir`` nor ``$RECSYS_RUNS_DIR`` says otherwise; also the
``save_dir`` that ``experiments/trainer.yaml`` gives its logger, which the run root replaces."""

LEARNING_CURVE = "learning_curve.png"


def runs_root() -> Path:
    """The run root: ``$RECSYS_RUNS_DIR``, else ``runs`` under the working directory."""
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_RUNS)


def next_version(parent: Path) -> Path:
    """``parent/version_N`` for the next free N, created (Lightning's loggers number their run folders the same)."""
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.removeprefix("version_")) for p in parent.glob("version_*") if p.name[8:].isdigit()]
    folder = parent / f"version_{max(taken, default=-1) + 1}"
    folder.mkdir()
    return folder


def checkpoint_run(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` → ``<run>``; a checkpoint anywhere else
    → its own folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def plot_learning_curve(rows: Sequence[Mapping[str, float | None]], monitor: str, path: Path, best_epoch: int | None = None) -> bool:
    """Training loss and the monitored validation metric per epoch, one panel each, the best epoch marked; writes
    ``path`` and returns True, or False when no epoch recorded either value."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone
    from matplotlib.ticker import MaxNLocator

    series = {name: [(r["epoch"], r[name]) for r in rows if r.get(name) is not None] for name in ("train/loss", monitor)}
    if not any(series.values()):
        return False
    fig = Figure(figsize=(6, 5))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, (name, points) in zip(axes, series.items()):
        if points:
            epochs, values = zip(*points)
            ax.plot(epochs, values, marker="o", markersize=3)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:red", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
            ax.legend(loc="best")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write_run_report(
    folder: Path, *, title: str, config: Path | None, details: Mapping[str, Any], metrics: Mapping[str, float],
) -> Path:
    """``report.md`` of a run folder: what ran (config file and ``details`` such as the model, best epoch, epochs),
    the test metrics, and the files beside it."""
    lines = [f"# Run `{title}`", "", *(f"- {key}: {value}" for key, value in details.items())]
    if config is not None:
        lines.append(f"- config: `{config}`")
    lines += ["", "## Test metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in metrics.items()] or ["| (none) | |"]
    if (folder / LEARNING_CURVE).exists():
        lines += ["", "## Learning curve", "", f"![learning curve]({LEARNING_CURVE})"]
    files = sorted({p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()} | {"report.md"})
    lines += ["", "## Files", "", *(f"- `{name}`" for name in files)]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_results(folder: Path, record: RunRecord) -> None:
    """``results.json`` (one `RunRecord`) and ``versions.json`` of a run folder."""
    (folder / "results.json").write_text(json.dumps([record.to_json()], indent=2))
    (folder / "versions.json").write_text(json.dumps(record.versions, indent=2))
