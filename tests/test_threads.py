"""The thread policy of training processes (`recsys.threads`): registration in the per-user registry, stale
registrations cleaned, the share of the cores computed from the live registrations, ``RECSYS_THREADS`` pinning,
and a fit that registers while it trains."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import lightning as L
import polars as pl
import pytest
import torch

import recsys.threads
from recsys.cli import main
from recsys.data.interactions import Interactions
from recsys.models import MF
from recsys.processes import Registry, alive, runtime_dir
from recsys.tasks import BPRTask
from recsys.threads import THREADS_ENV, TrainingThreads, trainers


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "trainers")


@pytest.fixture()
def four_cores(monkeypatch) -> Iterator[None]:
    """A 4-core machine as far as the policy knows, with torch at 4 threads (restored afterwards)."""
    before = torch.get_num_threads()
    monkeypatch.setattr(recsys.threads, "cores", lambda: 4)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def other_trainers(registry: Registry) -> Iterator[list[subprocess.Popen]]:
    """The live processes `register_other` registers as trainers, killed after the test."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def register_other(registry: Registry, started: list[subprocess.Popen]) -> int:
    """Register a live ``sleep`` process as a trainer; its pid."""
    process = subprocess.Popen(["sleep", "60"])
    started.append(process)
    registry.folder.mkdir(parents=True, exist_ok=True)
    (registry.folder / f"{process.pid}.json").write_text(json.dumps({"pid": process.pid, "threads": 1}))
    return process.pid


def own_file(registry: Registry) -> Path:
    return registry.folder / f"{os.getpid()}.json"


def test_a_registration_is_a_file_of_this_pid_and_its_threads_removed_on_close(registry, four_cores) -> None:
    with TrainingThreads(registry) as threads:
        assert json.loads(own_file(registry).read_text())["threads"] == 4 == torch.get_num_threads()
        assert registry.live() == [os.getpid()]
        assert threads.registered
    assert not own_file(registry).exists() and registry.live() == []
    threads.close()  # a second close (atexit after the fit's own) does nothing


def test_registrations_of_dead_processes_are_ignored_and_removed(registry) -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    assert not alive(process.pid)
    registry.folder.mkdir(parents=True)
    stale = registry.folder / f"{process.pid}.json"
    stale.write_text("{}")
    (registry.folder / "notes.txt").write_text("not a registration")
    assert registry.live() == []
    assert not stale.exists() and (registry.folder / "notes.txt").exists()


def test_the_share_follows_the_live_registrations_while_training(registry, four_cores, other_trainers) -> None:
    with TrainingThreads(registry, recheck_s=0) as threads:
        assert torch.get_num_threads() == 4  # alone
        register_other(registry, other_trainers)
        threads.recheck()
        assert torch.get_num_threads() == 2  # 4 cores // 2 trainers
        assert json.loads(own_file(registry).read_text())["threads"] == 2
        register_other(registry, other_trainers)
        threads.recheck()
        assert torch.get_num_threads() == 1  # 4 // 3
        for process in other_trainers:
            process.kill()
            process.wait()
        threads.recheck()
        assert torch.get_num_threads() == 4  # the others ended: the cores are back
        assert threads.used == {1, 2, 4}


def test_a_fit_that_starts_beside_another_takes_its_share_at_once(registry, four_cores, other_trainers) -> None:
    register_other(registry, other_trainers)
    with TrainingThreads(registry):
        assert torch.get_num_threads() == 2


def test_recheck_reads_the_registry_only_once_its_interval_has_passed(registry, four_cores, other_trainers) -> None:
    with TrainingThreads(registry, recheck_s=3600) as threads:
        register_other(registry, other_trainers)
        threads.recheck()
        assert torch.get_num_threads() == 4
        threads.adjust()
        assert torch.get_num_threads() == 2


