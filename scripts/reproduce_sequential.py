"""ML-100k leave-one-out (validation = second-to-last, test = last item, full ranking, history excluded): Pop,
ItemKNN, SASRec, TGH-1, TGH-2 (their experiment YAMLs) through `recsys benchmark`'s engine, with SASRec's epoch cap as
an option.

`recsys benchmark --protocol loo --models pop,itemknn,sasrec,tgh-1,tgh-2` runs the same with SASRec's defaults
(at most 200 epochs, patience 10); on a loaded CPU, ``--sasrec-max-epochs`` bounds the run (the cap is recorded in
each SASRec record's params).

Usage:
    python scripts/reproduce_sequential.py [--models pop,itemknn,sasrec,tgh-1,tgh-2] [--seeds 2026,2027,2028]
        [--sasrec-max-epochs 200] [--sasrec-patience 10] [--threads 1] --output results/sequential-loo
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from recsys.benchmark import format_leaderboard, run_benchmark
from recsys.runs import named_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="pop,itemknn,sasrec,tgh-1,tgh-2")
    parser.add_argument("--seeds", default="2026,2027,2028")
    parser.add_argument("--sasrec-max-epochs", type=int, default=200)
    parser.add_argument("--sasrec-patience", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cap = {"max_epochs": args.sasrec_max_epochs, "patience": args.sasrec_patience}
    runs = [replace(named_run(name), fit_kwargs=cap) if name == "sasrec" else named_run(name) for name in args.models.split(",")]
    seeds = tuple(int(s) for s in args.seeds.split(","))
    result = run_benchmark("ml-100k", protocol="loo", models=runs, seeds=seeds, ks=(1, 5, 10, 20), output=args.output)
    print(format_leaderboard(result.leaderboard))


if __name__ == "__main__":
    main()
