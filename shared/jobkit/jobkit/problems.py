"""RFC 9457 problem details: every error response is ``application/problem+json``.

``install_problem_handlers(app)`` makes HTTP errors (404 unknown route, 405, ...), request
validation errors (422 with an ``errors`` list naming each field), ``ProblemError`` and the
jobkit errors (404 unknown job, 409 busy/finished, 422 idempotency conflict) answer with::

    {"type": "...", "title": "...", "status": 409, "detail": "...", "instance": "/v1/jobs", ...}
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobkit.errors import (
    IdempotencyConflict,
    JobkitError,
    JobNotFound,
    JobStateConflict,
    QueueFull,
    ResourceBusy,
    VolumeNotWritable,
    is_out_of_space,
)

logger = logging.getLogger("jobkit.problems")

PROBLEM_JSON = "application/problem+json"
QUEUE_RETRY_AFTER_S = 30
RETRY_AFTER_S = 5
PROBLEM_TYPE_PREFIX = "urn:jobkit:problem:"
_RESERVED = frozenset({"type", "title", "status", "detail", "instance"})


def problem_type(slug: str) -> str:
    """A problem type URI, e.g. ``problem_type("resource-busy")`` -> "urn:jobkit:problem:...".

    Services may use it for their own problem types too.
    """
    return PROBLEM_TYPE_PREFIX + slug


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemError(StarletteHTTPException):
    """Raise from a route to answer with a problem document.

    ``extra`` keyword arguments become extension members (e.g. ``job_id="abc"``).
    A subclass of starlette's ``HTTPException``, so without the handlers it still answers
    with the right status.
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        clash = _RESERVED & extra.keys()
        if clash:
            raise ValueError(f"extension members may not be named {sorted(clash)}")
        self.status = status
        self.title = title or _phrase(status)
        self.problem_detail = detail if detail is not None else self.title
        self.type = type_
        self.extra = extra
        super().__init__(
            status_code=status,
            detail=self.problem_detail,
            headers=dict(headers) if headers else None,
        )


def problem_response(request: Request, problem: ProblemError) -> JSONResponse:
    """``problem`` as an ``application/problem+json`` response; ``instance`` is the path."""
    return problem_response_at(request.url.path, problem)


def problem_response_at(path: str, problem: ProblemError) -> JSONResponse:
    """``problem`` as a response for ``path`` (for ASGI code that has no ``Request``)."""
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.problem_detail,
        "instance": path,
        **problem.extra,
    }
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


@dataclass(frozen=True)
class Problem:
    """How one kind of error is answered: status, title, type (``problem_type(slug)``), the
    exception's attributes copied as extension members, and a ``Retry-After`` in seconds. The
    detail is the exception's message."""

    status: int
    title: str
    slug: str
    members: tuple[str, ...] = ()
    retry_after_s: int | None = None

    def of(self, exc: Exception) -> ProblemError:
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else None
        extra = {name: getattr(exc, name) for name in self.members}
        return ProblemError(
            self.status, self.title, str(exc), type_=problem_type(self.slug), headers=headers,
            **extra,
        )  # fmt: skip


#: The errors of the job store and runner, by class; a service adds its own
#: (``install_problem_handlers(app, problems)``). An error answers as its class's nearest
#: listed ancestor.
PROBLEMS: Mapping[type[Exception], Problem] = {
    JobNotFound: Problem(404, "Job not found", "job-not-found", ("job_id",)),
    ResourceBusy: Problem(409, "Resource busy", "resource-busy", ("job_id", "resource_key")),
    JobStateConflict: Problem(409, "Job state conflict", "job-state-conflict", ("job_id", "state")),
    IdempotencyConflict: Problem(
        422, "Idempotency key reused", "idempotency-conflict", ("job_id",)
    ),
    QueueFull: Problem(
        429, "Too many queued jobs", "queue-full", ("queued", "limit"), QUEUE_RETRY_AFTER_S
    ),
    VolumeNotWritable: Problem(507, "Insufficient Storage", "volume-not-writable"),
    JobkitError: Problem(500, "Job error", "job-error"),
}