def test_the_share_never_exceeds_the_threads_the_process_had_which_come_back_after(registry, four_cores,
                                                                                   other_trainers) -> None:  # fmt: skip
    torch.set_num_threads(1)  # a script's own choice
    with TrainingThreads(registry):
        assert torch.get_num_threads() == 1
    torch.set_num_threads(4)
    with TrainingThreads(registry, recheck_s=0) as threads:
        register_other(registry, other_trainers)
        threads.recheck()
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 4  # restored on close


def test_recsys_threads_pins_the_threads_whatever_the_others_do(registry, four_cores, other_trainers, monkeypatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    register_other(registry, other_trainers)
    with TrainingThreads(registry, recheck_s=0) as threads:
        assert torch.get_num_threads() == 3
        register_other(registry, other_trainers)
        threads.recheck()
        assert torch.get_num_threads() == 3
        assert json.loads(own_file(registry).read_text())["threads"] == 3  # the others count a pinned process too
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="RECSYS_THREADS must be a positive integer"):
        TrainingThreads(registry)


def test_a_registry_that_cannot_be_written_leaves_the_threads_as_they_were(tmp_path, four_cores, caplog) -> None:
    (tmp_path / "file").write_text("")
    with TrainingThreads(Registry(tmp_path / "file" / "trainers")) as threads:
        assert not threads.registered and torch.get_num_threads() == 4
    assert "cannot register" in caplog.text


def test_the_registry_is_in_the_user_runtime_folder_not_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert trainers().folder == tmp_path / "recsys" / "trainers"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir().name.startswith("recsys-") and Path.cwd() not in runtime_dir().parents


def test_a_fit_registers_while_it_trains_and_unregisters_after(small_frame: pl.DataFrame, monkeypatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)  # the runner's pin would replace the fair share checked below
    data = Interactions.from_frame(small_frame, user_col="uid", item_col="iid")
    registry, seen = trainers(), []  # the test session's private registry (conftest)

    class Look(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            seen.append(registry.live())

    task = BPRTask(MF(8), seed=1).fit(data, data, max_epochs=2, callbacks=[Look()])
    assert seen and all(pids == [os.getpid()] for pids in seen)
    assert registry.live() == []
    assert task.threads_used_ == (min(torch.get_num_threads(), recsys.threads.cores()),)
    assert task.thread_timings() == {"threads_min": task.threads_used_[0], "threads_max": task.threads_used_[0]}


def test_a_failing_fit_unregisters_too(small_frame: pl.DataFrame) -> None:
    data = Interactions.from_frame(small_frame, user_col="uid", item_col="iid")

    class Fail(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        BPRTask(MF(8), seed=1).fit(data, None, max_epochs=1, callbacks=[Fail()])
    assert trainers().live() == []


@pytest.mark.parametrize("command", [["benchmark", "--dataset", "no-such-data"], ["tune", "--config", "missing.yaml"]])
def test_threads_flags_pin_the_process_and_refuse_nonsense(command, monkeypatch, capsys) -> None:
    monkeypatch.setenv(THREADS_ENV, "placeholder")
    monkeypatch.delenv(THREADS_ENV)  # whatever the command sets is undone after the test
    assert main([*command, "--threads", "0"]) == 2
    assert "threads must be a positive integer, got '0'" in capsys.readouterr().err
    assert recsys.threads.threads_override() is None
    assert main([*command, "--threads", "2"]) == 2  # pinned, then the missing data or spec is the error
    assert recsys.threads.threads_override() == 2


def test_recsys_fit_takes_threads_before_lightning_sees_the_command(monkeypatch, capsys) -> None:
    monkeypatch.setenv(THREADS_ENV, "placeholder")
    monkeypatch.delenv(THREADS_ENV)
    assert main(["fit", "--threads=0", "--config", "missing.yaml"]) == 2
    assert "recsys: error: --threads must be a positive integer, got '0'" in capsys.readouterr().err
    from recsys.cli import _take_threads

    assert _take_threads(["fit", "--threads", "3", "--config", "x.yaml"]) == ["fit", "--config", "x.yaml"]
    assert recsys.threads.threads_override() == 3
