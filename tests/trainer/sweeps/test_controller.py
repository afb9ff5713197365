"""The sweep controller's decisions, pass by pass, on a real study and job store, the trial runs
played by hand (their epochs written as a worker writes them): what it asks for, what it reports
and prunes, what it tells the study when a run ends, and when the sweep ends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from datavolume.files import read_json
from jobkit.models import JobError, JobState
from jobkit.store import JobStore
from tests.trainer.support import TINY
from trainer_service.runs import trial as trial_files
from trainer_service.runs.history import append_epoch
from trainer_service.settings import Settings
from trainer_service.sweeps import study as studies
from trainer_service.sweeps.controller import SweepController, sweep_names
from trainer_service.sweeps.spec import SweepRequest


class Runner:
    """The runner's part the controller uses: slots, admission, wake-ups, cancels."""

    def __init__(self, store: JobStore, slots: int = 2) -> None:
        self.store, self.slots, self.cancelled = store, slots, []

    def spare_slots(self) -> int:
        busy = self.store.count_running() + self.store.count_queued()
        return max(0, self.slots - busy)

    def admit(self) -> None:
        pass

    def wake(self) -> None:
        pass

    def cancel(self, job_id: str):
        self.cancelled.append(job_id)
        self.store.finish(job_id, JobState.CANCELLED, JobError(type="cancelled", message="x"))


def sweep(**fields) -> SweepRequest:
    base = {k: v for k, v in TINY.items() if k != "dataset"}
    body = {"name": "s", "dataset": "toy", "base": {**base, "epochs": 3},
            "space": {"learning_rate": {"low": 0.001, "high": 0.1, "log": True}},
            "sampler": "random", "pruner": "median", "startup_trials": 1,
            "prune_after_epochs": 1, "max_trials": 3, "max_concurrent": 2, **fields}  # fmt: skip
    return SweepRequest.model_validate(body)


@pytest.fixture
def world(data_root: Path):
    settings = Settings(data_root=data_root, sweep_verdict_wait_s=5)
    store = JobStore(settings.jobs_db)
    runner = Runner(store)
    controller = SweepController(settings, store, runner)
    return settings, store, runner, controller


def make(world, spec: SweepRequest):
    settings, _, _, controller = world
    studies.create(spec, controller.studies.storage(spec.name))
    folder = settings.volume.sweep(spec.name)
    folder.spec.write_text(spec.model_dump_json())
    assert sweep_names(settings) == [spec.name]
    return controller.studies.load(spec)


def trials(world, spec):
    return world[3].studies.load(spec).get_trials(deepcopy=False)


def epoch(world, run_id: str, number: int, value: float, *, report: bool = True) -> None:
    """What a trial's worker writes after an epoch: its history row, then its report."""
    run = world[0].volume.run(run_id)
    append_epoch(run, {"epoch": number, "step": number * 4, "val_accuracy": value})
    if report:
        trial_files.report(run, number, value)


def test_it_queues_trials_as_ordinary_runs_up_to_max_concurrent(world):
    settings, store, _, controller = world
    spec = sweep()
    make(world, spec)
    controller.tick()
    asked = trials(world, spec)
    assert [t.state for t in asked] == [TrialState.RUNNING, TrialState.RUNNING]
    for t in asked:
        job = store.get(t.user_attrs["run_id"])
        assert job.kind == "train" and job.state == JobState.QUEUED
        assert job.request["name"] == f"s-{t.number}" and job.request["tags"] == ["sweep:s"]
        assert job.request["learning_rate"] == t.params["learning_rate"]
        assert job.request["max_restarts"] >= 2 and job.request["epochs"] == 3
        link = trial_files.read_link(settings.volume.run(job.id))
        assert (link.sweep, link.number, link.metric) == ("s", t.number, "val_accuracy")
        assert t.user_attrs["host"] == controller.instance
    controller.tick()  # two run: no third while max_concurrent is 2
    assert len(trials(world, spec)) == 2


def test_epochs_are_reported_a_verdict_given_and_a_worse_trial_pruned(world):
    _, store, _, controller = world
    spec = sweep(max_concurrent=1)
    make(world, spec)
    controller.tick()
    (first,) = trials(world, spec)
    run_id = first.user_attrs["run_id"]
    store.mark_running(run_id, os.getpid())
    for n, value in ((1, 0.5), (2, 0.7), (3, 0.8)):
        epoch(world, run_id, n, value)
        controller.tick()
        assert trial_files.read_verdict(world[0].volume.run(run_id)) == (n, False)
    store.finish(run_id, JobState.SUCCEEDED)
    controller.tick()
    done, second = trials(world, spec)
    assert done.state == TrialState.COMPLETE and done.value == 0.8  # its best epoch
    assert done.intermediate_values == {1: 0.5, 2: 0.7, 3: 0.8}

    run_id = second.user_attrs["run_id"]
    store.mark_running(run_id, os.getpid())
    epoch(world, run_id, 1, 0.6)  # above the first trial's 0.5 at epoch 1: goes on
    controller.tick()
    assert trial_files.read_verdict(world[0].volume.run(run_id)) == (1, False)
    epoch(world, run_id, 2, 0.3)  # below its 0.7: pruned at this epoch's end
    controller.tick()
    assert trial_files.read_verdict(world[0].volume.run(run_id)) == (2, True)
    store.finish(run_id, JobState.SUCCEEDED)
    store.set_result(run_id, {"stopped_early": "pruned"})
    controller.tick()
    pruned = trials(world, spec)[1]
    assert pruned.state == TrialState.PRUNED and pruned.intermediate_values == {1: 0.6, 2: 0.3}


