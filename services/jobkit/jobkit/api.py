"""Helpers that keep the services' routes thin: job responses, the shared job routes, health.

app.include_router(health_router(ready_check))
app.include_router(
    make_jobs_router("jobs", get_store, get_runner),
    dependencies=[Depends(require_token)],
)

@router.post("/v1/datasets", status_code=202)
def prepare(body: PrepareRequest, idempotency_key: IdempotencyKey = None, ...):
    job = create_job(store, runner, "prepare", body, idempotency_key, f"dataset:{body.name}")
    return accepted(job, f"/v1/jobs/{job.id}")
"""

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from jobkit.errors import JobkitError
from jobkit.models import JobList, JobPublic, JobState
from jobkit.problems import PROBLEM_JSON, ProblemError, problem_for, problem_type
from jobkit.runner import LOG_TAIL_BYTES, JobRunner
from jobkit.store import JobStore

RETRY_AFTER_S = 2
MAX_LOG_TAIL_BYTES = 16 * 1024 * 1024

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retrying with the same key and body returns the same job.",
    ),
]
"""Route parameter type for the optional ``Idempotency-Key`` request header."""

_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}


def job_response(
    job: JobPublic,
    request: Request | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The job as JSON; adds ``Retry-After: 2`` while it is queued or running.

    ``request`` is optional and unused (routes may pass it).
    """
    all_headers = dict(headers or {})
    if not job.state.terminal:
        all_headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse(job.model_dump(mode="json"), status_code=status_code, headers=all_headers)


def accepted(job: JobPublic, location: str) -> JSONResponse:
    """202 Accepted with ``Location: <location>`` (where to poll) and the job as body."""
    return job_response(job, status_code=202, headers={"Location": location})


def create_job(
    store: JobStore,
    runner: JobRunner | None,
    kind: str,
    request_model: BaseModel | Mapping[str, Any],
    idempotency_key: str | None = None,
    resource_key: str | None = None,
) -> JobPublic:
    """Queue a job for a validated request and wake the runner.

    The request is stored as ``model_dump(mode="json")``. Returns the existing job for an
    idempotent retry. Raises ``ProblemError`` 422 (key reused with another body) or 409
    (``resource_key`` busy; the problem's ``job_id`` names the job holding it).
    """
    if isinstance(request_model, BaseModel):
        payload = request_model.model_dump(mode="json")
    else:
        payload = dict(request_model)
    try:
        job = store.create(
            kind, payload, idempotency_key=idempotency_key, resource_key=resource_key
        )
    except JobkitError as exc:
        raise problem_for(exc) from exc
    if runner is not None:
        runner.wake()
    return job


def make_jobs_router(
    resource: str,
    get_store: Callable[..., JobStore],
    get_runner: Callable[..., JobRunner],
    *,
    tags: list[str] | None = None,
) -> APIRouter:
    """Routes to list, read, cancel and tail the logs of jobs under ``/v1/{resource}``.

    ``get_store`` / ``get_runner`` are FastAPI dependencies returning the service's store and
    runner. Attach auth with ``app.include_router(router, dependencies=[...])``.

    - ``GET  /v1/{resource}`` ``?kind=&state=&limit=100``: newest first (``JobList``)
    - ``GET  /v1/{resource}/{job_id}``: the job (404 problem if unknown)
    - ``POST /v1/{resource}/{job_id}/cancel``: 202 while it is stopping, 200 once cancelled,
      409 if it had already finished
    - ``GET  /v1/{resource}/{job_id}/logs`` ``?tail_bytes=65536``: text/plain log tail
    """
    router = APIRouter(prefix=f"/v1/{resource}", tags=list(tags or [resource]))
    Store = Annotated[JobStore, Depends(get_store)]
    Runner = Annotated[JobRunner, Depends(get_runner)]
    JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]
    errors: dict[int | str, dict[str, Any]] = {404: _PROBLEM, 409: _PROBLEM}

    def _require(store: JobStore, job_id: str) -> JobPublic:
        job = store.get(job_id)
        if job is None:
            raise ProblemError(
                404,
                "Job not found",
                f"No {resource[:-1] if resource.endswith('s') else resource} with id {job_id!r}",
                type_=problem_type("job-not-found"),
                job_id=job_id,
            )
        return job

    @router.get("", response_model=JobList, summary=f"List {resource}, newest first")
    def list_jobs(
        store: Store,
        kind: str | None = None,
        state: JobState | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JobList:
        return JobList(items=store.list(kind=kind, limit=limit, state=state))

    @router.get(
        "/{job_id}", response_model=JobPublic, responses=errors, summary="Get one job (poll)"
    )
    def get_job(store: Store, job_id: JobId) -> JSONResponse:
        return job_response(_require(store, job_id))

    @router.post(
        "/{job_id}/cancel",
        response_model=JobPublic,
        responses={**errors, 202: {"description": "Cancellation under way"}},
        summary="Cancel a queued or running job",
    )
    def cancel_job(store: Store, runner: Runner, job_id: JobId) -> JSONResponse:
        _require(store, job_id)
        try:
            job = runner.cancel(job_id)
        except JobkitError as exc:
            raise problem_for(exc) from exc
        return job_response(job, status_code=200 if job.state.terminal else 202)

    @router.get(
        "/{job_id}/logs",
        response_class=PlainTextResponse,
        responses=errors,
        summary="Tail of the job's log",
    )
    def job_logs(
        store: Store,
        runner: Runner,
        job_id: JobId,
        tail_bytes: Annotated[int, Query(ge=1, le=MAX_LOG_TAIL_BYTES)] = LOG_TAIL_BYTES,
    ) -> PlainTextResponse:
        _require(store, job_id)
        return PlainTextResponse(runner.log_tail(job_id, tail_bytes))

    return router


def health_router(ready_check: Callable[[], tuple[bool, str]]) -> APIRouter:
    """``GET /healthz`` (always 200 ``{"status": "ok"}``) and ``GET /readyz``.

    ``ready_check()`` returns ``(ready, reason)``: 200 ``{"status": "ready", "detail": reason}``
    or a 503 problem with the reason as detail (also when the check raises).
    """
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness", responses={503: _PROBLEM})
    def readyz() -> dict[str, str]:
        try:
            ready, reason = ready_check()
        except Exception as exc:
            ready, reason = False, f"readiness check failed: {type(exc).__name__}: {exc}"
        if not ready:
            raise ProblemError(
                503,
                "Not ready",
                reason,
                type_=problem_type("not-ready"),
                headers={"Retry-After": "5"},
            )
        return {"status": "ready", "detail": reason}

    return router
