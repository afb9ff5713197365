"""A full volume never leaves a job running forever, never stops the runner, and never gets a 500:
a job that fills a real volume ends ``out_of_space`` while the volume stays full (the store's
reserve); an end the store cannot record is shown as it is (state, error, ``unrecorded_end``;
a cancel is refused with it; /readyz says why) and recorded (``out_of_space``) once the store
takes writes again; jobs are refused with 507 and /readyz says why while the volume cannot take
them; a queue has a limit (429); and one job at a time means one worker process at a time."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from datavolume.layout import DataRoot
from jobkit.api import create_job, health_router, make_jobs_router
from jobkit.errors import JobStateConflict, QueueFull, VolumeNotWritable, is_out_of_space
from jobkit.models import JobState
from jobkit.problems import install_problem_handlers
from jobkit.reserve import SPARE_BYTES
from jobkit.runner import JobRunner
from jobkit.service import readiness
from jobkit.store import JobStore
from jobkit.worker import EXIT_UNRECORDED, classify_exception
from tests.jobkit.jobkit_helpers import REPO_ROOT, TARGETS, wait_terminal, wait_until
from tests.utils.full_volume import MiB, free_bytes, tmpfs

FULL = sqlite3.OperationalError("database or disk is full")


class FillingStore(JobStore):
    """A store whose ``finish`` fails as on a full volume while ``full`` is set."""

    full = False

    def finish(self, *args, **kwargs):
        if self.full:
            raise FULL
        return super().finish(*args, **kwargs)


def runner_over(store, tmp_path, **kwargs) -> JobRunner:
    return JobRunner(store, targets=TARGETS, log_dir=tmp_path / "logs", cancel_grace_s=5.0,
                     env={"PYTHONPATH": str(REPO_ROOT)}, **kwargs)  # fmt: skip


def test_out_of_space_is_recognized():
    import errno

    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_out_of_space(FULL)
    assert is_out_of_space(RuntimeError("Failed to write: No space left on device"))
    assert not is_out_of_space(OSError(errno.EACCES, "Permission denied"))
    error = classify_exception(OSError(errno.ENOSPC, "No space left on device", "x.tmp"))
    assert error.type == "out_of_space" and "free space" in error.message


def test_a_job_failing_for_space_ends_out_of_space(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    runner = runner_over(store, tmp_path)
    runner.start()
    try:
        job = store.create("no_space_while_working", {})
        runner.wake()
        done = wait_terminal(store, job.id)
        assert (done.state, done.error.type) == (JobState.FAILED, "out_of_space")
        assert "No space left on device" in done.error.message
    finally:
        runner.stop()


def test_a_worker_that_cannot_record_its_end_ends_out_of_space_once_writes_work(tmp_path):
    store = FillingStore(tmp_path / "jobs.db")
    runner = runner_over(store, tmp_path, max_concurrent=1)
    runner.start()
    try:
        job = store.create("disk_full_at_the_end", {})
        waiting = store.create("succeed", {"count": 2})
        store.full = True  # the runner cannot record it either, for now
        runner.wake()
        wait_until(store, job.id, lambda _: "exited with code 4" in runner.log_tail(job.id))
        time.sleep(0.5)  # several runner passes fail to record it...
        assert store.get(job.id).state == JobState.RUNNING
        assert runner._thread.is_alive()  # ... and the runner goes on
        assert store.get(waiting.id).state == JobState.QUEUED  # the queue waits for the end
        store.full = False  # space was freed
        done = wait_terminal(store, job.id)
        assert (done.state, done.error.type) == (JobState.FAILED, "out_of_space")
        assert "could not record" in done.error.message
        assert wait_terminal(store, waiting.id).state == JobState.SUCCEEDED  # the queue moves
    finally:
        runner.stop()
    assert EXIT_UNRECORDED == 4


def test_orphans_are_recorded_once_the_store_takes_writes(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job = store.create("succeed", {})
    store.mark_running(job.id, 999_999_999)  # a worker gone with the previous service
    filling = FillingStore(tmp_path / "jobs.db")
    filling.full = True
    runner = runner_over(filling, tmp_path)
    assert runner.start() == []  # could not mark it yet: the service starts anyway
    try:
        assert store.get(job.id).state == JobState.RUNNING
        filling.full = False
        assert wait_terminal(store, job.id).state == JobState.INTERRUPTED
    finally:
        runner.stop()


def test_the_next_worker_starts_only_once_the_previous_one_has_exited(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    runner = runner_over(store, tmp_path, max_concurrent=1)
    runner.start()
    try:
        exited = tmp_path / "exited"
        first = store.create("linger_after_the_end", {"linger_s": 1.5, "exited": str(exited)})
        second = store.create("succeed", {"count": 1})
        runner.wake()
        assert wait_terminal(store, first.id).state == JobState.SUCCEEDED  # recorded ...
        done = wait_terminal(store, second.id)
        # ... but the second worker started only after the first process was gone.
        assert done.started_at.timestamp() >= float(exited.read_text())
    finally:
        runner.stop()


def _app(
    tmp_path, store_class: type[JobStore] = JobStore, **runner_kwargs
) -> tuple[TestClient, JobStore, JobRunner]:
    store = store_class(tmp_path / "state" / "jobs.db")
    runner = runner_over(store, tmp_path, **runner_kwargs)
    app = FastAPI()
    install_problem_handlers(app)
    app.state.store, app.state.runner = store, runner
    app.include_router(health_router(readiness(app, "job(s) running")))
    app.include_router(make_jobs_router("jobs", lambda: store, lambda: runner))

    @app.post("/v1/jobs", status_code=202)
    def post(body: dict) -> dict:
        return create_job(store, runner, "succeed", body).model_dump(mode="json")

    return TestClient(app), store, runner


def test_a_full_volume_refuses_jobs_with_507_and_is_not_ready(tmp_path, monkeypatch):
    volume = DataRoot(tmp_path)
    client, store, _ = _app(tmp_path, volume=volume, min_free_bytes=64 * 2**20)
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/jobs", json={}).status_code == 202
    monkeypatch.setattr(DataRoot, "free_bytes", lambda self: 5 * 2**20)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "5.0 MiB free" in ready.json()["detail"]
    refused = client.post("/v1/jobs", json={})
    assert refused.status_code == 507 and refused.json()["type"].endswith("volume-not-writable")
    assert store.count_queued() == 1  # nothing was queued


def test_a_volume_that_cannot_be_written_is_not_ready(tmp_path, monkeypatch):
    client, _, runner = _app(tmp_path, volume=DataRoot(tmp_path))

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("datavolume.layout.open", no_space, raising=False)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["detail"] == "the volume cannot be written (No space left on device)"
    with pytest.raises(VolumeNotWritable):
        runner.admit()


def test_a_store_that_cannot_be_written_answers_507_or_503_not_500(tmp_path, monkeypatch):
    client, _, _ = _app(tmp_path)

    def full(*args, **kwargs):
        raise FULL

    monkeypatch.setattr(JobStore, "create", full)
    answer = client.post("/v1/jobs", json={})
    assert answer.status_code == 507 and "volume is full" in answer.json()["detail"]

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(JobStore, "create", locked)
    answer = client.post("/v1/jobs", json={})
    assert answer.status_code == 503 and answer.headers["retry-after"]


def test_the_queue_has_a_limit(tmp_path):
    client, store, runner = _app(tmp_path, max_queued=2)
    for _ in range(2):
        assert client.post("/v1/jobs", json={}).status_code == 202
    refused = client.post("/v1/jobs", json={})
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert refused.json()["limit"] == 2 and store.count_queued() == 2
    with pytest.raises(QueueFull):
        runner.admit()


def test_the_probe_leaves_nothing_behind(tmp_path):
    volume = DataRoot(tmp_path)
    assert volume.unwritable_reason(0) is None
    assert list(Path(tmp_path / "state").iterdir()) == []


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def test_a_job_that_fills_a_real_volume_ends_out_of_space_while_it_is_full(tmp_path):
    with tmpfs(tmp_path / "volume", 16 * MiB) as volume:
        store = JobStore(volume / "state" / "jobs.db")
        runner = JobRunner(store, targets=TARGETS, log_dir=volume / "state" / "logs",
                           env={"PYTHONPATH": str(REPO_ROOT)})  # fmt: skip
        runner.start()
        try:
            assert store.reserve().whole()  # built at start
            keep = volume / "keep.bin"
            keep.write_bytes(b"kept" * 1024)
            filler = volume / "filler"
            job = store.create("fill_the_volume", {"path": str(filler)})
            runner.wake()
            wait_for(lambda: free_bytes(volume) == 0, timeout=30)
            full_at = time.monotonic()
            done = wait_terminal(store, job.id, timeout=10)
            assert time.monotonic() - full_at < 10
            assert (done.state, done.error.type) == (JobState.FAILED, "out_of_space")
            assert "No space left on device" in done.error.message
            # Still full (the runner may have used the spare file for the job's last log line).
            assert free_bytes(volume) <= SPARE_BYTES
            wait_for(lambda: "worker exited with code 1; job failed" in runner.log_tail(job.id))
            assert keep.read_bytes() == b"kept" * 1024 and filler.stat().st_size > 8 * MiB

            filler.unlink()  # space is freed: the runner rebuilds the reserve ...
            wait_for(lambda: store.reserve().whole(), timeout=10)
            again = store.create("succeed", {"count": 2})
            runner.wake()  # ... and the queue moves on
            assert wait_terminal(store, again.id).state == JobState.SUCCEEDED
        finally:
            runner.stop()
            store._close_this_thread()


def test_an_end_the_store_cannot_record_is_shown_until_it_is(tmp_path):
    client, store, runner = _app(tmp_path, store_class=FillingStore)
    runner.start()
    try:
        job = store.create("disk_full_at_the_end", {"tags": ["mine"]})
        store.full = True
        runner.wake()
        wait_for(lambda: job.id in runner.unrecorded_ends())
        assert store.get(job.id).state == JobState.RUNNING  # what the store says ...

        shown = client.get(f"/v1/jobs/{job.id}")  # ... and what the service knows
        assert shown.status_code == 200 and "retry-after" not in shown.headers
        body = shown.json()
        assert (body["state"], body["error"]["type"]) == ("failed", "out_of_space")
        assert body["unrecorded_end"]["worker"] == "worker exited with code 4"
        reason = "the job store cannot be written: database or disk is full"
        assert body["unrecorded_end"]["reason"] == reason
        listed = client.get("/v1/jobs", params={"state": "failed", "tag": "mine"}).json()
        assert [item["id"] for item in listed["items"]] == [job.id]
        assert client.get("/v1/jobs", params={"state": "running"}).json()["items"] == []
        assert [item["state"] for item in client.get("/v1/jobs").json()["items"]] == ["failed"]

        cancel = client.post(f"/v1/jobs/{job.id}/cancel")
        assert cancel.status_code == 409 and cancel.json()["state"] == "failed"
        assert "not recorded yet" in cancel.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"] == (
            f"1 job has ended (failed) but its end is not recorded yet: {reason}"
        )
        assert not store.get(job.id).cancel_requested

        store.full = False  # space was freed
        done = wait_terminal(store, job.id)
        assert (done.state, done.error.type) == (JobState.FAILED, "out_of_space")
        wait_for(lambda: runner.unrecorded_ends() == {})
        body = client.get(f"/v1/jobs/{job.id}").json()
        assert body["state"] == "failed" and body["unrecorded_end"] is None
        assert "could not record" in body["error"]["message"]
        assert client.get("/readyz").status_code == 200
        assert runner.log_tail(job.id).count("worker exited with code 4") == 1  # logged once
    finally:
        runner.stop()


def test_a_job_whose_worker_is_gone_shows_interrupted_until_that_is_recorded(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job = store.create("succeed", {})
    store.mark_running(job.id, 999_999_999)  # a worker gone with the previous service
    filling = FillingStore(tmp_path / "jobs.db")
    filling.full = True
    runner = runner_over(filling, tmp_path)
    runner.start()
    try:
        shown = runner.present(store.get(job.id))
        assert shown.state == JobState.INTERRUPTED and shown.error.type == "interrupted"
        assert "worker process 999999999 is gone" in shown.unrecorded_end.worker
        assert runner.unrecorded_problem().startswith("1 job has ended (interrupted)")
        with pytest.raises(JobStateConflict):
            runner.cancel(job.id)
        filling.full = False
        assert wait_terminal(store, job.id).state == JobState.INTERRUPTED
        wait_for(lambda: runner.unrecorded_problem() is None)
        assert runner.present(store.get(job.id)).unrecorded_end is None
    finally:
        runner.stop()
