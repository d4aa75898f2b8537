"""Does pruning save time? The same Optuna study (same spec, sampler seed and trial count) with the median
pruner and without pruning, repeated with alternating order; prints both wall times and the ratio of medians.

    python scripts/bench_tuning.py                       # MF-BPR on ML-100k, 10 trials x <= 6 epochs, 3 repeats
    python scripts/bench_tuning.py --trials 20 --max-epochs 30 --repeats 3 --output results/bench_tuning.json

The trial budget is smaller than the 30-trial, 30-epoch study of `experiments/ml-100k/tune-mf-bpr.yaml` so that
both arms fit on a shared CPU; the sizes are printed with the result. Target: pruned / unpruned <= 0.60.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from recsys.tuning.spec import load_spec
from recsys.tuning.study import run_study

PRUNER = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}


def run_once(spec_path: Path, trials: int, max_epochs: int, pruned: bool) -> dict:
    """One in-memory study; returns wall time, trial states, epochs trained and the best value."""
    spec = load_spec(spec_path)
    spec = dataclasses.replace(
        spec,
        overrides={**spec.overrides, "trainer.max_epochs": max_epochs},
        pruner=PRUNER if pruned else {"name": "none"},
        sampler={**spec.sampler, "n_startup_trials": min(4, trials)},
    )
    started = time.perf_counter()
    study = run_study(spec, n_trials=trials)
    wall = time.perf_counter() - started
    states = [t.state for t in study.trials]
    return {
        "pruning": pruned,
        "wall_s": wall,
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        "best_value": study.best_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("experiments/ml-100k/tune-mf-bpr.yaml"))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("results/bench_tuning.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    runs = []
    for repeat in range(args.repeats):
        order = (True, False) if repeat % 2 == 0 else (False, True)  # alternate, so drifting load hits both arms
        for pruned in order:
            run = {"repeat": repeat, **run_once(args.spec, args.trials, args.max_epochs, pruned)}
            runs.append(run)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in run.items()}), flush=True)
    with_pruning = statistics.median(r["wall_s"] for r in runs if r["pruning"])
    without = statistics.median(r["wall_s"] for r in runs if not r["pruning"])
    ratio = with_pruning / without
    print(f"\nstudy: {args.spec}, {args.trials} trials, <= {args.max_epochs} epochs each, TPE seed as in the spec, "
          f"median pruner {PRUNER} vs none; {args.repeats} repeats, alternating order")  # fmt: skip
    print(f"median wall time with pruning {with_pruning:.1f} s, without {without:.1f} s: ratio {ratio:.2f} "
          f"({'meets' if ratio <= 0.60 else 'misses'} the <= 0.60 target)")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"spec": str(args.spec), "trials": args.trials, "max_epochs": args.max_epochs,
                                       "pruner": PRUNER, "runs": runs, "median_wall_s_pruned": with_pruning,
                                       "median_wall_s_unpruned": without, "ratio": ratio}, indent=2))  # fmt: skip
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
