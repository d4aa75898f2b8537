"""ML-100k leave-one-out (validation = second-to-last, test = last item, full ranking, history excluded): Pop,
ItemKNN, SASRec, TGH-1, TGH-2 through `recsys benchmark`'s pipeline, with SASRec's epoch cap as an option.

`recsys benchmark --protocol loo --models pop,itemknn,sasrec,tgh-1,tgh-2` runs the same with SASRec's defaults
(at most 200 epochs, patience 10); on a loaded CPU, ``--sasrec-max-epochs`` bounds the run (the cap is recorded in
each SASRec record's params).

Usage:
    python scripts/reproduce_sequential.py [--models pop,itemknn,sasrec,tgh-1,tgh-2] [--seeds 2026,2027,2028]
        [--sasrec-max-epochs 200] [--sasrec-patience 10] [--threads 1] --output results/sequential-loo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from recsys.benchmark import BUILTIN_MODELS, format_leaderboard, run_benchmark
from recsys.models.sasrec import SASRec
from recsys.tasks.sequential import SequentialTask


class CappedSASRec(SequentialTask):
    """The benchmark's SASRec with an epoch cap and patience of this run."""

    max_epochs_cap: int = 200
    patience_cap: int = 10

    def fit(self, train, valid=None, **kwargs):
        return super().fit(train, valid, **{"max_epochs": self.max_epochs_cap, "patience": self.patience_cap, **kwargs})

    def params(self) -> dict:
        return {**super().params(), "max_epochs": self.max_epochs_cap, "patience": self.patience_cap}


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
    CappedSASRec.max_epochs_cap, CappedSASRec.patience_cap = args.sasrec_max_epochs, args.sasrec_patience
    factories = {}
    for name in args.models.split(","):
        factories[name] = (lambda seed: CappedSASRec(SASRec(), loss="ce", seed=seed)) if name == "sasrec" else BUILTIN_MODELS[name]
    seeds = tuple(int(s) for s in args.seeds.split(","))
    result = run_benchmark("ml-100k", protocol="loo", models=factories, seeds=seeds, ks=(1, 5, 10, 20), output=args.output)
    print(format_leaderboard(result.leaderboard))


if __name__ == "__main__":
    main()
