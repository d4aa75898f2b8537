"""Full-ranking evaluation speed and memory against the bare floor, measured side by side in one run.

Floor: one chunked ``matmul`` + ``topk`` over all users, no masking, no hit bookkeeping, no metrics.
Ours: ``recsys.evaluate`` on the same factors, with training items excluded and every metric computed.

Cases:
  (a) ML-100k (RecBole protocol split, seed 2026), 64-dim random factors; target: ours <= 0.05 s per call
      (RecBole 1.2.1's full-sort validation of BPR takes about 0.13 s here).
  (b) synthetic 100,000 users x 50,000 items x 64 dims, 20 training and 5 test items per user;
      targets: ours <= 1.5x the floor, peak RSS < 4 GiB. Each run of (b) is a fresh subprocess so its peak RSS
      is its own.

Usage: python scripts/bench_evaluate.py [--repeats 3] [--skip-large] [--output results/bench_evaluate.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

import recsys
from recsys.data.interactions import Interactions
from recsys.data.sequences import Sequences
from recsys.recommender import Recommender

BATCH = 1024
K = (10, 20)


class FactorModel(Recommender):
    """Dot-product scorer over fixed random factors (what an MF model is at evaluation time)."""

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        self.dim, self.seed = dim, seed

    def fit(self, train: Interactions, valid: Interactions | None = None) -> FactorModel:
        self._remember(train)
        gen = torch.Generator().manual_seed(self.seed)
        self.users_ = torch.randn(train.n_users, self.dim, generator=gen)
        self.items_ = torch.randn(train.n_items, self.dim, generator=gen)
        return self

    def score(self, users: torch.Tensor, history: Sequences | None = None) -> torch.Tensor:
        return self.users_[users] @ self.items_.T


def floor(model: FactorModel, k: int) -> float:
    """Chunked matmul + topk over every user: the least any full-ranking evaluator must do."""
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, model.users_.shape[0], BATCH):
            torch.topk(model.users_[start : start + BATCH] @ model.items_.T, k, dim=1)
    return time.perf_counter() - started


def synthetic(n_users: int, n_items: int, train_per_user: int, test_per_user: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    per_user = train_per_user + test_per_user
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    users = np.repeat(np.arange(n_users), per_user)
    is_test = np.tile(np.arange(per_user) >= train_per_user, n_users)
    frame = pl.DataFrame({"user": users, "item": items})
    data = Interactions.from_frame(frame, name="synthetic")
    return data.with_frame(data.frame.filter(~pl.Series(is_test))), data.with_frame(data.frame.filter(pl.Series(is_test)))


def run_case(case: str, which: str) -> dict:
    """One timed run of ``which`` (floor | ours) on ``case``; returns seconds and this process's peak RSS."""
    torch.manual_seed(0)
    if case == "ml-100k":
        data = recsys.datasets.load("ml-100k")
        train, valid, _ = recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=2026)
        test, exclude = valid, [train]
    else:
        train, test = synthetic(100_000, 50_000, 20, 5)
        exclude = [train]
    model = FactorModel(64).fit(train)
    if which == "floor":
        seconds = floor(model, max(K))
    else:
        seconds = recsys.evaluate(model, test, exclude=exclude, k=K, batch_size=BATCH).seconds
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": seconds, "peak_rss_gib": peak_gib}


def in_subprocess(case: str, which: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", case, which], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(case: str, repeats: int, fresh_process: bool) -> dict:
    runs: dict[str, list[dict]] = {"floor": [], "ours": []}
    for _ in range(repeats):  # alternate, so background load hits both alike
        for which in ("floor", "ours"):
            runs[which].append(in_subprocess(case, which) if fresh_process else run_case(case, which))
            print(f"  {case:8s} {which:5s} {runs[which][-1]['seconds']:.3f} s", flush=True)
    summary = {}
    for which, values in runs.items():
        summary[which] = {
            "median_s": statistics.median(r["seconds"] for r in values),
            "all_s": [r["seconds"] for r in values],
            "peak_rss_gib": max(r["peak_rss_gib"] for r in values),
        }
    summary["ratio"] = summary["ours"]["median_s"] / summary["floor"]["median_s"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("results/bench_evaluate.json"))
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(*args.one)))
        return
    torch.set_num_threads(torch.get_num_threads())
    results = {"threads": torch.get_num_threads(), "batch_size": BATCH, "k": list(K)}
    results["ml-100k"] = measure("ml-100k", max(args.repeats, 5), fresh_process=False)
    if not args.skip_large:
        results["synthetic-100k-50k"] = measure("synthetic", args.repeats, fresh_process=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))

    small = results["ml-100k"]
    print("\ncase                 floor median   ours median   ours/floor   ours peak RSS   target")
    print(
        f"ml-100k (64-d)       {small['floor']['median_s']:10.4f} s  {small['ours']['median_s']:10.4f} s"
        f"   {small['ratio']:8.2f}x   {'':13s}   ours <= 0.05 s (RecBole BPR ~0.13 s): "
        f"{'MET' if small['ours']['median_s'] <= 0.05 else 'MISSED'}"
    )
    if "synthetic-100k-50k" in results:
        big = results["synthetic-100k-50k"]
        met = big["ratio"] <= 1.5 and big["ours"]["peak_rss_gib"] < 4
        print(
            f"100k x 50k x 64      {big['floor']['median_s']:10.2f} s  {big['ours']['median_s']:10.2f} s"
            f"   {big['ratio']:8.2f}x   {big['ours']['peak_rss_gib']:9.2f} GiB   ratio <= 1.5, RSS < 4 GiB: "
            f"{'MET' if met else 'MISSED'}"
        )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
