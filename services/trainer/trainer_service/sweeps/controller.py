"""The sweeps a trainer service runs: one thread in the service, :class:`SweepController`.

On every pass (``sweep_poll_s``) it renews the service's lease, then for each sweep on the volume
that has not ended:

1. **Follows its own trials** (those whose ``host`` is this service): reports each new epoch's
   value of the trial's run to Optuna (the run's history, and the report its worker writes after
   each epoch: ``runs.trial``), answers the worker's wait with the pruner's verdict on that
   epoch, and when the run ends tells the study: ``COMPLETE`` with the run's best value,
   ``PRUNED`` for a run the verdict ended, ``FAIL`` with the reason for a run that failed (a run
   the runner restarts by itself, after the service or its worker died, is followed on);
2. **fails the trials of services whose lease expired** (``sweep_host_grace_s``), so that they
   are replaced;
3. **asks for new trials** while the sweep wants more, fewer than ``max_concurrent`` run, the
   time limit has not passed and this service has a free device slot: under the sweep's ask
   lock it asks the study for a trial, makes its run (an ordinary run: the sweep's base with the
   trial's values, named ``<sweep>-<number>``, tagged ``sweep:<sweep>``, restarted by itself up
   to :data:`TRIAL_RESTARTS` times) and queues it; a trial whose values make no valid run fails
   with the reason and is replaced;
4. **ends the sweep** once nothing runs and it has its trials (``succeeded``, or ``failed`` if
   none completed), was stopped (``stopped``), ran out of time, or failed as many trials as it
   wanted (``failed``); the plot is drawn again whenever a trial ends.

A stop (``POST /v1/sweeps/{name}/stop``, from any service) is a user attribute of the study:
each service cancels its own running trials (their runs save a checkpoint), which fail as
``stopped``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from datavolume.files import read_json
from jobkit.errors import JobkitError
from jobkit.models import JobPublic, JobState
from jobkit.runner import RESTARTABLE, JobRunner, restarts_allowed
from jobkit.store import JobStore, new_job_id
from trainer_service.jobs import TRAINING_KIND
from trainer_service.runs import trial as trial_files
from trainer_service.runs.config import TrainConfig
from trainer_service.runs.history import read_history
from trainer_service.settings import Settings
from trainer_service.sweeps import study as studies
from trainer_service.sweeps.plot import draw
from trainer_service.sweeps.spec import SweepRequest, run_errors

logger = logging.getLogger("trainer_service.sweeps")

#: How often a trial's run is restarted by itself (its worker or the service died) at least.
TRIAL_RESTARTS = 2
#: Why a trial ended by a stop request failed.
STOPPED = "stopped"
#: ``result.stopped_early`` of a run its sweep pruned.
PRUNED = "pruned"


def sweep_names(settings: Settings) -> list[str]:
    """The sweeps on the volume (those whose ``sweep.json`` was written), by name."""
    root = settings.volume.sweeps
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "sweep.json").is_file())


def read_spec(settings: Settings, name: str) -> SweepRequest:
    return SweepRequest.model_validate(read_json(settings.volume.sweep(name).spec))


class Studies:
    """Each sweep's storage, made once and shared by the threads (Optuna's storages lock)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._storages: dict[str, optuna.storages.BaseStorage] = {}
        self._lock = threading.Lock()

    def storage(self, name: str) -> optuna.storages.BaseStorage:
        with self._lock:
            if name not in self._storages:
                folder = self.settings.volume.sweep(name)
                url = self.settings.sweep_storage
                self._storages[name] = studies.storage_for(
                    folder, url.get_secret_value() if url else None
                )
            return self._storages[name]

    def load(self, spec: SweepRequest, asking: int | None = None) -> optuna.Study:
        return studies.load(spec, self.storage(spec.name), asking)


