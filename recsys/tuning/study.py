"""Create or resume a study on storage and run it to a number of finished trials, in one or several workers.

Resuming: the study is loaded from storage (``load_if_exists``); finished trials are kept. A trial left RUNNING
by a killed worker is marked FAIL — at once when its worker process (host + pid, recorded on every trial) is
gone, and by Optuna's heartbeat on RDB storage otherwise — and does not count: a study runs until it holds
``n_trials`` COMPLETE + PRUNED trials. Workers share the storage, so Optuna hands each its own trials; each
worker's sampler is seeded differently (the spec's seed + 1000 · worker + trials already in the study), so
workers and resumed runs do not propose the same parameters again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket

import optuna
from optuna.trial import FrozenTrial, TrialState

from recsys.processes import alive
from recsys.threads import pin_threads, share_of_cores, threads_override
from recsys.tuning.objective import Objective, default_params, validate
from recsys.tuning.spec import SpecError, StudySpec

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_S, GRACE_S = 10, 60
"""RDB heartbeat: a RUNNING trial whose worker has not beaten for ``GRACE_S`` seconds is marked FAIL."""


class StorageError(SpecError):
    """The storage URL cannot be opened."""


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """Storage of ``url``: an SQLAlchemy URL (``sqlite:///studies.db``, ``postgresql://…``; heartbeat on) or
    ``journal:PATH`` (a journal file, safe for several processes on one file system); None = in memory."""
    if url is None:
        return None
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as err:  # sqlalchemy / driver / OS errors: all mean "cannot reach this storage"
        raise StorageError(f"cannot open storage {url!r}: {type(err).__name__}: {str(err).splitlines()[0]}") from err


def make_sampler(spec: StudySpec, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with its ``seed`` (default 2026) + ``offset``."""
    options = dict(spec.sampler)
    name, seed = options.pop("name"), int(options.pop("seed", 2026)) + offset
    cls = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}[name]
    try:
        return cls(seed=seed, **options)
    except TypeError as err:
        raise SpecError(f"{spec.path}: sampler {name}: {err}") from err


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner (median by default) with its options."""
    options = dict(spec.pruner)
    name = options.pop("name")
    cls = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "none": optuna.pruners.NopPruner,
    }[name]
    try:
        return cls(**options)
    except TypeError as err:
        raise SpecError(f"{spec.path}: pruner {name}: {err}") from err


def open_study(spec: StudySpec, storage: str | None, name: str | None, worker: int = 0) -> optuna.Study:
    """Create the study or load it (same name, same storage), with the sampler seeded for ``worker`` and the
    trials already there. The default configuration is enqueued unless the study holds it already, so it is the
    first trial of a new study (and of a resumed one that never tried it), marked ``config: default``."""
    store = open_storage(storage)
    study = optuna.create_study(storage=store, study_name=name, direction=spec.direction, load_if_exists=True,
                                pruner=make_pruner(spec))  # fmt: skip
    default = default_params(spec)
    if default is not None:
        study.enqueue_trial(default, user_attrs={"config": "default"}, skip_if_exists=True)
    study.sampler = make_sampler(spec, offset=1000 * worker + len(study.get_trials(deepcopy=False)))
    return study


def finished(study: optuna.Study) -> int:
    """COMPLETE + PRUNED trials."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this host no longer exists (killed runs); returns
    their numbers. Called before a worker starts, so a RUNNING trial recorded under this very pid is stale too."""
    host, me, failed = socket.gethostname(), os.getpid(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("host") != host or (worker.get("pid") != me and alive(int(worker.get("pid", -1)))):
            continue
        # Optuna has no public call to fail another process's trial; its own stale-trial sweep does the same.
        if study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            failed.append(trial.number)
    if failed:
        log.warning("marked interrupted trial(s) %s as FAIL (their process is gone); they do not count", failed)
    return failed


class _Budget:
    """Stops the study once it holds ``n_trials`` finished trials; gives up after ``max_failures`` failed trials in
    this worker (e.g. NaN losses), so a broken space cannot loop for ever."""

    def __init__(self, n_trials: int, max_failures: int) -> None:
        self.n_trials, self.max_failures, self.failures = n_trials, max_failures, 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.failures += trial.state == TrialState.FAIL
        if finished(study) >= self.n_trials:
            study.stop()
        elif self.failures >= self.max_failures:
            raise RuntimeError(f"{self.failures} trials failed in this worker; stopping (see the log above)")


def _run_worker(spec: StudySpec, storage: str | None, name: str | None, n_trials: int, worker: int) -> optuna.Study:
    study = open_study(spec, storage, name, worker)
    fail_dead_trials(study)
    objective = Objective(spec)
    host, pid = socket.gethostname(), os.getpid()

    def run_trial(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", {"host": host, "pid": pid, "index": worker})
        return objective(trial)

    if finished(study) < n_trials:
        study.optimize(run_trial, callbacks=[_Budget(n_trials, max_failures=max(3, n_trials))], gc_after_trial=True)
    return study


def _worker_process(spec: StudySpec, storage: str, name: str, n_trials: int, worker: int, level: int,
                    threads: int) -> None:  # fmt: skip
    pin_threads(threads)  # the workers divide the cores among themselves (and register as trainers, pinned)
    logging.basicConfig(level=level, format=f"%(levelname)s [worker {worker}] %(message)s")
    optuna.logging.set_verbosity(level)
    _run_worker(spec, storage, name, n_trials, worker)


def run_study(
    spec: StudySpec, *, storage: str | None = None, name: str | None = None, n_trials: int | None = None,
    n_jobs: int = 1,
) -> optuna.Study:
    """Validate the spec, then create or resume the study and run it until it holds ``n_trials`` (default: the
    spec's) COMPLETE + PRUNED trials. ``n_jobs > 1`` runs that many worker processes on the shared storage
    (an RDB or journal URL; in-memory studies cannot be shared), each pinned to ``cores // n_jobs`` torch threads
    (``$RECSYS_THREADS`` when set), so a study's trials train with the same threads whatever else runs."""
    n_trials = n_trials or spec.n_trials
    validate(spec)
    if n_jobs <= 1:
        return _run_worker(spec, storage, name, n_trials, worker=0)
    if storage is None or name is None:
        raise SpecError("parallel workers (n_jobs > 1) need --storage (an RDB or journal URL) and --study-name")
    study = open_study(spec, storage, name)  # created once, before the workers load it
    fail_dead_trials(study)
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    threads = threads_override() or share_of_cores(n_jobs)
    workers = [context.Process(target=_worker_process, args=(spec, storage, name, n_trials, i, level, threads))
               for i in range(n_jobs)]  # fmt: skip
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    codes = [p.exitcode for p in workers]
    if any(codes):
        raise RuntimeError(f"tuning worker(s) failed with exit codes {codes}")
    return optuna.load_study(study_name=name, storage=open_storage(storage))
