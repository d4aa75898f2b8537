"""Does `implicit`'s own fit speed survive our wrapper? Times implicit's ALS and BPR fitted directly on the
users × items CSR against `recsys.baselines.ALS` / `BPR` fitted on the same `Interactions` (CSR built inside,
factors copied out), alternating runs, on ML-100k (RecBole protocol train split, seed 2026).

Usage: python scripts/bench_baselines.py [--repeats 5] [--output results/bench_baselines.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

import recsys
from recsys.baselines import ALS, BPR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("results/bench_baselines.json"))
    args = parser.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    data = recsys.datasets.load("ml-100k")
    train, _, _ = recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=2026)
    csr = train.to_csr()
    cases = {
        "als": (
            lambda: ALS(seed=1),
            lambda m: AlternatingLeastSquares(
                factors=m.factors, regularization=m.regularization, alpha=m.alpha, iterations=m.iterations,
                random_state=1, num_threads=m.threads,
            ),
        ),
        "bpr": (
            lambda: BPR(seed=1),
            lambda m: BayesianPersonalizedRanking(
                factors=m.factors, learning_rate=m.learning_rate, regularization=m.regularization,
                iterations=m.iterations, random_state=1, num_threads=m.threads,
            ),
        ),
    }  # fmt: skip
    results = {}
    print(f"{'model':6s} {'implicit direct (median)':>26s} {'recsys wrapper (median)':>25s} {'wrapper/direct':>15s}")
    for name, (wrapper, direct) in cases.items():
        times: dict[str, list[float]] = {"direct": [], "wrapper": []}
        for _ in range(args.repeats):
            with threadpool_limits(1, "blas"):
                model = direct(wrapper())
                started = time.perf_counter()
                model.fit(csr, show_progress=False)
                times["direct"].append(time.perf_counter() - started)
            started = time.perf_counter()
            wrapper().fit(train)
            times["wrapper"].append(time.perf_counter() - started)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[name] = {"median_s": med, "all_s": times, "ratio": med["wrapper"] / med["direct"]}
        print(f"{name:6s} {med['direct']:24.3f} s {med['wrapper']:23.3f} s {results[name]['ratio']:14.2f}x")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
