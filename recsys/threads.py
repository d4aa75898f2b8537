"""Intra-op threads of training processes that share a machine.

torch gives every process one thread per core. Two training processes on a 2-core machine then run four busy
threads on two cores and each fit takes many times as long (`scripts/bench_contention.py`: two MF-BPR fits at
once 17–19× a quiet fit with torch's default threads, about 1× with a share of the cores each).

The policy (`TrainingThreads`, which every `RecommenderTask` fit uses): while it trains, a process registers
itself in a per-user runtime folder (`recsys.processes.runtime_dir`, never the data folder or the working
directory) and trains with ``max(1, cores // live training processes)`` threads, never more than it had when the
fit began. It re-reads the folder every `RECHECK_S` seconds of training, so a fit already running drops to its
share when another one starts and takes the cores back when that one ends. Alone, a fit keeps torch's default.

Overrides: ``RECSYS_THREADS=N`` (or ``--threads N`` of `recsys fit | benchmark | tune`, which sets it) pins every
fit of the process to N threads, with no automatic change; `recsys tune --n-jobs N` pins each of its workers to
``cores // N``. Pinned processes register too, so the others count them.

Determinism: under contention the automatic policy changes the thread count of a fit. MF- and FM-family models
give identical numbers whatever the count; MLP models (NeuMF, DeepFM) may differ in the last float digits (their
reductions split differently). Set ``RECSYS_THREADS`` for bit-exact reruns of those.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from typing import Any, Self

import torch

from recsys.processes import Registry, runtime_dir

THREADS_ENV = "RECSYS_THREADS"
RECHECK_S = 0.1
"""Seconds of training between two reads of the registry: a read costs about 5 µs (a clock read, 0.07 µs, between
two), and a fit that has not yet noticed a newcomer oversubscribes the cores for at most this long."""

log = logging.getLogger(__name__)


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def share_of_cores(processes: int) -> int:
    """Threads of each of ``processes`` that train at once (at least 1)."""
    return max(1, cores() // max(1, processes))


def positive_threads(text: str, what: str) -> int:
    """``text`` as a thread count, or a ValueError naming ``what``."""
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{what} must be a positive integer, got {text!r}")
    return int(text)


def threads_override() -> int | None:
    """``$RECSYS_THREADS`` as a positive integer, or None when unset."""
    fixed = os.environ.get(THREADS_ENV)
    return None if fixed is None else positive_threads(fixed, THREADS_ENV)


def pin_threads(threads: int) -> None:
    """Pin every later fit of this process (and of the processes it starts) to ``threads``, as
    ``RECSYS_THREADS=threads`` does."""
    os.environ[THREADS_ENV] = str(threads)


def trainers() -> Registry:
    """The registry of this user's training processes."""
    return Registry(runtime_dir() / "trainers")


class TrainingThreads:
    """One fit's torch threads: ``$RECSYS_THREADS`` when set, else this process's share of the cores among the
    registered training processes (at most the threads it had before). `open` registers and sets them,
    `recheck` follows changes at most every ``recheck_s`` seconds, `close` unregisters and restores the threads
    of before (also at exit, should a fit never close). ``used`` collects every thread count the fit had."""

    def __init__(self, registry: Registry | None = None, recheck_s: float = RECHECK_S) -> None:
        self.registry = registry or trainers()
        self.recheck_s = recheck_s
        self.pinned = threads_override()
        self.before = torch.get_num_threads()
        self.used: set[int] = set()
        self.registered = False
        self._due = 0.0

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> int:
        """Register this process (before counting, so of two fits that start together one sees the other), set
        its threads; returns them."""
        self.before = torch.get_num_threads()
        self.registered = self._announce(self.before)
        atexit.register(self.close)
        return self.adjust()

    def adjust(self) -> int:
        """Set the threads of the moment (re-reading the registry unless pinned); returns them."""
        live = self._live()
        threads = self.pinned or min(self.before, share_of_cores(live))
        if threads != torch.get_num_threads():
            log.info("training with %d torch threads (%d recsys fits training on %d cores)", threads, live, cores())
            torch.set_num_threads(threads)
            if self.registered:
                self._announce(threads)
        self.used.add(threads)
        self._due = time.monotonic() + self.recheck_s
        return threads

    def recheck(self) -> None:
        """`adjust` when ``recheck_s`` has passed since the last look (costs a clock read otherwise)."""
        if self.pinned is None and time.monotonic() >= self._due:
            self.adjust()

    def close(self) -> None:
        """Unregister and restore the threads the process had before the fit (idempotent)."""
        atexit.unregister(self.close)
        if self.registered:
            self.registered = False
            try:
                self.registry.unregister()
            except OSError as err:
                log.warning("could not unregister from %s: %s", self.registry.folder, err)
        if torch.get_num_threads() != self.before:
            torch.set_num_threads(self.before)

    def _live(self) -> int:
        if not self.registered:
            return 1
        try:
            return max(1, len(self.registry.live()))
        except OSError:
            return 1

    def _announce(self, threads: int) -> bool:
        try:
            self.registry.register({"threads": threads})
        except OSError as err:
            log.warning("cannot register in %s (%s): training with %d threads, not sharing the cores",
                        self.registry.folder, err, self.pinned or self.before)  # fmt: skip
            return False
        return True