def test_epochs_the_service_missed_are_reported_from_the_history(world):
    _, store, _, controller = world
    spec = sweep(max_concurrent=1, pruner="none")
    make(world, spec)
    controller.tick()
    (first,) = trials(world, spec)
    run_id = first.user_attrs["run_id"]
    store.mark_running(run_id, os.getpid())
    for n, value in ((1, 0.2), (2, 0.4)):  # the service was down: no verdicts, history only
        epoch(world, run_id, n, value, report=False)
    epoch(world, run_id, 3, 0.3)
    controller.tick()
    assert trials(world, spec)[0].intermediate_values == {1: 0.2, 2: 0.4, 3: 0.3}
    assert trial_files.read_verdict(world[0].volume.run(run_id)) == (3, False)  # never prunes


def one_trial_started(world) -> tuple[SweepRequest, str]:
    """A sweep of one trial at a time, its first trial's run started: (spec, run id)."""
    spec = sweep(max_concurrent=1)
    make(world, spec)
    world[3].tick()
    run_id = trials(world, spec)[0].user_attrs["run_id"]
    world[1].mark_running(run_id, os.getpid())
    return spec, run_id


def test_a_failed_run_fails_its_trial_with_the_reason_and_another_is_asked(world):
    _, store, _, controller = world
    spec, run_id = one_trial_started(world)
    store.finish(run_id, JobState.FAILED, JobError(type="data_error", message="corrupt shard"))
    controller.tick()
    failed, replacement = trials(world, spec)
    assert failed.state == TrialState.FAIL and "corrupt shard" in failed.user_attrs["failure"]
    assert replacement.state == TrialState.RUNNING


def test_a_run_the_runner_restarts_stays_followed(world):
    _, store, _, controller = world
    spec, run_id = one_trial_started(world)
    store.finish(run_id, JobState.INTERRUPTED, JobError(type="interrupted", message="x"))
    controller.tick()  # max_restarts left: the runner queues it again; the trial goes on
    assert [t.state for t in trials(world, spec)] == [TrialState.RUNNING]


def test_values_that_make_no_run_fail_the_trial_and_it_is_replaced(world):
    _, store, runner, controller = world
    runner.slots = 4
    # Each end alone is a valid run; together a warm-up longer than the run is not.
    space = {"epochs": {"choices": [1, 3]}, "warmup_epochs": {"choices": [0.0, 2.0]}}
    spec = sweep(space=space, sampler="grid", max_trials=4, max_concurrent=4)
    make(world, spec)
    controller.tick()
    states = {(t.params["epochs"], t.params["warmup_epochs"]): t for t in trials(world, spec)}
    assert states[(1, 2.0)].state == TrialState.FAIL
    assert "warm-up" in states[(1, 2.0)].user_attrs["failure"]
    assert {t.state for k, t in states.items() if k != (1, 2.0)} == {TrialState.RUNNING}
    assert store.count_queued() == 3  # a grid tries each combination once: no replacement


def test_trials_of_a_service_that_stopped_answering_fail_and_are_replaced(world):
    settings, _, _, controller = world
    spec = sweep(max_concurrent=1)
    study = make(world, spec)
    gone = study.ask(studies.distributions(spec))
    gone.set_user_attr("host", "trainer-elsewhere")
    hosts = settings.volume.sweep_hosts
    studies.renew_lease(hosts, "trainer-elsewhere")
    controller.tick()  # its lease is fresh: its trial is its own
    assert [t.state for t in trials(world, spec)] == [TrialState.RUNNING]
    stale = time.time() - settings.sweep_host_grace_s - 1
    os.utime(hosts / "trainer-elsewhere", (stale, stale))
    controller.tick()
    first, replacement = trials(world, spec)
    assert first.state == TrialState.FAIL and "stopped answering" in first.user_attrs["failure"]
    assert replacement.user_attrs["host"] == controller.instance


def test_the_sweep_ends_succeeded_with_its_best_and_a_plot(world):
    settings, store, _, controller = world
    spec = sweep(max_trials=2, max_concurrent=2, pruner="none")
    make(world, spec)
    controller.tick()
    for t, value in zip(trials(world, spec), (0.4, 0.6), strict=True):
        run_id = t.user_attrs["run_id"]
        store.mark_running(run_id, os.getpid())
        epoch(world, run_id, 1, value)
        store.finish(run_id, JobState.SUCCEEDED)
    controller.tick()
    study = controller.studies.load(spec)
    assert study.user_attrs["state"] == "succeeded" and "2 trials finished" in study.user_attrs[
        "reason"]  # fmt: skip
    assert study.best_trial.value == 0.6 and len(trials(world, spec)) == 2
    assert settings.volume.sweep("s").plot.stat().st_size > 0


def test_a_stop_cancels_the_running_trials_and_ends_the_sweep_stopped(world):
    _, _, runner, controller = world
    spec = sweep()
    study = make(world, spec)
    controller.tick()
    ids = [t.user_attrs["run_id"] for t in trials(world, spec)]
    study.set_user_attr(studies.STOP_REQUESTED, True)
    controller.tick()
    assert sorted(runner.cancelled) == sorted(ids)
    controller.tick()
    assert [t.user_attrs["failure"] for t in trials(world, spec)] == ["stopped", "stopped"]
    assert controller.studies.load(spec).user_attrs["state"] == "stopped"
    assert read_json(world[0].volume.sweep("s").spec)["name"] == "s"
