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

``--grid lam=0.5,1 hard_prune=0,0.1`` runs every combination of the selection settings (λ, hard_prune, bins) for
the methods that read them, the others once; ``--judge valid`` judges the validation split instead (history = the
training split), so those settings are chosen without looking at the test split.

Usage:
    python scripts/reproduce_dealrec.py --output results/dealrec          # 3 seeds, 1/2/4 %, every method, full data
    python scripts/reproduce_dealrec.py --output results/dealrec-quick --quick   # 1 seed, 2 %, dealrec, random,
                                                                                # grand, el2n; no full-data run
    python scripts/reproduce_dealrec.py --output results/dealrec-valid --judge valid --seeds 2026,2027 \
        --ratios 0.02 --methods dealrec,random,grand --grid lam=0.5,1,2 hard_prune=0,0.1 --no-full
"""

from __future__ import annotations

import argparse
import itertools
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
SELECTION_SETTINGS = {"lam": ("dealrec", "greedy"), "hard_prune": ("dealrec", "influence-only", "ccs"),
                      "bins": ("dealrec", "influence-only", "ccs")}  # which methods read each setting


def grid_variants(words: list[str]) -> list[dict[str, float]]:
    """Every combination of ``key=v1,v2`` selection settings (``[{}]`` for none)."""
    axes = {}
    for word in words:
        key, _, values = word.partition("=")
        if key not in SELECTION_SETTINGS or not values:
            raise SystemExit(f"--grid takes KEY=V1,V2 with KEY one of {sorted(SELECTION_SETTINGS)}, got {word!r}")
        axes[key] = [int(v) if key == "bins" else float(v) for v in values.split(",")]
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def variant_of(method: str, variant: dict[str, float]) -> dict[str, float]:
    """The part of a selection-settings variant that ``method`` reads."""
    return {k: v for k, v in variant.items() if method in SELECTION_SETTINGS[k]}


def label(method: str, variant: dict[str, float]) -> str:
    """A run's name: ``dealrec``, or under a grid variant ``dealrec lam=1 hard_prune=0``."""
    return " ".join([method, *(f"{k}={v:g}" for k, v in variant.items())])


def method_score_cost(method: str, timings: dict[str, float]) -> float:
    """Seconds of scoring a method needs: none for random, the surrogate's for GraNd / EL2N / CCS, all for DEALRec's."""
    if method == "random":
        return 0.0
    if method in SURROGATE_ONLY:
        return timings["surrogate_s"] + timings["influence_s"]
    return timings["score_s"]


def fine_tune(run: PruningRun, seed: int, selection: Path | None, data, method: str, ratio: float,
              score_s: float, select_s: float, variant: dict[str, float], judge: str) -> tuple[dict, pl.DataFrame]:  # fmt: skip
    """Fine-tune the run's LLM recommender (on ``selection`` with the few-shot settings, else on all samples) and
    judge it on the ``judge`` split ("test": train + valid excluded; "valid": train excluded)."""
    experiment = load_experiment(run.finetune, run.finetune_overrides(seed, selection))
    started = time.perf_counter()
    task = experiment.fit(data.train, data.valid, selection=selection)
    finetune_s = time.perf_counter() - started
    if judge == "test":
        evaluation = task.judge(data.test, [data.train, data.valid], k=(10, 20))
    else:
        evaluation = task.judge(data.valid, [data.train], k=(10, 20))
    metrics = {m: evaluation.summary[m] for m in METRICS if m in evaluation.summary}
    name = label(method, variant)
    record = {"method": method, "label": name, "variant": variant, "judged": judge, "ratio": ratio, "seed": seed,
              "metrics": metrics, "epochs": task.epochs_trained_,
              "timings": {"score_s": score_s, "select_s": select_s, "finetune_s": finetune_s,
                          "total_s": score_s + select_s + finetune_s}}  # fmt: skip
    print(f"{name:15s} {ratio:6.2%} seed {seed}: " + ", ".join(f"{m} {v:.4f}" for m, v in metrics.items())
          + f"  (fine-tuning {finetune_s:.0f} s, {task.epochs_trained_} epochs; scores {score_s:.0f} s)", flush=True)  # fmt: skip
    per_user = evaluation.per_user.select("user", "ndcg@10").with_columns(
        pl.lit(name).alias("method"), pl.lit(ratio).alias("ratio"), pl.lit(seed).alias("seed"))
    return record, per_user


