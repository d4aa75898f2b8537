"""Accuracy of the latent-factor experiments against RecBole 1.2.1's numbers on ML-100k, mean of 3 seeds.

Each model is an experiment YAML of ``experiments/ml-100k/`` (built as ``recsys fit`` builds it), trained once per
seed on that seed's split of its protocol, with its own epochs, patience and batch size:

- ranking (RecBole's default protocol: per-user random 8:1:1, full ranking, train+valid items excluded, early
  stopping on validation NDCG@10): MF-BPR (RecBole BPR 0.2937) and NeuMF (RecBole 0.2790);
- click-style (RecBole's labeled protocol: rating >= 4 -> 1 on observed pairs, random 8:1:1, early stopping on
  validation AUC): FM and DeepFM test AUC (RecBole FM 0.7831).

Usage: python scripts/reproduce_latent_factor.py [--seeds 2026,2027,2028] [--models mf-bpr,neumf,fm-click,...]
       [--output results/latent_factor.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import recsys
from recsys.records import RunRecord
from recsys.data.splits import split
from recsys.lightning_cli import load_experiment

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments" / "ml-100k"
DEFAULT_MODELS = "mf-bpr,mf-bpr-tuned,neumf,fm-click,fm-click-tuned,deepfm-click,deepfm-click-tuned"
RANKING_REFERENCE = {"mf-bpr": 0.2937, "neumf": 0.2790}  # RecBole 1.2.1 BPR / NeuMF test NDCG@10
CLICK_REFERENCE = 0.7831  # RecBole 1.2.1 FM test AUC


def reference(name: str) -> tuple[str, float]:
    """``(metric, RecBole's value)`` an experiment is compared with."""
    if "click" in name:
        return "auc", CLICK_REFERENCE
    return "ndcg@10", RANKING_REFERENCE[name.removesuffix("-tuned").removesuffix("-fused")]


def run(name: str, seed: int, data: recsys.Interactions) -> dict:
    """Fit ``experiments/ml-100k/<name>.yaml`` with ``seed`` (model and split) and test its best epoch with the
    task's own judge (click tasks: AUC and log loss beside the ranking metrics)."""
    started = time.perf_counter()
    experiment = load_experiment(EXPERIMENTS / f"{name}.yaml", ["--model.init_args.seed", str(seed)])
    task, module = experiment.task, experiment.data
    train, valid, test = split(data, module.protocol, seed=seed)
    experiment.fit(train, valid)
    fit_s = time.perf_counter() - started
    ev = task.judge(test, [train, valid], k=(10, 20))
    timings = {"fit_s": fit_s, "evaluate_s": ev.seconds, "epochs": task.epochs_trained_,
               "best_epoch": task.best_weights_.best_epoch}  # fmt: skip
    return RunRecord("ml-100k", module.protocol, name, seed, task.params(), ev.summary, timings, ev.mode).to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="2026,2027,2028")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="experiment names under experiments/ml-100k/")
    parser.add_argument("--output", type=Path, default=Path("results/latent_factor.json"))
    args = parser.parse_args()
    data = recsys.datasets.load("ml-100k")
    names = args.models.split(",")
    records = []
    for name in names:
        for seed in (int(s) for s in args.seeds.split(",")):
            records.append(run(name, seed, data))
            metric = reference(name)[0]
            print(f"{name:20s} seed {seed}: {metric} {records[-1]['metrics'][metric]:.4f} "
                  f"({records[-1]['timings']['fit_s']:.0f} s, best epoch {records[-1]['timings']['best_epoch']})", flush=True)  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(records, indent=2))
    print(f"\n{'experiment':20s} metric    mean     std      RecBole   target met")
    for name in names:
        metric, value = reference(name)
        values = [r["metrics"][metric] for r in records if r["model"] == name]
        mean, std = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:20s} {metric:8s}  {mean:.4f}  {std:.4f}   {value:.4f}    {'yes' if mean >= value else 'NO'}")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
