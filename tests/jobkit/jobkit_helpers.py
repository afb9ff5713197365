"""Polling helpers shared by the jobkit tests."""

import time
from collections.abc import Callable
from pathlib import Path

from jobkit.models import JobPublic
from jobkit.store import JobStore

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_KINDS = [
    "succeed",
    "report_niceness",
    "fail_readable",
    "out_of_memory",
    "resource_exhausted",
    "crash",
    "sigkill_self",
    "exit_7",
    "spawn_child",
    "spawn_stubborn_child",
    "ignore_sigterm",
    "graceful",
    "wait_for_stop",
    "busy_in_setup",
    "linger_after_the_end",
    "disk_full_at_the_end",
    "no_space_while_working",
    "die_once",
    "fill_the_volume",
    "report_devices",
]
TARGETS = {kind: f"tests.jobkit.sample_jobs:{kind}" for kind in SAMPLE_KINDS}


def wait_until(
    store: JobStore, job_id: str, pred: Callable[[JobPublic], bool], timeout: float = 10.0
) -> JobPublic:
    """Poll the store until ``pred(job)`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        assert job is not None
        if pred(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on job {job_id}: {job.model_dump()}")
        time.sleep(0.02)


def wait_terminal(store: JobStore, job_id: str, timeout: float = 10.0) -> JobPublic:
    return wait_until(store, job_id, lambda j: j.state.terminal, timeout)


def wait_ready(store: JobStore, job_id: str, timeout: float = 10.0) -> JobPublic:
    return wait_until(store, job_id, lambda j: j.metrics.get("ready") is True, timeout)
