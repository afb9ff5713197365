"""The public job representation: states, progress, errors and the job body the API returns."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobState(StrEnum):
    """Life cycle: queued -> running -> one of the terminal states.

    ``interrupted`` means the worker went away without finishing (service restart or shutdown);
    such a job can be put back in the queue with ``JobStore.reset_for_retry``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        """True for succeeded, failed, cancelled and interrupted."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
)
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class Progress(BaseModel):
    """Progress of the current phase. Rate and ETA are measured from the phase start."""

    done: int = Field(0, description="Items done in the current phase.")
    total: int | None = Field(None, description="Items in the current phase, when known.")
    percent: float | None = Field(None, description="100 * done / total, when total is known.")
    rate: float | None = Field(None, description="Items per second since the phase's first item.")
    unit: str = Field("items", description='What is counted, e.g. "images", "batches".')
    eta_s: float | None = Field(None, description="Seconds left at the current rate.")


class JobError(BaseModel):
    """Why a job did not succeed."""

    type: str = Field(
        ...,
        description=(
            'Machine-readable reason: "failed", "out_of_memory", "killed", "cancelled", '
            '"interrupted", "invalid_input", or a service-specific one.'
        ),
    )
    message: str = Field(..., description="Human-readable explanation.")


class UnrecordedEnd(BaseModel):
    """The job's worker has ended, but the job store could not record the end yet."""

    worker: str = Field(..., description='How the worker ended, e.g. "worker exited with code 4".')
    reason: str = Field(
        ...,
        description="Why the end is not recorded yet, e.g. the job store cannot be written "
        "(the volume full). The service records it as soon as it can.",
    )
    since: datetime = Field(..., description="When the service first tried to record it.")


class JobPublic(BaseModel):
    """A job as clients see it (the body of every job endpoint)."""

    id: str
    kind: str = Field(..., description='What the job does, e.g. "prepare" or "train".')
    state: JobState
    phase: str | None = Field(None, description='Current step, e.g. "download", "epoch".')
    progress: Progress = Field(default_factory=Progress)
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Latest free-form metrics, e.g. epoch and loss."
    )
    request: dict[str, Any] = Field(default_factory=dict, description="The request as accepted.")
    result: dict[str, Any] | None = Field(None, description="What the job produced.")
    error: JobError | None = None
    queue_position: int | None = Field(None, description="1-based place in the queue if queued.")
    pid: int | None = Field(None, description="Worker process id while running.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    cancel_requested: bool = False
    restarts: int = Field(
        0, description="Times the runner restarted the job by itself (request.max_restarts)."
    )
    restart_causes: list[str] = Field(
        default_factory=list, description="Why each of those restarts happened, in order."
    )
    devices: list[str] = Field(
        default_factory=list,
        description="The device slots (GPUs) its worker held (as many as request.devices).",
    )
    unrecorded_end: UnrecordedEnd | None = Field(
        None,
        description="Set while the job's worker has ended but the service could not record "
        "that yet: state and error then show the end it will record.",
    )

    @property
    def terminal(self) -> bool:
        """True once the job reached a terminal state."""
        return self.state.terminal


class JobList(BaseModel):
    """A page of jobs, newest first."""

    items: list[JobPublic]
