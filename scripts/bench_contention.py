"""Two MF-BPR fits at once on this machine, with torch's default threads and with recsys' automatic policy
(`recsys.threads`: each fit takes ``cores // live training processes``), side by side in one run: medians of
repeated runs, alternating the two settings.

Each fit is a fresh process training ``BPRTask(MF(64))`` on ML-100k (seed 2026's user-811 split) for ``--epochs``
epochs without validation. Quiet: one fit alone; concurrent: two fits started together, each timed on its own.
Torch default: ``RECSYS_THREADS`` pinned to a fresh process's ``torch.get_num_threads()``; automatic: no override.
The fits register in a registry of this run alone, so other recsys processes on the machine do not change their
threads (their load still shows in the times: the load average is printed before and after).
Ratios are to the quiet fit with torch's default threads. Targets: two automatic concurrent fits each take at most
1.3× that, and an automatic quiet fit is no slower (at most 1.05×, the noise of a quiet fit here).

Usage: python scripts/bench_contention.py [--epochs 10] [--repeats 3] [--output results/bench_contention.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from recsys.threads import THREADS_ENV, cores

FIT = """
import os, sys, time, torch
import recsys
from recsys.models import MF
from recsys.tasks import BPRTask
if sys.argv[2] == "default":
    os.environ["RECSYS_THREADS"] = str(torch.get_num_threads())
data = recsys.datasets.load("ml-100k")
train, _, _ = recsys.splits.per_user_random(data, (0.8, 0.1, 0.1), seed=2026)
started = time.perf_counter()
task = BPRTask(MF(64), seed=2026).fit(train, None, max_epochs=int(sys.argv[1]))
print(time.perf_counter() - started, min(task.threads_used_), max(task.threads_used_))
"""
SETTINGS = ("torch default", "automatic")
QUIET_TARGET, CONCURRENT_TARGET = 1.05, 1.3


def fits(n: int, epochs: int, setting: str, registry: str) -> list[tuple[float, int, int]]:
    """Start ``n`` fit processes together; each one's ``(fit seconds, fewest threads, most threads)``."""
    env = {k: v for k, v in os.environ.items() if k != THREADS_ENV} | {"XDG_RUNTIME_DIR": registry}
    mode = "default" if setting == "torch default" else "automatic"
    procs = [subprocess.Popen([sys.executable, "-c", FIT, str(epochs), mode], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(n)]  # fmt: skip
    out = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a fit process failed with exit code {proc.returncode}")
        seconds, fewest, most = stdout.split()
        out.append((float(seconds), int(fewest), int(most)))
    return out


def threads_label(used: list[tuple[int, int]]) -> str:
    """``2`` when every fit kept one count, ``1-2`` when the counts ranged over fits or within a fit."""
    low, high = min(u[0] for u in used), max(u[1] for u in used)
    return str(low) if low == high else f"{low}-{high}"


def load() -> float:
    """The 1-minute load average (how busy the machine was besides these fits)."""
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("results/bench_contention.json"))
    args = parser.parse_args()
    cases = [(s, c) for s in SETTINGS for c in ("quiet", "concurrent")]
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    used: dict[tuple[str, str], list[tuple[int, int]]] = {case: [] for case in cases}
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as registry:
        for repeat in range(args.repeats):
            order = SETTINGS if repeat % 2 == 0 else SETTINGS[::-1]
            for setting in order:
                for case, n in (("quiet", 1), ("concurrent", 2)):
                    results = fits(n, args.epochs, setting, registry)
                    times[(setting, case)] += [seconds for seconds, _, _ in results]
                    used[(setting, case)] += [(fewest, most) for _, fewest, most in results]
                    print(f"repeat {repeat + 1} {setting:13s} {case:10s} "
                          + " ".join(f"{s:.2f}s ({threads_label([(lo, hi)])} threads)" for s, lo, hi in results),
                          flush=True)  # fmt: skip
    load_after = load()
    medians = {case: statistics.median(times[case]) for case in cases}
    reference = medians[("torch default", "quiet")]
    print(f"\nMF-BPR dim 64, {args.epochs} epochs on ML-100k, {cores()} cores, medians of {args.repeats} repeats "
          f"(load average {load_before:.2f} before, {load_after:.2f} after)")  # fmt: skip
    print(f"{'threads':14s} {'quiet s':>8s} {'threads':>7s} {'ratio':>6s}   {'concurrent s':>12s} {'threads':>7s} {'ratio':>6s}")
    summary = {}
    for setting in SETTINGS:
        quiet, both = medians[(setting, "quiet")], medians[(setting, "concurrent")]
        summary[setting] = {
            "quiet_s": quiet, "quiet_threads": threads_label(used[(setting, "quiet")]), "quiet_ratio": quiet / reference,
            "concurrent_s": both, "concurrent_threads": threads_label(used[(setting, "concurrent")]),
            "concurrent_ratio": both / reference,
        }  # fmt: skip
        row = summary[setting]
        print(f"{setting:14s} {quiet:8.2f} {row['quiet_threads']:>7s} {row['quiet_ratio']:6.2f}   "
              f"{both:12.2f} {row['concurrent_threads']:>7s} {row['concurrent_ratio']:6.2f}")  # fmt: skip
    auto = summary["automatic"]
    print(f"\nratios to the quiet fit with torch's default threads ({reference:.2f} s)")
    print(f"automatic, alone: {auto['quiet_ratio']:.2f} (no slower alone, <= {QUIET_TARGET}: "
          f"{'met' if auto['quiet_ratio'] <= QUIET_TARGET else 'MISSED'})")  # fmt: skip
    print(f"automatic, two at once: {auto['concurrent_ratio']:.2f} each (target <= {CONCURRENT_TARGET}: "
          f"{'met' if auto['concurrent_ratio'] <= CONCURRENT_TARGET else 'MISSED'})")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "epochs": args.epochs, "repeats": args.repeats, "cores": cores(),
        "load_average": {"before": load_before, "after": load_after},
        "runs": {f"{s}/{c}": times[(s, c)] for s, c in cases}, "summary": summary,
    }, indent=2))  # fmt: skip
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
