"""Intra-op threads of training processes that share a machine.

torch gives every process one thread per core. Two training processes on a 2-core machine then run four busy
threads on two cores and each fit takes many times as long (`scripts/bench_contention.py`: MF-BPR 19× with torch's
default threads, 0.98× with one thread each). ``RECSYS_THREADS=N`` makes every recsys training process use N
threads, and `recsys tune --n-jobs N` gives each of its workers ``cores // N``.

No automatic choice for unrelated processes yet: one thread each would make a NeuMF fit alone 1.5× slower on this
machine, and a choice that follows the machine's load would make an MLP model's numbers depend on that load (NeuMF's
floats differ between 1 and 2 threads; MF's do not).
"""

from __future__ import annotations

import os

import torch

THREADS_ENV = "RECSYS_THREADS"


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def share_of_cores(processes: int) -> int:
    """Threads of each of ``processes`` that train at once (at least 1)."""
    return max(1, cores() // max(1, processes))


def threads_override() -> int | None:
    """``$RECSYS_THREADS`` as a positive integer, or None when unset."""
    fixed = os.environ.get(THREADS_ENV)
    if fixed is None:
        return None
    if not fixed.strip().isdigit() or int(fixed) < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {fixed!r}")
    return int(fixed)


def use_training_threads() -> int:
    """Set torch's intra-op threads to ``$RECSYS_THREADS`` when it is set (called when a task starts training);
    returns the threads in use."""
    fixed = threads_override()
    if fixed is not None and torch.get_num_threads() != fixed:
        torch.set_num_threads(fixed)
    return torch.get_num_threads()
