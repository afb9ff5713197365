"""Helpers that keep the services' routes thin: job responses, the shared job routes, health.

app.include_router(health_router(ready_check))
app.include_router(
    make_jobs_router("jobs", get_store, get_runner),
    dependencies=[Depends(require_token)],
)

@router.post("/v1/jobs", status_code=202)
def start_prepare(body: PrepareRequest, idempotency_key: IdempotencyKey = None, ...):
    job = create_job(store, runner, "prepare", body, idempotency_key, f"dataset:{body.name}")
    return accepted(job, f"/v1/jobs/{job.id}")
"""

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from jobkit.models import JobList, JobPublic, JobState
from jobkit.problems import PROBLEM_JSON, ProblemError, problem_type
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
    idempotent retry. The store's ``IdempotencyConflict`` (key reused with another body) and
    ``ResourceBusy`` (``resource_key`` held by a queued or running job), and the runner's
    ``QueueFull`` and ``VolumeNotWritable`` (``JobRunner.admit``) propagate; the installed problem
    handlers answer them with a 422, 409, 429 and 507.
    """
    if isinstance(request_model, BaseModel):
        payload = request_model.model_dump(mode="json")
    else:
        payload = dict(request_model)
    if runner is not None:
        runner.admit()
    job = store.create(kind, payload, idempotency_key=idempotency_key, resource_key=resource_key)
    if runner is not None:
        runner.wake()
    return job


def require_job(store: JobStore, job_id: str, noun: str = "job") -> JobPublic:
    """The job, or a 404 problem "<Noun> not found" (type ``<noun>-not-found``, ``<noun>_id``)."""
    job = store.get(job_id)
    if job is None:
        raise ProblemError(
            404,
            f"{noun.capitalize()} not found",
            f"No {noun} with id {job_id!r}",
            type_=problem_type(f"{noun}-not-found"),
            **{f"{noun}_id": job_id},
        )
    return job


def _as_is() -> Callable[[JobPublic], BaseModel]:
    return lambda job: job


def make_jobs_router(
    resource: str,
    get_store: Callable[..., JobStore],
    get_runner: Callable[..., JobRunner],
    *,
    presenter: Callable[..., Callable[[JobPublic], BaseModel]] = _as_is,
    item_model: type[BaseModel] = JobPublic,
    list_model: type[BaseModel] = JobList,
    tags: list[str] | None = None,
) -> APIRouter:
    """Routes to list, read, cancel and tail the logs of jobs under ``/v1/{resource}``.

    ``get_store`` / ``get_runner`` are FastAPI dependencies returning the service's store and
    runner. ``presenter`` is a dependency too: it returns the function that turns a job into
    what the routes answer (an ``item_model``; lists are ``list_model(items=[...])``), so a
    service can show its jobs its own way (the trainer's runs carry their training status).
    The noun in paths, problems and summaries is ``resource`` without its plural "s". Attach
    auth with ``app.include_router(router, dependencies=[...])``.

    - ``GET  /v1/{resource}`` ``?state=&tag=&limit=100``: newest first (``tag``: the request's
      ``tags`` list holds it)
    - ``GET  /v1/{resource}/{<noun>_id}``: the job (404 problem if unknown)
    - ``POST /v1/{resource}/{<noun>_id}/cancel``: 202 while it is stopping, 200 once cancelled,
      409 if it had already finished
    Each shows the job through ``JobRunner.present``: a job whose worker has ended shows that
    end even while the store cannot record it yet (``unrecorded_end``).
    - ``GET  /v1/{resource}/{<noun>_id}/logs`` ``?tail_bytes=65536``: text/plain log tail
    """
    noun = resource.removesuffix("s")
    key = f"{noun}_id"
    router = APIRouter(prefix=f"/v1/{resource}", tags=list(tags or [resource]))
    Store = Annotated[JobStore, Depends(get_store)]
    Runner = Annotated[JobRunner, Depends(get_runner)]
    Present = Annotated[Callable[[JobPublic], BaseModel], Depends(presenter)]
    JobId = Annotated[str, Path(alias=key, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]
    errors: dict[int | str, dict[str, Any]] = {404: _PROBLEM, 409: _PROBLEM}

    @router.get("", response_model=list_model, summary=f"List {resource}, newest first")
    def list_jobs(
        store: Store,
        runner: Runner,
        present: Present,
        state: JobState | None = None,
        tag: Annotated[
            str | None, Query(max_length=64, description="Only jobs whose request has this tag.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> BaseModel:
        if runner is None:  # a router without a runner shows the store as it is
            jobs = store.list(limit=limit, state=state, tag=tag)
        else:
            jobs = runner.list_jobs(limit=limit, state=state, tag=tag)
        return list_model(items=[present(job) for job in jobs])

    @router.get(
        f"/{{{key}}}", response_model=item_model, responses=errors, summary=f"Get one {noun} (poll)"
    )
    def get_job(store: Store, runner: Runner, present: Present, job_id: JobId) -> JSONResponse:
        job = require_job(store, job_id, noun)
        return job_response(present(job if runner is None else runner.present(job)))

    @router.post(
        f"/{{{key}}}/cancel",
        response_model=item_model,
        responses={**errors, 202: {"description": "Cancellation under way"}},
        summary=f"Cancel a queued or running {noun} (SIGTERM; SIGKILL after the grace period)",
    )
    def cancel_job(store: Store, runner: Runner, present: Present, job_id: JobId) -> JSONResponse:
        require_job(store, job_id, noun)
        job = runner.cancel(job_id)
        return job_response(present(job), status_code=200 if job.state.terminal else 202)

    @router.get(
        f"/{{{key}}}/logs",
        response_class=PlainTextResponse,
        responses=errors,
        summary=f"Tail of the {noun}'s log (live while it runs)",
    )
    def job_logs(
        store: Store,
        runner: Runner,
        job_id: JobId,
        tail_bytes: Annotated[int, Query(ge=1, le=MAX_LOG_TAIL_BYTES)] = LOG_TAIL_BYTES,
    ) -> PlainTextResponse:
        require_job(store, job_id, noun)
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
