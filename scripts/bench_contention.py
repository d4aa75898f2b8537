"""Two MF-BPR fits at once on this machine, with torch's default threads and with a share of the cores each
(``RECSYS_THREADS=cores // 2``), side by side in one run (medians of repeated runs, alternating the two settings).

Each fit is a fresh process training ``BPRTask(MF(64))`` on ML-100k (seed 2026's user-811 split) for ``--epochs``
epochs without validation. Quiet: one fit alone; concurrent: two fits started together, each timed on its own.
Target: a concurrent fit takes at most 1.3× a quiet fit; the share's quiet fit is reported beside torch's default.

Usage: python scripts/bench_contention.py [--epochs 10] [--repeats 3] [--output results/bench_contention.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from recsys.threads import THREADS_ENV, cores, share_of_cores

FIT = """
import sys, time, torch
import recsys
from recsys.models import MF
from recsys.tasks import BPRTask
data = recsys.datasets.load("ml-100k")
train, _, _ = recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=2026)
started = time.perf_counter()
BPRTask(MF(64), seed=2026).fit(train, None, max_epochs=int(sys.argv[1]))
print(time.perf_counter() - started, torch.get_num_threads())
"""


def fits(n: int, epochs: int, threads: int | None) -> list[tuple[float, int]]:
    """Start ``n`` fit processes together; each one's ``(fit seconds, torch threads)``."""
    env = {k: v for k, v in os.environ.items() if k != THREADS_ENV}
    if threads is not None:
        env[THREADS_ENV] = str(threads)
    procs = [subprocess.Popen([sys.executable, "-c", FIT, str(epochs)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(n)]  # fmt: skip
    out = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a fit process failed with exit code {proc.returncode}")
        seconds, used = stdout.split()
        out.append((float(seconds), int(used)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("results/bench_contention.json"))
    args = parser.parse_args()
    settings = {"torch default": cores(), "shared": share_of_cores(2)}
    times: dict[tuple[str, str], list[float]] = {(s, c): [] for s in settings for c in ("quiet", "concurrent")}
    used: dict[str, int] = {}
    for repeat in range(args.repeats):
        order = list(settings) if repeat % 2 == 0 else list(reversed(settings))
        for name in order:
            for case, n in (("quiet", 1), ("concurrent", 2)):
                results = fits(n, args.epochs, settings[name])
                times[(name, case)] += [seconds for seconds, _ in results]
                used[name] = results[0][1]
                print(f"repeat {repeat + 1} {name:13s} {case:10s} " + " ".join(f"{s:.1f}s" for s, _ in results), flush=True)
    print(f"\nMF-BPR dim 64, {args.epochs} epochs on ML-100k, {cores()} cores, medians of {args.repeats} repeats")
    print(f"{'threads':14s} {'per process':>11s} {'quiet s':>8s} {'concurrent s':>13s} {'ratio':>6s}")
    summary = {}
    for name in settings:
        quiet, both = statistics.median(times[(name, "quiet")]), statistics.median(times[(name, "concurrent")])
        summary[name] = {"threads": used[name], "quiet_s": quiet, "concurrent_s": both, "ratio": both / quiet}
        print(f"{name:14s} {used[name]:11d} {quiet:8.2f} {both:13.2f} {both / quiet:6.2f}")
    ours, default = summary["shared"], summary["torch default"]
    print(f"\nconcurrent / quiet with a share each: {ours['ratio']:.2f} (target <= 1.3: "
          f"{'met' if ours['ratio'] <= 1.3 else 'MISSED'}); shared quiet / torch-default quiet: "
          f"{ours['quiet_s'] / default['quiet_s']:.2f}")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"epochs": args.epochs, "repeats": args.repeats, "cores": cores(),
                                       "runs": {f"{k[0]}/{k[1]}": v for k, v in times.items()}, "summary": summary},
                                      indent=2))  # fmt: skip
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
