"""ML-100k leave-one-out (validation = second-to-last item, test = last, full ranking, history excluded): the LLM
recommender of `experiments/ml-100k/bigrec.yaml` fine-tuned once per (LM, identifiers, seed) and judged with each
grounding (constrained decoding, L2 by the base LM's hidden states, L2 by MiniLM vectors), beside Pop, ItemKNN,
SASRec and TGH-2 on the same split.

No pretrained causal LM is reachable here: ``catalogue`` is the small GPT-2 pre-trained on the catalogue text
(what a pretrained LLM brings: the catalogue's language, not the users); ``minilm-decoder`` is all-MiniLM-L6-v2 read
as a causal decoder, the one pretrained text model available (does pretrained language knowledge help?).

Writes ``DIR/results.json`` (one record per method × LM × identifiers × seed: ``method``, ``lm``, ``ids``,
``seed``, ``metrics`` {ndcg@10, recall@10, exact_match}, ``timings``) and ``DIR/report.md`` (means over seeds).

Usage:
    python scripts/reproduce_llm.py --output results/llm            # 3 seeds, both LMs, titles / sequential /
                                                                    # collaborative ids
    python scripts/reproduce_llm.py --output results/llm-quick --quick   # 1 seed, catalogue LM, titles
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from recsys.benchmark import run_benchmark
from recsys.data.registry import load
from recsys.data.splits import split
from recsys.lightning_cli import load_experiment
from recsys.runs import named_run

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "ml-100k" / "bigrec.yaml"
BASELINES = ("pop", "itemknn", "sasrec", "tgh-2")
METRICS = ("ndcg@10", "recall@10", "exact_match")
OPENP5 = {"ndcg@10": 0.0595, "recall@10": 0.1208}  # T5-small, sequential indexing, ML-100K leave-one-out


def fine_tuned_records(lm: str, ids: str, seed: int, epochs: int, train, valid, test) -> list[dict]:
    """Fine-tune the YAML's LLM recommender once and judge it with every grounding that fits the identifiers."""
    overrides = ["--seed_everything", str(seed), "--model.init_args.seed", str(seed),
                 "--model.init_args.model.init_args.lm", lm, "--model.init_args.ids", ids,
                 "--trainer.max_epochs", str(epochs)]  # fmt: skip
    if lm == "minilm-decoder":  # 22M weights, 15× the catalogue LM's cost a token: LoRA (peft's query, value)
        overrides += ["--model.init_args.model.init_args.lora_rank", "8", "--model.init_args.model.init_args.lora_alpha", "16"]
    experiment = load_experiment(CONFIG, overrides)
    started = time.perf_counter()
    task = experiment.fit(train, valid, max_epochs=epochs, patience=1)
    finetune_s = time.perf_counter() - started
    groundings = ("constrained", "l2-lm", "l2-minilm") if ids == "titles" else ("constrained", "l2-lm")
    records = []
    for grounding in groundings:
        task.grounding = grounding
        started = time.perf_counter()
        evaluation = task.judge(test, [train, valid], k=(10,))
        score_s = time.perf_counter() - started
        metrics = {m: evaluation.summary[m] for m in METRICS if m in evaluation.summary}
        records.append({"method": grounding, "lm": lm, "ids": ids, "seed": seed, "metrics": metrics,
                        "gamma": task.gammas_.get(grounding), "epochs": task.epochs_trained_,
                        "timings": {"finetune_s": finetune_s, "score_s": score_s}})  # fmt: skip
        print(f"{grounding:12s} {lm:15s} {ids:13s} seed {seed}: " + ", ".join(f"{m} {v:.4f}" for m, v in metrics.items())
              + f"  ({score_s:.0f} s to rank all users; fine-tuning {finetune_s:.0f} s)", flush=True)  # fmt: skip
    return records


def baseline_records(seeds: tuple[int, ...], sasrec_epochs: int, output: Path) -> list[dict]:
    runs = [replace(named_run(n), fit_kwargs={"max_epochs": sasrec_epochs, "patience": 5}) if n == "sasrec" else named_run(n)
            for n in BASELINES]  # fmt: skip
    result = run_benchmark("ml-100k", protocol="loo", models=runs, seeds=seeds, ks=(10,), output=output / "baselines")
    return [{"method": r["model"], "lm": None, "ids": None, "seed": r["seed"],
             "metrics": {m: r["metrics"][m] for m in ("ndcg@10", "recall@10")}, "timings": r.get("timings", {})}
            for r in result.records]  # fmt: skip


def report(records: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["lm"] or "", r["ids"] or ""), []).append(r)
    lines = ["# LLM recommender on ML-100k leave-one-out", "",
             "Full ranking over all items, train + valid items excluded; means over seeds (± std where > 1 seed).",
             f"OpenP5 (T5-small, published): NDCG@10 {OPENP5['ndcg@10']}, HR@10 {OPENP5['recall@10']}.", "",
             "| method | LM | ids | NDCG@10 | Recall@10 | exact match | seeds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for (method, lm, ids), rows in sorted(groups.items(), key=lambda g: -statistics.mean(r["metrics"]["ndcg@10"] for r in g[1])):
        cells = []
        for metric in METRICS:
            values = [r["metrics"][metric] for r in rows if metric in r["metrics"]]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.4f}{spread}" if values else "")
        lines.append(f"| {method} | {lm} | {ids} | " + " | ".join(cells) + f" | {len(rows)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="1 seed, the catalogue LM, titles, 2 epochs")
    parser.add_argument("--seeds", default="2026,2027,2028")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the YAML's 6; quick 2)")
    args = parser.parse_args()
    seeds = (2026,) if args.quick else tuple(int(s) for s in args.seeds.split(","))
    epochs = args.epochs or (2 if args.quick else 6)
    variants = [("catalogue", "titles")] if args.quick else [
        ("catalogue", "titles"), ("catalogue", "sequential"), ("catalogue", "collaborative"), ("minilm-decoder", "titles")]
    args.output.mkdir(parents=True, exist_ok=True)
    data = load("ml-100k")
    train, valid, test = split(data, "loo", seed=2026)  # leave-one-out by time: the same split for every seed
    started = time.perf_counter()
    records = baseline_records(seeds, 10 if args.quick else 30, args.output)
    for lm, ids in variants:
        for seed in seeds:
            records += fine_tuned_records(lm, ids, seed, epochs, train, valid, test)
            (args.output / "results.json").write_text(json.dumps(records, indent=2))
    text = report(records) + f"\nTotal wall time {time.perf_counter() - started:.0f} s.\n"
    (args.output / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
