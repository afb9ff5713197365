"""``/v1/runs``: start, list, read, cancel and resume training runs; history, logs, checkpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from jobkit.api import IdempotencyKey, accepted, create_job, job_response
from jobkit.errors import JobkitError
from jobkit.models import JobPublic, JobState
from jobkit.problems import PROBLEM_JSON, ProblemError, invalid_field, problem_for, problem_type
from jobkit.runner import LOG_TAIL_BYTES
from trainer_service import runs
from trainer_service.api.deps import RunnerDep, SettingsDep, StoreDep
from trainer_service.jobs import JOB_KIND
from trainer_service.models import (
    CheckpointInfo,
    ResumeRequest,
    RunList,
    RunPublic,
)
from trainer_service.training import checkpoints
from trainer_service.training.config import TrainConfig
from trainer_service.training.files import RunPaths
from trainer_service.training.history import COLUMNS, read_history

PREFIX = "/v1/runs"
MAX_LOG_TAIL_BYTES = 16 * 1024 * 1024
_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}
_ERRORS: dict[int | str, dict] = {404: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM}

router = APIRouter(prefix=PREFIX, tags=["runs"])
RunId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]


def _require(store: StoreDep, run_id: str) -> JobPublic:
    job = store.get(run_id)
    if job is None:
        raise ProblemError(
            404,
            "Run not found",
            f"No run with id {run_id!r}",
            type_=problem_type("run-not-found"),
            run_id=run_id,
        )
    return job


def _run_response(job: JobPublic, settings: SettingsDep, status_code: int = 200, headers=None):
    return job_response(
        runs.run_public(job, settings.data_root), status_code=status_code, headers=headers
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
        runs.check_request(settings.data_root, config)
    except runs.InvalidRunRequest as exc:
        raise invalid_field(exc.field, exc.message, exc.slug) from exc
    job = create_job(store, runner, JOB_KIND, config, idempotency_key)
    return _run_response(job, settings, 202, {"Location": f"{PREFIX}/{job.id}"})


@router.get("", response_model=RunList, summary="List runs, newest first")
def list_runs(
    store: StoreDep,
    settings: SettingsDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RunList:
    jobs = store.list(kind=JOB_KIND, limit=limit, state=state)
    return RunList(items=[runs.run_public(job, settings.data_root) for job in jobs])


@router.get("/{run_id}", response_model=RunPublic, responses=_ERRORS, summary="Get one run (poll)")
def get_run(run_id: RunId, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    return _run_response(_require(store, run_id), settings)


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
    _require(store, run_id)
    paths = RunPaths.for_run(settings.data_root, run_id)
    if format == "csv":
        text = paths.history_csv.read_text() if paths.history_csv.is_file() else ""
        return PlainTextResponse(text or ",".join(COLUMNS) + "\n", media_type="text/csv")
    return read_history(paths)


@router.get(
    "/{run_id}/checkpoints",
    response_model=list[CheckpointInfo],
    responses=_ERRORS,
    summary="Checkpoints kept (last N epochs, best, partial)",
)
def get_checkpoints(run_id: RunId, store: StoreDep, settings: SettingsDep) -> list[CheckpointInfo]:
    _require(store, run_id)
    paths = RunPaths.for_run(settings.data_root, run_id)
    return [CheckpointInfo(**c) for c in checkpoints.list_checkpoints(paths)]


@router.get(
    "/{run_id}/logs",
    response_class=PlainTextResponse,
    responses=_ERRORS,
    summary="Tail of the run's log (live while it trains)",
)
def get_logs(
    run_id: RunId,
    store: StoreDep,
    runner: RunnerDep,
    tail_bytes: Annotated[int, Query(ge=1, le=MAX_LOG_TAIL_BYTES)] = LOG_TAIL_BYTES,
) -> PlainTextResponse:
    _require(store, run_id)
    return PlainTextResponse(runner.log_tail(run_id, tail_bytes))


@router.post(
    "/{run_id}/cancel",
    response_model=RunPublic,
    responses={**_ERRORS, 202: {"description": "Stopping: the worker saves a checkpoint"}},
    summary="Cancel a run (SIGTERM: checkpoint, then stop; SIGKILL after the grace period)",
)
def cancel_run(
    run_id: RunId, store: StoreDep, runner: RunnerDep, settings: SettingsDep
) -> JSONResponse:
    _require(store, run_id)
    try:
        job = runner.cancel(run_id)
    except JobkitError as exc:
        raise problem_for(exc) from exc
    return _run_response(job, settings, 200 if job.state.terminal else 202)


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
    _require(store, run_id)
    try:
        job = runs.resume(
            store, runner, settings.data_root, run_id, body.checkpoint if body else None
        )
    except runs.InvalidRunRequest as exc:
        raise invalid_field(exc.field, exc.message, exc.slug) from exc
    except JobkitError as exc:
        raise problem_for(exc) from exc
    return accepted(runs.run_public(job, settings.data_root), f"{PREFIX}/{run_id}")
