"""DEALRec on ML-100k leave-one-out: prune the LLM recommender's fine-tuning samples (`experiments/ml-100k/
dealrec.yaml` over `bigrec.yaml`) with every selection method at the same budgets, fine-tune on each selection
with the YAML's few-shot settings, and judge on the test split (full ranking, history excluded); with full-data
fine-tuning beside them, as the authors compare.

Scores are computed once per seed (surrogate SASRec trained with that seed) and cached; every method and ratio of
that seed reuses them. A record's ``timings``: ``score_s`` what the method's scores cost (the surrogate + influence,
GraNd, EL2N for the surrogate-based methods, + the effort pass for DEALRec's; 0 for random and full data),
``select_s``, ``finetune_s`` (training and validation; the test judgement is not counted) and ``total_s``.

Writes ``DIR/results.json`` (``{"method", "ratio", "seed", "metrics", "timings"}`` per run), ``DIR/comparisons.json``
(the paired tests), ``DIR/per_user.parquet``, ``DIR/selections/`` (each selection with its scores and report) and
``DIR/report.md`` (means over seeds, paired t-tests on per-user NDCG@10 averaged over
seeds, pruning + 2% fine-tuning cost as a share of full-data fine-tuning).

Usage:
    python scripts/reproduce_dealrec.py --output results/dealrec          # 3 seeds, 1/2/4 %, every method, full data
    python scripts/reproduce_dealrec.py --output results/dealrec-quick --quick   # 1 seed, 2 %, dealrec, random,
                                                                                # grand, el2n; no full-data run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import polars as pl

from recsys.evaluation.significance import compare_values
from recsys.lightning_cli import load_experiment
from recsys.pruning import METHODS
from recsys.pruning.job import PruningRun, built_finetune, read_pruning_run
from recsys.pruning.report import write_outputs

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "ml-100k" / "dealrec.yaml"
METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20", "exact_match")
SURROGATE_ONLY = {"grand", "el2n", "ccs"}


def method_score_cost(method: str, timings: dict[str, float]) -> float:
    """Seconds of scoring a method needs: none for random, the surrogate's for GraNd / EL2N / CCS, all for DEALRec's."""
    if method == "random":
        return 0.0
    if method in SURROGATE_ONLY:
        return timings["surrogate_s"] + timings["influence_s"]
    return timings["score_s"]


def fine_tune(run: PruningRun, seed: int, selection: Path | None, data, method: str, ratio: float,
              score_s: float, select_s: float) -> tuple[dict, pl.DataFrame]:  # fmt: skip
    """Fine-tune the run's LLM recommender (on ``selection`` with the few-shot settings, else on all samples) and
    judge it on the test split."""
    experiment = load_experiment(run.finetune, run.finetune_overrides(seed, selection))
    started = time.perf_counter()
    task = experiment.fit(data.train, data.valid, selection=selection)
    finetune_s = time.perf_counter() - started
    evaluation = task.judge(data.test, [data.train, data.valid], k=(10, 20))
    metrics = {m: evaluation.summary[m] for m in METRICS if m in evaluation.summary}
    record = {"method": method, "ratio": ratio, "seed": seed, "metrics": metrics, "epochs": task.epochs_trained_,
              "timings": {"score_s": score_s, "select_s": select_s, "finetune_s": finetune_s,
                          "total_s": score_s + select_s + finetune_s}}  # fmt: skip
    print(f"{method:15s} {ratio:6.2%} seed {seed}: " + ", ".join(f"{m} {v:.4f}" for m, v in metrics.items())
          + f"  (fine-tuning {finetune_s:.0f} s, {task.epochs_trained_} epochs; scores {score_s:.0f} s)", flush=True)  # fmt: skip
    per_user = evaluation.per_user.select("user", "ndcg@10").with_columns(
        pl.lit(method).alias("method"), pl.lit(ratio).alias("ratio"), pl.lit(seed).alias("seed"))
    return record, per_user


def comparisons(per_user: pl.DataFrame) -> list[dict]:
    """Paired tests of DEALRec against every other method at each ratio (and against full data), on per-user
    NDCG@10 averaged over seeds."""
    means = per_user.group_by("method", "ratio", "user").agg(pl.col("ndcg@10").mean())
    out = []
    for ratio in sorted(means.filter(pl.col("method") == "dealrec")["ratio"].unique().to_list()):
        ours = means.filter((pl.col("method") == "dealrec") & (pl.col("ratio") == ratio)).sort("user")
        others = means.filter(((pl.col("ratio") == ratio) & (pl.col("method") != "dealrec")) | (pl.col("method") == "full"))
        for method in sorted(others["method"].unique().to_list()):
            theirs = others.filter(pl.col("method") == method).sort("user")
            joined = ours.join(theirs, on="user", suffix="_b")
            test = compare_values(joined["ndcg@10"].to_numpy(), joined["ndcg@10_b"].to_numpy(), "ndcg@10")
            out.append({"a": "dealrec", "b": method, "ratio": ratio, "n_users": test.n_users, "mean_a": test.mean_a,
                        "mean_b": test.mean_b, "t_pvalue": test.t_pvalue, "wilcoxon_pvalue": test.wilcoxon_pvalue})  # fmt: skip
    return out


def report(records: list[dict], tests: list[dict], wall_s: float) -> str:
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["ratio"]), []).append(r)
    lines = ["# DEALRec data pruning on ML-100k leave-one-out", "",
             "The LLM recommender of bigrec.yaml (the catalogue LM, fully fine-tuned, constrained decoding) fine-tuned on "
             "each method's selection; full ranking over all items, train + valid items excluded; means over seeds "
             "(± std where > 1 seed). Cost: scores + selection + fine-tuning, the test judgement not counted.", "",
             "| method | ratio | NDCG@10 | Recall@10 | NDCG@20 | Recall@20 | cost (s) | seeds |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (method, ratio), rows in sorted(groups.items(), key=lambda g: (g[0][1], -statistics.mean(r["metrics"]["ndcg@10"] for r in g[1]))):
        cells = []
        for metric in METRICS[:4]:
            values = [r["metrics"][metric] for r in rows]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.4f}{spread}")
        cost = statistics.median(r["timings"]["total_s"] for r in rows)
        lines.append(f"| {method} | {ratio:.0%} | " + " | ".join(cells) + f" | {cost:.0f} | {len(rows)} |")
    if tests:
        lines += ["", "Paired tests of per-user NDCG@10 (averaged over seeds), DEALRec against:", "",
                  "| ratio | method | DEALRec | other | t-test p | Wilcoxon p |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {t['ratio']:.0%} | {t['b']} | {t['mean_a']:.4f} | {t['mean_b']:.4f} | {t['t_pvalue']:.3g} | "
                  f"{t['wilcoxon_pvalue']:.3g} |" for t in tests]  # fmt: skip
    full = [r["timings"]["total_s"] for r in records if r["method"] == "full"]
    ours = [r["timings"]["total_s"] for r in records if r["method"] == "dealrec" and r["ratio"] == 0.02]
    if full and ours:
        lines += ["", f"Cost of DEALRec at 2% (pruning + fine-tuning), median {statistics.median(ours):.0f} s, against "
                  f"full-data fine-tuning, median {statistics.median(full):.0f} s: "
                  f"{statistics.median(ours) / statistics.median(full):.1%}."]  # fmt: skip
    return "\n".join(lines) + f"\n\nTotal wall time {wall_s:.0f} s.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2%%, dealrec / random / grand / el2n, no full data")
    parser.add_argument("--seeds", default="2026,2027,2028")
    parser.add_argument("--ratios", default="0.01,0.02,0.04")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-full", action="store_true", help="skip full-data fine-tuning")
    args = parser.parse_args()
    seeds = (2026,) if args.quick else tuple(int(s) for s in args.seeds.split(","))
    ratios = (0.02,) if args.quick else tuple(float(r) for r in args.ratios.split(","))
    methods = ("dealrec", "random", "grand", "el2n") if args.quick else tuple(args.methods.split(","))
    if args.output.exists() and any(args.output.iterdir()):
        raise SystemExit(f"{args.output} is not empty: give a new --output folder (nothing is overwritten)")
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records: list[dict] = []
    frames: list[pl.DataFrame] = []

    def keep(record: dict, per_user: pl.DataFrame) -> None:
        """Add a run and rewrite every output, so a stopped run leaves a consistent partial result."""
        records.append(record)
        frames.append(per_user)
        (args.output / "results.json").write_text(json.dumps(records, indent=2))
        everyone = pl.concat(frames)
        everyone.write_parquet(args.output / "per_user.parquet")
        tests = comparisons(everyone) if everyone["method"].n_unique() > 1 else []
        (args.output / "comparisons.json").write_text(json.dumps(tests, indent=2))
        (args.output / "report.md").write_text(report(records, tests, time.perf_counter() - started))

    for seed in seeds:
        run = read_pruning_run(CONFIG, seed=seed)
        task, data = built_finetune(run, seed)
        scores = run.pruning.scores(task, data, progress=True)
        print(f"seed {seed}: scores of {len(scores.frame)} samples "
              f"({'cached' if scores.cached else 'computed'}: {json.dumps({k: round(v, 1) for k, v in scores.timings.items()})})",
              flush=True)  # fmt: skip
        for ratio in ratios:
            for method in methods:
                selected = run.pruning.select(scores, method, ratio)
                folder = args.output / "selections" / f"{method}-{ratio:g}-{seed}"
                write_outputs(folder, scores, selected, run.settings(), run.pruning.lam, run.pruning.bins)
                keep(*fine_tune(run, seed, folder / "selection.parquet", data, method, ratio,
                                method_score_cost(method, scores.timings), selected.timings["select_s"]))  # fmt: skip
        if not (args.quick or args.no_full):
            keep(*fine_tune(run, seed, None, data, "full", 1.0, 0.0, 0.0))
    print((args.output / "report.md").read_text())


if __name__ == "__main__":
    main()