def problem_for(exc: Exception, problems: Mapping[type[Exception], Problem] = PROBLEMS):
    """The ``ProblemError`` for ``exc``: the entry of its class's nearest ancestor in
    ``problems`` (``LookupError`` if none is listed)."""
    for kind in type(exc).__mro__:
        if kind in problems:
            return problems[kind].of(exc)
    raise LookupError(f"no problem is listed for {type(exc).__name__}")


def problem_for_store_error(exc: sqlite3.Error) -> ProblemError:
    """The job store (SQLite) could not answer: full (507), or busy or broken (503, retry)."""
    if is_out_of_space(exc):
        return ProblemError(
            507,
            "Insufficient Storage",
            "the job store cannot be written: the volume is full; free space on it",
            type_=problem_type("volume-not-writable"),
        )
    return ProblemError(
        503,
        "Service Unavailable",
        f"the job store cannot answer now ({exc.__class__.__name__}); retry shortly",
        type_=problem_type("store-unavailable"),
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def field_path(loc: Sequence[str | int]) -> str:
    """``("body", "config", "batch_size")`` -> "body.config.batch_size"; list indexes as [i]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def invalid_field(field: str, message: str, slug: str = "validation-error") -> ProblemError:
    """A 422 for one field that failed a check beyond the request model (same shape as the
    request-validation problems: ``errors`` lists the field)."""
    return invalid_fields([(field, message)], slug)


def invalid_fields(
    errors: Sequence[tuple[str, str]], slug: str = "validation-error"
) -> ProblemError:
    """A 422 for fields that failed checks beyond the request model: ``errors`` lists each
    ``(field, message)``, as the request-validation problems do."""
    shown = "; ".join(f"{field}: {message}" for field, message in errors[:5])
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    count = f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}"
    return ProblemError(
        422,
        "Invalid request",
        f"{count}: {shown}{more}",
        type_=problem_type(slug),
        errors=[{"field": field, "message": message} for field, message in errors],
    )


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """FastAPI/pydantic errors as ``[{"field": "body.x", "message": "..."}]``."""
    out = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            # loc is ("body", <character position>); the position is not a field.
            position = loc[1] if len(loc) > 1 else None
            loc = loc[:1]
            reason = (err.get("ctx") or {}).get("error")
            message = "Request body is not valid JSON" + (
                f" (at character {position}: {reason})" if position is not None else ""
            )
        out.append({"field": field_path(loc), "message": message})
    return out


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ProblemError):
        return problem_response(request, exc)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if status == 404 and detail == _phrase(404):
        detail = f"No resource at {request.url.path}"
    elif status == 405 and detail == _phrase(405):
        detail = f"Method {request.method} is not allowed for {request.url.path}"
    headers = getattr(exc, "headers", None)
    return problem_response(request, ProblemError(status, detail=detail, headers=headers))


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        summary += f"; and {len(errors) - 5} more"
    count = f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}"
    problem = ProblemError(
        422,
        "Invalid request",
        f"{count}: {summary}" if errors else "Invalid request",
        type_=problem_type("validation-error"),
        errors=errors,
    )
    return problem_response(request, problem)


async def _store_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sqlite3.Error)
    logger.error("job store error on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(request, problem_for_store_error(exc))


async def _unhandled_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    problem = ProblemError(500, "Internal Server Error", "Unexpected error; see the service log.")
    return problem_response(request, problem)


def install_problem_handlers(
    app: FastAPI, problems: Mapping[type[Exception], Problem] | None = None
) -> None:
    """Register the problem+json exception handlers on ``app``: HTTP and validation errors,
    every class of :data:`PROBLEMS` and of the service's own ``problems``, the job store's
    errors, and a 500 for anything else."""
    table = {**PROBLEMS, **(problems or {})}

    async def listed(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, problem_for(exc, table))

    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    for kind in table:
        app.add_exception_handler(kind, listed)
    app.add_exception_handler(sqlite3.Error, _store_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