class SweepController:
    """Runs this service's share of every sweep on the volume (see the module docstring)."""

    def __init__(self, settings: Settings, store: JobStore, runner: JobRunner) -> None:
        self.settings, self.store, self.runner = settings, store, runner
        self.root = settings.volume
        self.studies = Studies(settings)
        self.instance = studies.instance_id(settings.state_folder)
        self._ended: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sweeps", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wake(self) -> None:
        """Look at the sweeps now (a sweep was made or stopped)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:
                logger.exception("sweep pass failed")
            self._wake.wait(self.settings.sweep_poll_s)

    def tick(self) -> None:
        """One pass over every sweep that has not ended."""
        studies.renew_lease(self.root.sweep_hosts, self.instance)
        for name in sweep_names(self.settings):
            if name in self._ended or self._stop.is_set():
                continue
            try:
                self.tend(read_spec(self.settings, name))
            except Exception:
                logger.exception("sweep %s: this pass failed", name)

    # -- one sweep -------------------------------------------------------------------------

    def tend(self, spec: SweepRequest) -> None:
        study = self.studies.load(spec)
        state = study.user_attrs.get(studies.STATE)
        if state not in ("running", "stopping"):
            self._ended.add(spec.name)
            return
        stopping = bool(study.user_attrs.get(studies.STOP_REQUESTED))
        for trial in study.get_trials(deepcopy=False, states=studies.ACTIVE):
            host = trial.user_attrs.get(studies.HOST)
            if host == self.instance:
                self.follow(spec, study, trial, stopping)
            elif host and studies.lease_expired(
                self.root.sweep_hosts, host, self.settings.sweep_host_grace_s
            ):
                self.fail(spec, study, trial, f"its trainer service {host} stopped answering")
        if not stopping:
            self.ask(spec)
        self.end_if_done(spec, self.studies.load(spec))

    def follow(self, spec: SweepRequest, study: optuna.Study, trial: FrozenTrial, stopping: bool):
        """Report a trial's new epochs, answer its worker's wait, tell its end."""
        run_id = trial.user_attrs.get(studies.RUN_ID)
        job = self.store.get(run_id) if run_id else None
        if job is None:  # asked, but the service stopped before its run was queued
            self.fail(spec, study, trial, "its run was never queued")
            return
        if stopping and not job.state.terminal:
            with contextlib.suppress(JobkitError):
                self.runner.cancel(job.id)
        run = self.root.run(job.id)
        values = self.report(spec, study, trial, run)
        if not job.state.terminal or self.restarts(job, stopping):
            return
        if job.state == JobState.SUCCEEDED and (job.result or {}).get("stopped_early") == PRUNED:
            self.tell(spec, study, trial, state=TrialState.PRUNED)
        elif job.state == JobState.SUCCEEDED and values:
            pick = max if spec.direction == "maximize" else min
            self.tell(spec, study, trial, values=pick(values.values()))
        elif job.state == JobState.SUCCEEDED:
            self.fail(spec, study, trial, f"its run {job.id} recorded no {spec.history_key}")
        elif stopping and job.state == JobState.CANCELLED:
            self.fail(spec, study, trial, STOPPED)
        else:
            reason = job.error.message if job.error else ""
            self.fail(spec, study, trial, f"its run {job.id} ended {job.state}: {reason}")

    @staticmethod
    def restarts(job: JobPublic, stopping: bool) -> bool:
        """Whether the runner puts the job back in the queue by itself (it is not over)."""
        return (
            not stopping
            and job.state in (JobState.FAILED, JobState.INTERRUPTED)
            and job.error is not None
            and job.error.type in RESTARTABLE
            and job.restarts < restarts_allowed(job)
        )

    def report(self, spec, study: optuna.Study, trial: FrozenTrial, run) -> dict[int, float]:
        """Report the run's epochs Optuna has not seen; give the verdict on the epoch its worker
        waits on. Returns every epoch's value."""
        key = spec.history_key
        values = {int(r["epoch"]): float(r[key]) for r in read_history(run)
                  if r.get(key) is not None}  # fmt: skip
        waiting = trial_files.read_report(run)
        if waiting is not None:
            values[waiting[0]] = waiting[1]
        # A Trial object over the running trial (FrozenTrial keeps its storage id).
        live = optuna.Trial(study, trial._trial_id)
        for epoch in sorted(set(values) - set(trial.intermediate_values)):
            live.report(values[epoch], epoch)
        verdict = trial_files.read_verdict(run)
        if waiting is not None and (verdict is None or verdict[0] != waiting[0]):
            prune = spec.pruner != "none" and bool(live.should_prune())
            trial_files.give_verdict(run, waiting[0], prune)
            if prune:
                logger.info("sweep %s: trial %d pruned after epoch %d (%s %.4g)", spec.name,
                            trial.number, waiting[0], key, waiting[1])  # fmt: skip
        return values

    def tell(self, spec: SweepRequest, study: optuna.Study, trial: FrozenTrial, **outcome):
        study.tell(trial.number, skip_if_finished=True, **outcome)
        logger.info("sweep %s: trial %d %s", spec.name, trial.number, outcome)
        self.draw(spec)

    def fail(self, spec: SweepRequest, study: optuna.Study, trial: FrozenTrial, reason: str):
        optuna.Trial(study, trial._trial_id).set_user_attr(studies.FAILURE, reason)
        self.tell(spec, study, trial, state=TrialState.FAIL)

    def draw(self, spec: SweepRequest) -> None:
        try:
            draw(self.studies.load(spec), spec, self.root.sweep(spec.name).plot)
        except Exception:  # a plot is never worth a sweep
            logger.exception("sweep %s: the plot failed", spec.name)

    # -- new trials ------------------------------------------------------------------------

    def ask(self, spec: SweepRequest) -> None:
        """Start as many trials as the sweep and this service's free slots allow."""
        base = TrainConfig.model_validate({**spec.base, "dataset": spec.dataset})
        spare = self.runner.spare_slots()
        if spare < base.devices:
            return
        with studies.ask_lock(self.root.sweep(spec.name)):
            study = self.studies.load(spec)
            if study.user_attrs.get(studies.STOP_REQUESTED) or self.timed_out(spec, study):
                return
            counts = count(study.get_trials(deepcopy=False))
            wanted = spec.trials_wanted()
            while (
                used(spec, counts) + counts["active"] < wanted
                and counts["active"] < spec.max_concurrent
                and counts["failed"] < wanted
                and spare >= base.devices
            ):
                study = self.studies.load(spec, asking=counts["all"])
                started = self.start_trial(spec, study)
                counts["all"] += 1
                if started:
                    counts["active"] += 1
                    spare -= base.devices
                else:
                    counts["failed"] += 1

    def start_trial(self, spec: SweepRequest, study: optuna.Study) -> bool:
        """Ask for a trial and queue its run; False if it failed at once (its reason kept)."""
        trial = study.ask(studies.distributions(spec))
        trial.set_user_attr(studies.HOST, self.instance)
        body = spec.run_body(trial.params, trial.number)
        body["max_restarts"] = max(int(body.get("max_restarts", 0)), TRIAL_RESTARTS)
        errors = run_errors(body, self.root)
        if errors:
            reason = "; ".join(f"{field}: {message}" for field, message in errors)
            self._fail_new(spec, study, trial, f"its values make no run: {reason}")
            return False
        run_id = new_job_id()
        trial.set_user_attr(studies.RUN_ID, run_id)
        run = self.root.run(run_id)
        run.root.mkdir(parents=True, exist_ok=True)
        link = trial_files.TrialLink(spec.name, trial.number, spec.history_key,
                                     self.settings.sweep_verdict_wait_s)  # fmt: skip
        trial_files.link(run, link)
        config = TrainConfig.model_validate(body)
        try:
            self.runner.admit()
            self.store.create(TRAINING_KIND, config.model_dump(mode="json"), job_id=run_id)
        except JobkitError as exc:  # the queue is full, the volume cannot take it
            self._fail_new(spec, study, trial, f"its run could not be queued: {exc}")
            return False
        self.runner.wake()
        logger.info("sweep %s: trial %d is run %s: %s", spec.name, trial.number, run_id,
                    trial.params)  # fmt: skip
        return True

    def _fail_new(self, spec: SweepRequest, study: optuna.Study, trial, reason: str) -> None:
        trial.set_user_attr(studies.FAILURE, reason)
        self.studies.load(spec).tell(trial.number, state=TrialState.FAIL)  # not the asking one
        logger.warning("sweep %s: trial %d failed: %s", spec.name, trial.number, reason)

    @staticmethod
    def timed_out(spec: SweepRequest, study: optuna.Study) -> bool:
        created = study.user_attrs.get(studies.CREATED_AT)
        return bool(spec.max_time_min and created
                    and studies.age_s(created) > spec.max_time_min * 60)  # fmt: skip

    # -- the end ---------------------------------------------------------------------------

    def end_if_done(self, spec: SweepRequest, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = count(trials)
        if counts["active"]:
            return
        wanted = spec.trials_wanted()
        ended = None
        if study.user_attrs.get(studies.STOP_REQUESTED):
            ended = ("stopped", "stopped on request")
        elif used(spec, counts) >= wanted:
            ended = self._outcome(counts, f"{counts['finished']} trials finished")
        elif counts["failed"] >= wanted:
            last = next((t.user_attrs.get(studies.FAILURE) for t in reversed(trials)
                         if t.state == TrialState.FAIL), "")  # fmt: skip
            ended = ("failed", f"{counts['failed']} trials failed; the last: {last}")
        elif self.timed_out(spec, study):
            ended = self._outcome(counts, f"the time limit ({spec.max_time_min:g} min) passed")
        if ended is None:
            return
        study.set_user_attr(studies.STATE, ended[0])
        study.set_user_attr(studies.REASON, ended[1])
        study.set_user_attr(studies.ENDED_AT, studies.now())
        self._ended.add(spec.name)
        logger.info("sweep %s %s: %s", spec.name, *ended)
        self.draw(spec)

    @staticmethod
    def _outcome(counts: dict[str, int], why: str) -> tuple[str, str]:
        if counts["complete"]:
            return "succeeded", why
        return "failed", f"{why}, none completed"


def used(spec: SweepRequest, counts: dict[str, int]) -> int:
    """The trials that count towards ``max_trials``: the finished ones; in a grid the failed
    ones too (each combination is tried once: values that make no run would fail again)."""
    return counts["finished"] + (counts["failed"] if spec.sampler == "grid" else 0)


def count(trials: list[FrozenTrial]) -> dict[str, Any]:
    """How many trials are finished (completed or pruned), complete, active (running or
    waiting), failed (stopped ones aside), and in all."""
    states = [t.state for t in trials]
    stopped = sum(1 for t in trials if t.user_attrs.get(studies.FAILURE) == STOPPED)
    return {
        "finished": sum(s in studies.FINISHED for s in states),
        "complete": states.count(TrialState.COMPLETE),
        "active": sum(s in studies.ACTIVE for s in states),
        "failed": states.count(TrialState.FAIL) - stopped,
        "all": len(states),
    }
