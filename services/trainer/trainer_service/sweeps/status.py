"""What ``GET /v1/sweeps`` and ``GET /v1/sweeps/{name}`` answer, read from the study (the same on
every trainer service that shares it) and the trials' run folders on the volume (no Keras)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, Field

from trainer_service.runs.history import read_history
from trainer_service.settings import Settings
from trainer_service.sweeps import study as studies
from trainer_service.sweeps.controller import STOPPED, count
from trainer_service.sweeps.spec import SweepRequest

#: A trial's state as the API says it (Optuna's, and "stopped" for a trial a stop ended).
TRIAL_STATES = {
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
}


class TrialPublic(BaseModel):
    number: int
    state: str = Field(
        ..., description="running, waiting, complete, pruned (stopped at an epoch's end by the "
        "pruner), failed, or stopped (by a stop of the sweep)."
    )  # fmt: skip
    params: dict[str, Any] = Field(..., description="The trial's values of the space.")
    value: float | None = Field(
        None, description="Completed: the run's best metric. Pruned: the last epoch's."
    )
    run_id: str | None = Field(None, description="The run that trains it (GET /v1/runs/{id}).")
    host: str | None = Field(None, description="The trainer service that runs it.")
    epochs: int = Field(0, description="Epochs its run trained (recorded in its history).")
    failure: str | None = Field(None, description="Why it failed.")


class BestTrial(BaseModel):
    number: int
    value: float
    params: dict[str, Any]
    run_id: str | None


class SweepSummary(BaseModel):
    name: str
    state: str = Field(..., description="running, stopping, succeeded, stopped or failed.")
    reason: str | None = Field(None, description="Why it ended.")
    dataset: str
    metric: str
    direction: str
    created_at: str | None = None
    ended_at: str | None = None
    trials_wanted: int = Field(..., description="max_trials, or the grid's size if smaller.")
    counts: dict[str, int] = Field(
        ..., description="Trials: finished (completed or pruned), complete, active, failed."
    )
    best: BestTrial | None = None


class SweepPublic(SweepSummary):
    request: dict[str, Any] = Field(..., description="The sweep as it was asked.")
    epochs: int = Field(..., description="Epochs its trials trained in all.")
    trials: list[TrialPublic]
    plot: str | None = Field(None, description="Where the plot is served, once drawn.")


class SweepList(BaseModel):
    items: list[SweepSummary]


def _trial(settings: Settings, trial: FrozenTrial) -> TrialPublic:
    run_id = trial.user_attrs.get(studies.RUN_ID)
    failure = trial.user_attrs.get(studies.FAILURE)
    epochs = len(read_history(settings.volume.run(run_id))) if run_id else 0
    value = trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    state = "stopped" if failure == STOPPED else TRIAL_STATES[trial.state]
    return TrialPublic(number=trial.number, state=state, params=trial.params, value=value,
                       run_id=run_id, host=trial.user_attrs.get(studies.HOST), epochs=epochs,
                       failure=failure)  # fmt: skip


def summary(spec: SweepRequest, study: optuna.Study) -> dict[str, Any]:
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    best = None
    if any(t.state == TrialState.COMPLETE for t in trials):
        top = study.best_trial
        best = BestTrial(number=top.number, value=top.value, params=top.params,
                         run_id=top.user_attrs.get(studies.RUN_ID))  # fmt: skip
    counts = count(trials)
    counts.pop("all")
    return {
        "name": spec.name, "state": attrs.get(studies.STATE, "running"),
        "reason": attrs.get(studies.REASON), "dataset": spec.dataset, "metric": spec.metric,
        "direction": spec.direction, "created_at": attrs.get(studies.CREATED_AT),
        "ended_at": attrs.get(studies.ENDED_AT), "trials_wanted": spec.trials_wanted(),
        "counts": counts, "best": best,
    }  # fmt: skip


def sweep_summary(spec: SweepRequest, study: optuna.Study) -> SweepSummary:
    return SweepSummary(**summary(spec, study))


def sweep_public(settings: Settings, spec: SweepRequest, study: optuna.Study) -> SweepPublic:
    trials = [_trial(settings, t) for t in study.get_trials(deepcopy=False)]
    plot = settings.volume.sweep(spec.name).plot
    return SweepPublic(
        **summary(spec, study),
        request=spec.model_dump(mode="json"),
        epochs=sum(t.epochs for t in trials),
        trials=trials,
        plot=f"/v1/sweeps/{spec.name}/plot" if plot.is_file() else None,
    )
