"""``/v1/runs``: start and resume training runs, their history and checkpoints; jobkit's router
lists, reads, cancels and tails them, presented as runs (with their training status)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path
from fastapi.responses import JSONResponse, PlainTextResponse

from datavolume.files import read_json
from jobkit.api import IdempotencyKey, accepted, create_job, make_jobs_router, require_job
from jobkit.models import JobPublic
from jobkit.problems import PROBLEM_JSON, ProblemError, invalid_field, problem_type
from jobkit.service import RunnerDep, SettingsDep, StoreDep, get_runner, get_store
from trainer_service.api.present import run_public
from trainer_service.api.schemas import CheckpointInfo, ResumeRequest, RunList, RunPublic
from trainer_service.jobs import TRAINING_KIND
from trainer_service.runs import checkpoints, operations
from trainer_service.runs.config import TrainConfig
from trainer_service.runs.history import COLUMNS, read_history

RESOURCE = "runs"
PREFIX = f"/v1/{RESOURCE}"
_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}
_ERRORS: dict[int | str, dict] = {404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM}

router = APIRouter(prefix=PREFIX, tags=[RESOURCE])
RunId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]


def run_presenter(settings: SettingsDep) -> Callable[[JobPublic], RunPublic]:
    """A run as the routes show it: the job, its training status and its checkpoints."""
    return lambda job: run_public(job, settings.volume)


jobs_router = make_jobs_router(
    RESOURCE,
    get_store,
    get_runner,
    presenter=run_presenter,
    item_model=RunPublic,
    list_model=RunList,
)


@router.post(
    "",
    status_code=202,
    response_model=RunPublic,
    responses=_ERRORS,
    summary="Start a training run (queued; one trains at a time)",
)
def start_run(
    config: TrainConfig,
    store: StoreDep,
    runner: RunnerDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    try:
        operations.check_request(settings.volume, config)
        operations.check_devices(config, settings.device_slots())
    except operations.InvalidRunRequest as exc:
        raise invalid_field(exc.field, exc.message, exc.slug) from exc
    job = create_job(store, runner, TRAINING_KIND, config, idempotency_key)
    return accepted(run_public(job, settings.volume), f"{PREFIX}/{job.id}")


@router.get(
    "/{run_id}/history",
    response_model=list[dict[str, Any]],
    responses={**_ERRORS, 200: {"content": {"text/csv": {}}}},
    summary="Per-epoch history: one row per completed epoch (JSON, or CSV with ?format=csv)",
)
def get_history(
    run_id: RunId,
    store: StoreDep,
    settings: SettingsDep,
    format: Literal["json", "csv"] = "json",
):
    require_job(store, run_id, "run")
    run = settings.volume.run(run_id)
    if format == "csv":
        text = run.history_csv.read_text() if run.history_csv.is_file() else ""
        return PlainTextResponse(text or ",".join(COLUMNS) + "\n", media_type="text/csv")
    return read_history(run)


@router.get(
    "/{run_id}/checkpoints",
    response_model=list[CheckpointInfo],
    responses=_ERRORS,
    summary="Checkpoints kept (last N epochs, best, partial)",
)
def get_checkpoints(run_id: RunId, store: StoreDep, settings: SettingsDep) -> list[CheckpointInfo]:
    require_job(store, run_id, "run")
    run = settings.volume.run(run_id)
    return [CheckpointInfo(**c) for c in checkpoints.list_checkpoints(run)]


@router.get(
    "/{run_id}/evaluation",
    response_model=dict[str, Any],
    responses={**_ERRORS, 404: {**_PROBLEM, "description": "No such run, or not evaluated yet"}},
    summary="The val scores of the checkpoint the predictions used, per class too",
)
def get_evaluation(run_id: RunId, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    require_job(store, run_id, "run")
    evaluation = read_json(settings.volume.run(run_id).evaluation, tolerate_corrupt=True)
    if evaluation is None:
        raise ProblemError(
            404,
            "Not evaluated yet",
            f"run {run_id} has no evaluation yet: a run writes it when it ends",
            type_=problem_type("no-evaluation"),
        )
    return evaluation


@router.post(
    "/{run_id}/resume",
    status_code=202,
    response_model=RunPublic,
    responses=_ERRORS,
    summary="Resume an interrupted, cancelled or failed run from its checkpoint",
)
def resume_run(
    run_id: RunId,
    store: StoreDep,
    runner: RunnerDep,
    settings: SettingsDep,
    body: Annotated[ResumeRequest | None, Body()] = None,
) -> JSONResponse:
    require_job(store, run_id, "run")
    try:
        job = operations.resume_run(
            store, runner, settings.volume, run_id, body.checkpoint if body else None
        )
    except operations.InvalidRunRequest as exc:
        raise invalid_field(exc.field, exc.message, exc.slug) from exc
    return accepted(run_public(job, settings.volume), f"{PREFIX}/{run_id}")
