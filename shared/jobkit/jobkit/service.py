"""The FastAPI application of a job service, built the same way for every service.

``create_service_app`` wires what both services share: settings read at start-up (not import),
the job store and runner opened in the lifespan (orphaned jobs marked interrupted first) and
stopped on shutdown off the event loop, RFC 9457 problem handlers, ``/healthz`` and ``/readyz``,
and the bearer-token check on every other router. The ``*Dep`` aliases give routes what they
need by name; tests can override the getters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi

from jobkit.api import health_router
from jobkit.auth import bearer_token_dependency
from jobkit.problems import (
    PROBLEM_JSON,
    Problem,
    ProblemError,
    install_problem_handlers,
    problem_response_at,
    problem_type,
)
from jobkit.runner import JobRunner
from jobkit.settings import ServiceSettings
from jobkit.store import JobStore


def get_app_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


StoreDep = Annotated[JobStore, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
#: The service's own settings (its ``ServiceSettings`` subclass, read at start-up).
SettingsDep = Annotated[ServiceSettings, Depends(get_app_settings)]


def start_runner(app: FastAPI, settings: ServiceSettings, kind: str, target: str) -> None:
    settings.jobs_db.parent.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.jobs_db)
    runner = JobRunner(
        store,
        targets={kind: target},
        log_dir=settings.logs_dir,
        max_concurrent=settings.concurrent_jobs(),
        cancel_grace_s=settings.cancel_grace_s,
        env=settings.worker_env(),
        nice=settings.worker_nice,
        max_queued=settings.max_queued_jobs,
        volume=settings.volume,
        min_free_bytes=settings.min_free_bytes,
        slots=settings.device_slots(),
        slot_env=settings.slot_env,
    )
    app.state.store, app.state.runner = store, runner
    runner.start()  # marks orphaned running jobs interrupted first


def readiness(app: FastAPI, noun: str) -> Callable[[], tuple[bool, str]]:
    """Ready when the runner is started, every job that ended has its end recorded
    (``JobRunner.unrecorded_problem``), and the volume takes writes, with the free space a job
    needs (``JobRunner.volume_problem``). (``/readyz`` needs no token: its message names no
    server path.)"""

    def check() -> tuple[bool, str]:
        state = app.state
        if getattr(state, "store", None) is None or getattr(state, "runner", None) is None:
            return False, "the job runner is not started"
        reasons = [state.runner.unrecorded_problem(), state.runner.volume_problem()]
        reasons = [reason for reason in reasons if reason is not None]
        if reasons:
            return False, "; ".join(reasons)
        return True, f"data root writable; {state.store.count_running()} {noun}"

    return check


def create_service_app(
    *,
    settings: ServiceSettings | None,
    get_settings: Callable[[], ServiceSettings],
    title: str,
    summary: str,
    kind: str,
    target: str,
    routers: Sequence[APIRouter],
    folders: Callable[[ServiceSettings], Iterable[Path]] = lambda s: (),
    running_noun: str = "job(s) running",
    upload_routers: Sequence[APIRouter] = (),
    upload_limit: Callable[[ServiceSettings], int] | None = None,
    problems: Mapping[type[Exception], Problem] | None = None,
    beside_runner: Callable[[FastAPI], AbstractContextManager] | None = None,
) -> FastAPI:
    """A job service: ``kind`` jobs run ``target`` ("module:function") in worker processes.

    ``folders(settings)`` names the volume folders created at start-up; ``routers`` are the
    service's own routes, all behind the token check when a token is configured, and their
    bodies must be JSON of at most ``max_body_bytes``. ``upload_routers`` take other bodies
    (multipart uploads), behind the same token check, of at most ``upload_limit(settings)``.
    ``problems``: how the service's own errors are answered, beside jobkit's
    (``jobkit.problems.PROBLEMS``). ``beside_runner(app)``: what else the service runs while it
    serves (a context manager entered once the runner has started, left before it stops).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.settings is None:
            app.state.settings = get_settings()
        for folder in folders(app.state.settings):
            Path(folder).mkdir(parents=True, exist_ok=True)
        start_runner(app, app.state.settings, kind, target)
        try:
            with beside_runner(app) if beside_runner else contextlib.nullcontext():
                yield
        finally:
            # Blocks up to cancel_grace_s while workers stop: keep it off the event loop.
            await asyncio.to_thread(app.state.runner.stop)

    app = FastAPI(title=title, version="1.0.0", summary=summary, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = app.state.runner = None
    uploads = [route.path_regex for router in upload_routers for route in router.routes]

    def body_limit(path: str) -> int:
        settings = app.state.settings or get_settings()
        if upload_limit is not None and any(regex.match(path) for regex in uploads):
            return upload_limit(settings)
        return settings.max_body_bytes

    app.add_middleware(BodyLimit, limit=body_limit)
    install_problem_handlers(app, problems)
    require_token = Depends(bearer_token_dependency(lambda: app.state.settings or get_settings()))
    app.include_router(health_router(readiness(app, running_noun)))
    for router in routers:
        app.include_router(router, dependencies=[require_token, Depends(json_bodies_only)])
    for router in upload_routers:
        app.include_router(router, dependencies=[require_token])
    app.openapi = lambda: problem_openapi(app)
    return app


class BodyLimit:
    """ASGI middleware: a request body over ``limit(path)`` bytes is answered with a 413 problem
    before the application sees it (the declared length is checked first; a body sent without
    one is read up to the limit, then handed on)."""

    def __init__(self, app, limit: Callable[[str], int]) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope.get("path", ""))
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope, receive, send, limit: int) -> None:
        problem = ProblemError(
            413,
            "Content Too Large",
            f"the request body is larger than {limit:,} bytes",
            type_=problem_type("body-too-large"),
        )
        await problem_response_at(scope.get("path", ""), problem)(scope, receive, send)


