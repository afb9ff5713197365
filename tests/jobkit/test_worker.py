"""The worker: JobContext reporting, exception classification, the recorded final state."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jobkit.errors import JobCancelled, JobFailed, is_out_of_memory
from jobkit.models import JobError, JobState
from jobkit.store import JobStore
from jobkit.worker import JobContext, classify_exception, execute, load_target
from tests.jobkit import sample_jobs
from tests.jobkit.jobkit_helpers import wait_ready

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(store: JobStore, fn, request=None, **kwargs) -> tuple[str, JobState]:
    job = store.create("k", request or {})
    return job.id, execute(store, job.id, fn, **kwargs)


def test_success_records_progress_metrics_result(store: JobStore) -> None:
    job_id, state = run(store, sample_jobs.succeed, {"count": 500})
    assert state == JobState.SUCCEEDED
    job = store.get(job_id)
    assert job.state == JobState.SUCCEEDED
    assert job.error is None
    assert job.pid == os.getpid()
    assert job.phase == "count"
    assert (job.progress.done, job.progress.total, job.progress.unit) == (500, 500, "images")
    assert job.progress.percent == 100.0
    assert job.metrics == {"epoch": 1, "loss": 0.5}
    assert job.result == {"count": 500}
    assert job.started_at is not None and job.finished_at >= job.started_at


def test_target_given_as_string(store: JobStore) -> None:
    _, state = run(store, "tests.jobkit.sample_jobs:succeed")
    assert state == JobState.SUCCEEDED
    assert load_target("tests.jobkit.sample_jobs:succeed") is sample_jobs.succeed
    with pytest.raises(ValueError):
        load_target("tests.jobkit.sample_jobs.succeed")


def test_job_failed_keeps_type_and_message(store: JobStore) -> None:
    job_id, state = run(store, sample_jobs.fail_readable)
    assert state == JobState.FAILED
    assert store.get(job_id).error == JobError(
        type="invalid_input", message="dataset 'tiny' has no images"
    )


@pytest.mark.parametrize("fn", [sample_jobs.out_of_memory, sample_jobs.resource_exhausted])
def test_out_of_memory(store: JobStore, fn) -> None:
    job_id, state = run(store, fn)
    assert state == JobState.FAILED
    assert store.get(job_id).error.type == "out_of_memory"


def test_other_exception_is_failed_with_class_and_traceback(store: JobStore, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        job_id, state = run(store, sample_jobs.crash)
    assert state == JobState.FAILED
    assert store.get(job_id).error == JobError(type="failed", message="ValueError: boom")
    assert any(r.exc_info and "ValueError: boom" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (JobFailed("bad input", type="invalid_input"), ("invalid_input", "bad input")),
        (JobFailed("plain"), ("failed", "plain")),
        (MemoryError(), ("out_of_memory", "MemoryError")),
        (RuntimeError("CUDA out of memory. Tried"), ("out_of_memory", None)),
        (RuntimeError("GPU OOM"), ("out_of_memory", None)),
        (sample_jobs.ResourceExhaustedError("x"), ("out_of_memory", None)),
        (RuntimeError("zoom in"), ("failed", "RuntimeError: zoom in")),
        (KeyError("k"), ("failed", "KeyError: 'k'")),
    ],
)
def test_classify_exception(exc: BaseException, expected) -> None:
    error = classify_exception(exc)
    assert error.type == expected[0]
    if expected[1] is not None:
        assert error.message == expected[1]


def test_cancel_requested_then_job_cancelled(store: JobStore) -> None:
    job = store.create("k", {})
    store.request_cancel(job.id)

    def fn(ctx: JobContext) -> None:
        assert ctx.should_stop  # a cancel requested before start stops at once
        ctx.check_stop()

    assert execute(store, job.id, fn) == JobState.CANCELLED
    assert store.get(job.id).error.type == "cancelled"


def test_stop_without_cancel_request_is_interrupted(store: JobStore) -> None:
    stop = threading.Event()
    stop.set()
    job_id, state = run(store, sample_jobs.wait_for_stop, stop_event=stop)
    assert state == JobState.INTERRUPTED
    assert store.get(job_id).error.type == "interrupted"


def test_job_cancelled_raised_by_function(store: JobStore) -> None:
    def fn(ctx: JobContext) -> None:
        raise JobCancelled("gave up")

    job_id, state = run(store, fn)
    assert state == JobState.INTERRUPTED  # no cancel request: the job just stopped
    assert store.get(job_id).error.message.endswith("(gave up)")


def test_terminal_job_not_run(store: JobStore) -> None:
    job = store.create("k", {})
    store.finish(job.id, JobState.CANCELLED)
    calls = []
    assert execute(store, job.id, calls.append) == JobState.CANCELLED
    assert calls == []


class CountingStore(JobStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.progress_writes: list[int] = []
        self.metric_writes = 0

    def set_progress(self, job_id: str, done: int, total: int | None = None) -> None:
        self.progress_writes.append(done)
        super().set_progress(job_id, done, total)

    def set_metrics(self, job_id, metrics) -> None:
        self.metric_writes += 1
        super().set_metrics(job_id, metrics)


def test_progress_is_throttled_but_final_value_written(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "jobs.db")
    job = store.create("k", {})
    ctx = JobContext(store, job.id, {}, logging.getLogger("t"), interval_s=0.2)
    ctx.phase("loop", total=100_000)
    start = time.monotonic()
    for i in range(1, 100_001):
        ctx.progress(i)
        ctx.metrics({"i": i})
    elapsed = time.monotonic() - start
    assert store.progress_writes[-1] == 100_000  # done == total is always written
    assert len(store.progress_writes) <= elapsed / 0.2 + 2
    assert store.metric_writes <= elapsed / 0.2 + 2
    ctx.progress(5)  # throttled: pending until flush
    assert store.get(job.id).progress.done == 100_000
    ctx.flush()
    got = store.get(job.id)
    assert got.progress.done == 5
    assert got.metrics == {"i": 100_000}


def test_a_phase_and_its_metrics_are_written_together_at_once(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = store.create("k", {})
    ctx = JobContext(store, job.id, {}, logging.getLogger("t"), interval_s=60)
    ctx.phase("epoch 1/3", total=10, metrics={"epoch": 1})
    ctx.metrics({"loss": 2.0})  # throttled: pending
    ctx.phase("epoch 2/3", total=10, metrics={"epoch": 2})  # written at once, with the phase
    got = store.get(job.id)
    assert (got.phase, got.metrics["epoch"], got.metrics["loss"]) == ("epoch 2/3", 2, 2.0)


def worker_cmd(store: JobStore, job_id: str, target: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobkit.worker",
        "--db",
        str(store.db_path),
        "--job",
        job_id,
        "--target",
        target,
    ]


def worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_worker_entry_point(store: JobStore) -> None:
    ok = store.create("k", {"count": 3})
    proc = subprocess.run(
        worker_cmd(store, ok.id, "tests.jobkit.sample_jobs:succeed"),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    job = store.get(ok.id)
    assert job.state == JobState.SUCCEEDED
    assert job.result == {"count": 3}
    assert "counted 3 images" in proc.stderr

    bad = store.create("k", {})
    proc = subprocess.run(
        worker_cmd(store, bad.id, "tests.jobkit.sample_jobs:crash"),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: boom" in proc.stderr
    assert store.get(bad.id).error.message == "ValueError: boom"


def test_worker_sigterm_sets_should_stop(store: JobStore, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    job = store.create("k", {"checkpoint": str(checkpoint)})
    proc = subprocess.Popen(
        worker_cmd(store, job.id, "tests.jobkit.sample_jobs:graceful"),
        env=worker_env(),
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(store, job.id)
        store.request_cancel(job.id)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 3
    finally:
        proc.kill()
    assert checkpoint.read_text() == "saved"
    got = store.get(job.id)
    assert got.state == JobState.CANCELLED
    assert got.error.type == "cancelled"
    assert "stopped after saving a checkpoint" in got.error.message


def test_worker_unknown_job_exits_2(store: JobStore) -> None:
    proc = subprocess.run(
        worker_cmd(store, "missing", "tests.jobkit.sample_jobs:succeed"),
        env=worker_env(),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 2


@pytest.mark.parametrize(
    ("exc", "oom"),
    [
        (MemoryError(), True),
        (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"), True),
        (RuntimeError("XlaRuntimeError: RESOURCE_EXHAUSTED"), True),
        (type("ResourceExhaustedError", (Exception,), {})("gpu"), True),
        (ValueError("shapes do not match"), False),
    ],
)
def test_is_out_of_memory(exc, oom):
    assert is_out_of_memory(exc) is oom


def test_local_context_keeps_what_was_reported_and_stops_like_a_job() -> None:
    from jobkit.context import LocalContext

    ctx = LocalContext()
    ctx.phase("write", total=4, unit="images", metrics={"epoch": 1})
    ctx.progress(3)
    ctx.metrics({"loss": 0.5})
    ctx.result({"ok": True})
    assert (ctx.phases, ctx.done, ctx.total) == (["write"], 3, 4)
    assert ctx.latest_metrics == {"epoch": 1, "loss": 0.5} and ctx.latest_result == {"ok": True}
    ctx.check_stop()
    ctx.request_stop()
    assert ctx.should_stop
    with pytest.raises(JobCancelled):
        ctx.check_stop()


def test_a_sigterm_inside_an_interruptible_section_raises_at_once() -> None:
    from jobkit.context import LocalContext

    ctx = LocalContext()
    outside = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: outside.append(signum))
    try:
        started = time.monotonic()
        with pytest.raises(JobCancelled), ctx.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        assert time.monotonic() - started < 5 and ctx.should_stop and outside == []
        os.kill(os.getpid(), signal.SIGTERM)  # the section's end put the handler back
        deadline = time.monotonic() + 5
        while not outside and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outside == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