def comparisons(per_user: pl.DataFrame) -> list[dict]:
    """Paired tests of each DEALRec variant against every other method at each ratio (and against full data), on
    per-user NDCG@10 averaged over seeds (``method`` holds the run labels)."""
    means = per_user.group_by("method", "ratio", "user").agg(pl.col("ndcg@10").mean())
    ours_mask = pl.col("method").str.starts_with("dealrec")
    out = []
    for (name, ratio), ours in sorted(means.filter(ours_mask).group_by("method", "ratio"), key=lambda g: (g[0][1], g[0][0])):
        others = means.filter(~ours_mask & ((pl.col("ratio") == ratio) | (pl.col("method") == "full")))
        for method in sorted(others["method"].unique().to_list()):
            theirs = others.filter(pl.col("method") == method)
            joined = ours.join(theirs, on="user", suffix="_b")
            test = compare_values(joined["ndcg@10"].to_numpy(), joined["ndcg@10_b"].to_numpy(), "ndcg@10")
            out.append({"a": name, "b": method, "ratio": ratio, "n_users": test.n_users, "mean_a": test.mean_a,
                        "mean_b": test.mean_b, "t_pvalue": test.t_pvalue, "wilcoxon_pvalue": test.wilcoxon_pvalue})  # fmt: skip
    return out


def report(records: list[dict], tests: list[dict], wall_s: float) -> str:
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in records:
        groups.setdefault((r["label"], r["ratio"]), []).append(r)
    lines = ["# DEALRec data pruning on ML-100k leave-one-out", "",
             "The LLM recommender of bigrec.yaml (the catalogue LM, fully fine-tuned, constrained decoding) fine-tuned on "
             f"each method's selection; judged on the {records[0]['judged']} split, full ranking over all items, the "
             f"earlier splits excluded; means over seeds "
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
                  "| ratio | DEALRec | method | DEALRec | other | t-test p | Wilcoxon p |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {t['ratio']:.0%} | {t['a']} | {t['b']} | {t['mean_a']:.4f} | {t['mean_b']:.4f} | {t['t_pvalue']:.3g} | "
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
    parser.add_argument("--full-seeds", default=None, help="the seeds of full-data fine-tuning (default: every seed)")
    parser.add_argument("--judge", choices=("test", "valid"), default="test",
                        help="the split judged (valid: to choose selection settings without the test split)")
    parser.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2",
                        help="selection settings to cross (lam, hard_prune, bins), for the methods that read them")
    args = parser.parse_args()
    seeds = (2026,) if args.quick else tuple(int(s) for s in args.seeds.split(","))
    ratios = (0.02,) if args.quick else tuple(float(r) for r in args.ratios.split(","))
    methods = ("dealrec", "random", "grand", "el2n") if args.quick else tuple(args.methods.split(","))
    variants = grid_variants(args.grid)
    full_seeds = seeds if args.full_seeds is None else tuple(int(s) for s in args.full_seeds.split(","))
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
        scores = run.pruning.scores(task, data, progress=True)  # the selection settings are not part of the scores
        print(f"seed {seed}: scores of {len(scores.frame)} samples "
              f"({'cached' if scores.cached else 'computed'}: {json.dumps({k: round(v, 1) for k, v in scores.timings.items()})})",
              flush=True)  # fmt: skip
        for ratio in ratios:
            done: set[str] = set()
            for variant, method in itertools.product(variants, methods):
                reads = variant_of(method, variant)
                name = label(method, reads)
                if name in done:  # a method run once per setting it reads
                    continue
                done.add(name)
                pruning = read_pruning_run(CONFIG, seed=seed, **reads).pruning
                selected = pruning.select(scores, method, ratio)
                folder = args.output / "selections" / f"{name.replace(' ', '-')}-{ratio:g}-{seed}"
                write_outputs(folder, scores, selected, {**run.settings(), **reads}, pruning.lam, pruning.bins)
                keep(*fine_tune(run, seed, folder / "selection.parquet", data, method, ratio,
                                method_score_cost(method, scores.timings), selected.timings["select_s"], reads, args.judge))  # fmt: skip
        if not (args.quick or args.no_full) and seed in full_seeds:
            keep(*fine_tune(run, seed, None, data, "full", 1.0, 0.0, 0.0, {}, args.judge))
    print((args.output / "report.md").read_text())


if __name__ == "__main__":
    main()
