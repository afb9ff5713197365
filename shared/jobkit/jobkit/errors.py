"""Exceptions raised by the job store, the runner and job functions.

The store and runner raise the ``JobkitError`` subclasses; ``jobkit.problems`` turns them into
RFC 9457 responses. Job functions raise ``JobFailed`` / ``JobCancelled`` (re-exported by
``jobkit.worker``) to end a job with a readable error or as cancelled.
"""

from __future__ import annotations

import errno
import re

_OOM_MESSAGE = re.compile(r"RESOURCE_EXHAUSTED|out of memory|\bOOM\b", re.IGNORECASE)
_FULL_MESSAGE = re.compile(r"No space left on device|database or disk is full|Disk quota", re.I)


class JobkitError(Exception):
    """Base class of the errors the store and runner raise."""


class JobNotFound(JobkitError, LookupError):
    """No job with this id (in this store's scope). Maps to HTTP 404."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobStateConflict(JobkitError):
    """The job is in a state that does not allow the operation (e.g. cancel a finished job).

    Maps to HTTP 409.
    """

    def __init__(self, job_id: str, state: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class IdempotencyConflict(JobkitError):
    """The Idempotency-Key was already used with a different request body. Maps to HTTP 422."""

    def __init__(self, idempotency_key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {idempotency_key!r} was already used for job {job_id} "
            "with a different request; use a new key for a different request"
        )
        self.idempotency_key = idempotency_key
        self.job_id = job_id


class ResourceBusy(JobkitError):
    """Another queued or running job writes the same resource. Maps to HTTP 409."""

    def __init__(self, job_id: str, resource_key: str | None = None) -> None:
        what = f"{resource_key!r}" if resource_key else "this resource"
        super().__init__(f"job {job_id} is already queued or running for {what}")
        self.job_id = job_id
        self.resource_key = resource_key


class QueueFull(JobkitError):
    """The service's queue holds as many jobs as it may. Maps to HTTP 429 with Retry-After."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(
            f"{queued} jobs are queued, the most this service takes ({limit}); retry when "
            "some have started, or cancel some"
        )
        self.queued, self.limit = queued, limit


class VolumeNotWritable(JobkitError):
    """The data root (or the job store on it) cannot take more writes now: full, or read-only.
    Maps to HTTP 507."""


class JobFailed(Exception):
    """Raise from a job function to fail the job with a readable message.

    ``type`` becomes ``JobError.type`` (e.g. "failed", "invalid_input", "out_of_memory").
    """

    def __init__(self, message: str, type: str = "failed") -> None:
        super().__init__(message)
        self.message = message
        self.type = type


class JobCancelled(Exception):
    """Raise from a job function (or via ``JobContext.check_stop``) to stop as cancelled."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the process or an accelerator ran out of memory (Python, TF, XLA)."""
    return (
        isinstance(exc, MemoryError)
        or "ResourceExhausted" in type(exc).__name__
        or _OOM_MESSAGE.search(str(exc)) is not None
    )


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` says the volume is full: ENOSPC or EDQUOT, SQLite's "database or disk is
    full", or a message saying so (TensorFlow and Keras wrap the OS error)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return _FULL_MESSAGE.search(str(exc)) is not None


def summary_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of an error message, cut at ``limit`` characters: what a job's
    readable reason quotes of a library's (often many-line) message."""
    line = next((s.strip() for s in text.strip().splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[:limit] + "..."
