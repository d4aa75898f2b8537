"""Accuracy of the latent-factor models against RecBole 1.2.1's numbers on ML-100k, mean of 3 seeds.

Ranking (RecBole's default protocol: per-user random 8:1:1, full ranking, train+valid items excluded, early
stopping on validation NDCG@10 with patience 10): MF-BPR (RecBole BPR 0.2937) and NeuMF (RecBole 0.2790).
Click-style (RecBole's labeled protocol: rating >= 4 -> 1 on observed pairs, random 8:1:1, early stopping on
validation AUC): FM and DeepFM test AUC (RecBole FM 0.7831).

Usage: python scripts/reproduce_latent_factor.py [--seeds 2026,2027,2028] [--models mf-bpr,neumf,fm-click,deepfm-click]
       [--output results/latent_factor.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import recsys
from recsys.benchmark import versions
from recsys.models import FM, MF, DeepFM, NeuMF
from recsys.tasks import BCETask, BPRTask, ClickTask

REFERENCE = {"mf-bpr": ("ndcg@10", 0.2937), "neumf": ("ndcg@10", 0.2790), "fm-click": ("auc", 0.7831),
             "deepfm-click": ("auc", 0.7831)}  # fmt: skip


def run(name: str, seed: int, data) -> dict:
    started = time.perf_counter()
    if name in ("mf-bpr", "neumf"):
        train, valid, test = recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=seed)
        task = BPRTask(MF(64), seed=seed) if name == "mf-bpr" else BCETask(NeuMF(), seed=seed)
        task.fit(train, valid, max_epochs=300, patience=10)
        metrics = recsys.evaluate(task, test, exclude=[train, valid], k=(10, 20)).summary
    else:
        train, valid, test = recsys.splits.random_ratio(data, (0.8, 0.1, 0.1), seed=seed)
        model = FM(64) if name == "fm-click" else DeepFM(10)
        task = ClickTask(model, seed=seed, weight_decay=1e-5 if name == "fm-click" else 0.0)
        task.fit(train, valid, max_epochs=300, patience=10, label_threshold=4.0)
        metrics = task.click_metrics(test)
    return {
        "dataset": "ml-100k",
        "protocol": "user-811" if name in ("mf-bpr", "neumf") else "global-811-labeled",
        "model": name,
        "seed": seed,
        "params": {k: v for k, v in task.params().items() if isinstance(v, (int, float, str, bool))},
        "metrics": metrics,
        "timings": {"fit_s": time.perf_counter() - started, "epochs": task.epochs_trained_,
                    "best_epoch": task.best_weights_.best_epoch},  # fmt: skip
        "versions": versions(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="2026,2027,2028")
    parser.add_argument("--models", default="mf-bpr,neumf,fm-click,deepfm-click")
    parser.add_argument("--output", type=Path, default=Path("results/latent_factor.json"))
    args = parser.parse_args()
    data = recsys.datasets.load("ml-100k")
    records = []
    for name in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            records.append(run(name, seed, data))
            metric = REFERENCE[name][0]
            print(f"{name:13s} seed {seed}: {metric} {records[-1]['metrics'][metric]:.4f} "
                  f"({records[-1]['timings']['fit_s']:.0f} s, best epoch {records[-1]['timings']['best_epoch']})", flush=True)  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(records, indent=2))
    print("\nmodel          metric    mean     std      RecBole   target met")
    for name in args.models.split(","):
        metric, reference = REFERENCE[name]
        values = [r["metrics"][metric] for r in records if r["model"] == name]
        mean, std = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:13s}  {metric:8s}  {mean:.4f}  {std:.4f}   {reference:.4f}    {'yes' if mean >= reference else 'NO'}")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
