"""DNIS against the full model and the fixed mixed-dimension rules at equal embedding budgets on ML-100k (random
7:2:1): rating (MF, MSE), click (FM, AUC / log loss) and ranking (MF-BPR, NDCG@10, full ranking).

Every run is built from the task's shipped YAML (``experiments/ml-100k/dnis-*.yaml``) by the one engine: ``dnis``
is that YAML at each budget, ``full`` / ``uniform`` / ``mde`` / ``random`` are `MixedDimensions` over the same
inner task (``full`` = uniform at budget 1). Model selection uses the validation split only; test is read once.

Writes ``DIR/results.json`` (records ``task, model, method, budget, embedding_params, seed, metrics, timings``),
``DIR/report.md`` (means ± std over seeds, ratios to full, the issue's targets) and ``DIR/<task>.png``
(parameters against quality).

Usage: python scripts/reproduce_dnis.py --output results/dnis [--quick] [--seeds 2026 2027 2028]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from recsys.data.registry import load
from recsys.data.splits import split
from recsys.runs import named_run
from recsys.specs import build_recommender

TASKS = {"rating": "dnis-mf-rating", "click": "dnis-fm-click", "ranking": "dnis-mf-ranking"}
METRIC = {"rating": ("mse", "min"), "click": ("auc", "max"), "ranking": ("ndcg@10", "max")}
log = logging.getLogger("reproduce_dnis")


def spec_for(task: str, method: str, budget: float, seed: int) -> dict:
    """The ``recommender`` spec of one run, from the task's DNIS YAML."""
    dnis = named_run(TASKS[task]).config["recommender"]
    args = dnis["init_args"]
    if method == "dnis":
        return {"class_path": dnis["class_path"], "init_args": {**args, "budget": budget, "seed": seed}}
    rule, budget = ("uniform", 1.0) if method == "full" else (method, budget)
    keep = {k: args[k] for k in ("task", "blocks", "patience", "batch_size")}
    return {"class_path": "recsys.tasks.dnis.MixedDimensions",
            "init_args": {**keep, "rule": rule, "budget": budget, "epochs": args["warm_start_epochs"], "seed": seed}}  # fmt: skip


def metrics_of(summary: dict) -> dict:
    out = {k: summary[k] for k in ("auc", "logloss", "ndcg@10") if k in summary}
    if "rmse" in summary:
        out["mse"] = summary["rmse"] ** 2
    return out


def run_one(task: str, method: str, budget: float, seed: int, parts) -> dict:
    train, valid, test = parts
    model = build_recommender(spec_for(task, method, budget, seed))
    started = time.perf_counter()
    model.fit(train, valid)
    fit_s = time.perf_counter() - started
    ev = model.judge(test, [train, valid], k=(10,))
    inner = type(model.task.model).__name__
    return {"task": task, "model": inner, "method": method, "budget": budget, "embedding_params": model.report_["embedding_params"],
            "full_params": model.report_["full_params"], "seed": seed, "metrics": metrics_of(ev.summary),
            "timings": {"fit_s": fit_s, **model.report_["timings"]}}  # fmt: skip


def summarise(records: list[dict]) -> str:
    lines = ["# DNIS reproduction on ML-100k (random 7:2:1)", ""]
    for task in dict.fromkeys(r["task"] for r in records):
        metric, mode = METRIC[task]
        mine = [r for r in records if r["task"] == task]
        full = statistics.mean(r["metrics"][metric] for r in mine if r["method"] == "full")
        lines += [f"## {task} ({mine[0]['model']}, {metric}; {'lower' if mode == 'min' else 'higher'} is better)", "",
                  "| method | budget | params | " + metric + " (mean ± std) | ratio to full | seeds |", "|---|---|---|---|---|---|"]  # fmt: skip
        groups: dict[tuple[str, float], list[dict]] = {}
        for r in mine:
            groups.setdefault((r["method"], r["budget"]), []).append(r)
        for (method, budget), rows in sorted(groups.items(), key=lambda g: (-g[0][1], g[0][0])):
            values = [r["metrics"][metric] for r in rows]
            spread = f"{statistics.stdev(values):.4f}" if len(values) > 1 else "n/a"
            params = round(statistics.mean(r["embedding_params"] for r in rows))
            lines.append(f"| {method} | {budget:.0%} | {params} | {statistics.mean(values):.4f} ± {spread} | "
                         f"{statistics.mean(values) / full:.4f} | {len(values)} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot(records: list[dict], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task in dict.fromkeys(r["task"] for r in records):
        metric, _ = METRIC[task]
        figure, axes = plt.subplots(figsize=(5, 3.5))
        for method in dict.fromkeys(r["method"] for r in records if r["task"] == task):
            rows = sorted((r for r in records if r["task"] == task and r["method"] == method), key=lambda r: r["budget"])
            budgets = sorted({r["budget"] for r in rows})
            means = [statistics.mean(r["metrics"][metric] for r in rows if r["budget"] == b) for b in budgets]
            params = [statistics.mean(r["embedding_params"] for r in rows if r["budget"] == b) for b in budgets]
            axes.plot(params, means, marker="o", label=method)
        axes.set_xscale("log")
        axes.set_xlabel("embedding parameters")
        axes.set_ylabel(f"test {metric}")
        axes.set_title(f"{task}: parameters vs quality", fontsize=9)
        axes.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(output / f"{task}.png", dpi=120)
        plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="one seed, budgets 100/50/25%%, the rating task")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 2027, 2028])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    seeds, tasks = (args.seeds[:1], ["rating"]) if args.quick else (args.seeds, args.tasks)
    budgets = [1.0, 0.5, 0.25] if args.quick else [1.0, 0.5, 0.25, 0.1]
    args.output.mkdir(parents=True, exist_ok=True)
    data = load("ml-100k")
    records: list[dict] = []
    for task in tasks:
        for seed in seeds:
            parts = split(data, "global-721", seed=seed)
            plan = [("full", 1.0)] + [(m, b) for b in budgets for m in ("dnis", "uniform", "mde", "random") if b < 1.0 or m == "dnis"]
            for method, budget in plan:
                record = run_one(task, method, budget, seed, parts)
                records.append(record)
                log.info("%s seed %d %s %.0f%%: %s (%d params, %.0f s)", task, seed, method, 100 * budget,
                         record["metrics"], record["embedding_params"], record["timings"]["fit_s"])  # fmt: skip
                (args.output / "results.json").write_text(json.dumps(records, indent=2))
    report = summarise(records)
    (args.output / "report.md").write_text(report)
    plot(records, args.output)
    print(report)


if __name__ == "__main__":
    main()
