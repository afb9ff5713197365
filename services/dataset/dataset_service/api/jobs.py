"""``POST /v1/jobs`` starts a prepare job; jobkit's router serves the rest of ``/v1/jobs``."""

from __future__ import annotations

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from dataset_service.errors import SourceError
from dataset_service.fetch import UrlRefused
from dataset_service.models import SYNTHETIC_BYTES_PER_IMAGE, PrepareRequest
from dataset_service.prepare import JOB_KIND
from datavolume.layout import OutsideRoot
from jobkit.api import IdempotencyKey, accepted, create_job, make_jobs_router
from jobkit.models import JobPublic
from jobkit.problems import PROBLEM_JSON, ProblemError, invalid_field, problem_type
from jobkit.service import RunnerDep, SettingsDep, StoreDep, get_runner, get_store

RESOURCE = "jobs"
_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}

router = APIRouter(prefix=f"/v1/{RESOURCE}", tags=[RESOURCE])
jobkit_router = make_jobs_router(RESOURCE, get_store, get_runner)


def resource_key(name: str) -> str:
    """What a prepare job writes: at most one queued or running job per dataset name."""
    return f"dataset:{name}"


def check_source(body: PrepareRequest, settings: SettingsDep) -> None:
    """A url source must lead to an address the service may fetch from; a zip or folder source
    must name an existing path inside the data root (else 422)."""
    source = body.source
    if source.kind == "url":
        try:
            settings.source_limits.url_policy.pin(httpx.URL(str(source.url)))
        except UrlRefused as exc:
            raise invalid_field("body.source.url", exc.message) from exc
        except SourceError:  # not resolvable now: the job says so, with its own retries
            pass
        return
    if source.kind == "synthetic":
        needed = source.total_images * SYNTHETIC_BYTES_PER_IMAGE + settings.min_free_bytes
        free = settings.volume.free_bytes()
        if needed > free:
            raise ProblemError(
                507,
                "Insufficient Storage",
                f"{source.total_images:,} synthetic images need about "
                f"{needed / 2**20:,.0f} MiB on the volume, which has {free / 2**20:,.0f} MiB "
                "free: ask for fewer, or free space",
                type_=problem_type("volume-not-writable"),
            )
        return
    if source.kind not in ("zip", "folder"):
        return
    field = "body.source.path"
    try:
        path = settings.volume.resolve(source.path)
    except OutsideRoot as exc:
        raise invalid_field(field, str(exc)) from exc
    if source.kind == "zip" and not path.is_file():
        raise invalid_field(field, f"no zip file at {source.path!r} under the data root")
    if source.kind == "folder" and not path.is_dir():
        raise invalid_field(field, f"no folder at {source.path!r} under the data root")


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses={409: _PROBLEM, 422: _PROBLEM, 429: _PROBLEM, 507: _PROBLEM},
    summary="Start a prepare job (202, Location of the job)",
)
def start_prepare(
    body: PrepareRequest,
    settings: SettingsDep,
    store: StoreDep,
    runner: RunnerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue a job turning ``body.source`` into ``datasets/<name>/``.

    Same ``Idempotency-Key`` and body: the same job. A prepare of a dataset that another job
    is already writing: 409 naming that job. To resume an interrupted or failed prepare, post
    the same request again (without reusing the old key): complete shards are kept.
    """
    check_source(body, settings)
    job = create_job(store, runner, JOB_KIND, body, idempotency_key, resource_key(body.name))
    return accepted(job, f"/v1/{RESOURCE}/{job.id}")