#: The RFC 9457 body every error answer has (``errors`` on 422s: one entry per invalid field).
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}
_PUBLIC = {"/healthz", "/readyz"}


def problem_openapi(app: FastAPI) -> dict:
    """The OpenAPI document as the service answers: every 4xx/5xx is ``application/problem+json``
    (FastAPI would say ``application/json`` for its 422s), 401 and 503 (the job store busy) on
    every route behind the token, 400 (a body that does not parse), 413 and 422 on every route
    that takes a body, 415 on those that take JSON, and 429 (the queue full) and 507 (the volume
    full) on every POST that is not an upload."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if path not in _PUBLIC:
                responses.setdefault("401", {"description": "Missing or wrong bearer token"})
                responses.setdefault("503", {"description": "The job store is busy: retry"})
            body = operation.get("requestBody", {}).get("content", {})
            json_body = not body or "application/json" in body  # not an upload
            if body:
                form = "JSON" if json_body else "multipart form data"
                responses.setdefault("400", {"description": f"The body does not parse as {form}"})
                responses.setdefault("413", {"description": "The body is too large"})
                responses.setdefault("422", {"description": "Invalid request"})
            if body and json_body:
                responses.setdefault("415", {"description": "The body is not JSON"})
            if method == "post" and path not in _PUBLIC and json_body:  # the routes that queue
                responses.setdefault("429", {"description": "Too many jobs queued: retry later"})
                responses.setdefault("507", {"description": "The volume cannot take the job"})
            for code, response in responses.items():
                if code[0] in "45":
                    response["content"] = problem
                    response.setdefault("description", "Problem details (RFC 9457)")
    app.openapi_schema = schema
    return schema


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def json_bodies_only(request: Request) -> None:
    """A request body must be JSON: anything else is a 415 problem (not a confusing 422)."""
    if request.method in ("POST", "PUT", "PATCH") and await request.body():
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            raise ProblemError(
                415,
                "Unsupported Media Type",
                f"the body must be application/json, not {content_type or 'untyped'}",
                type_=problem_type("unsupported-media-type"),
            )
