"""JobStore: creation, idempotency, resource locks, FIFO queue, progress, orphans, retry."""

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC

import psutil
import pytest

from jobkit.errors import IdempotencyConflict, JobNotFound, JobStateConflict, ResourceBusy
from jobkit.models import JobError, JobState
from jobkit.store import JobStore


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not psutil.pid_exists(proc.pid)
    return proc.pid


def test_create_and_get(store: JobStore) -> None:
    job = store.create("prepare", {"name": "tiny", "shards": 4})
    assert len(job.id) == 12
    int(job.id, 16)
    assert job.kind == "prepare"
    assert job.state == JobState.QUEUED
    assert job.request == {"name": "tiny", "shards": 4}
    assert job.queue_position == 1
    assert job.progress.done == 0
    assert job.error is None and job.result is None and job.pid is None
    assert job.created_at.tzinfo is not None
    assert job.created_at.utcoffset() == UTC.utcoffset(None)
    assert job.model_dump(mode="json")["created_at"].endswith("Z")
    assert store.get(job.id) == job
    assert store.get("nope") is None
    with pytest.raises(JobNotFound):
        store.require("nope")


def test_wal_mode(store: JobStore) -> None:
    conn = sqlite3.connect(store.db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_idempotency_same_body_returns_existing_job(store: JobStore) -> None:
    first = store.create("prepare", {"a": 1, "b": {"c": 2}}, idempotency_key="k1")
    # Same body, different key order: same canonical JSON.
    again = store.create("prepare", {"b": {"c": 2}, "a": 1}, idempotency_key="k1")
    assert again.id == first.id
    assert len(store.list()) == 1


def test_idempotency_different_body_conflicts(store: JobStore) -> None:
    first = store.create("prepare", {"a": 1}, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict) as info:
        store.create("prepare", {"a": 2}, idempotency_key="k1")
    assert info.value.job_id == first.id
    with pytest.raises(IdempotencyConflict):
        store.create("train", {"a": 1}, idempotency_key="k1")
    # Without a key, or with another key, identical bodies make new jobs.
    assert store.create("prepare", {"a": 1}).id != first.id
    assert store.create("prepare", {"a": 1}, idempotency_key="k2").id != first.id


def test_resource_busy_until_terminal(store: JobStore) -> None:
    first = store.create("prepare", {"name": "tiny"}, resource_key="dataset:tiny")
    with pytest.raises(ResourceBusy) as info:
        store.create("prepare", {"name": "tiny", "x": 1}, resource_key="dataset:tiny")
    assert info.value.job_id == first.id
    assert first.id in str(info.value)
    store.create("prepare", {"name": "other"}, resource_key="dataset:other")
    store.mark_running(first.id, os.getpid())
    with pytest.raises(ResourceBusy):
        store.create("prepare", {}, resource_key="dataset:tiny")
    store.finish(first.id, JobState.SUCCEEDED)
    assert store.create("prepare", {}, resource_key="dataset:tiny").state == JobState.QUEUED


def test_idempotent_replay_wins_over_resource_busy(store: JobStore) -> None:
    first = store.create("prepare", {"n": 1}, idempotency_key="k", resource_key="r")
    assert store.create("prepare", {"n": 1}, idempotency_key="k", resource_key="r").id == first.id


def test_concurrent_creates_for_one_resource(store: JobStore) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        try:
            store.create("prepare", {"i": i}, resource_key="dataset:tiny")
            outcomes.append("created")
        except ResourceBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy"] * 7 + ["created"]


def test_fifo_queue_positions(store: JobStore) -> None:
    a = store.create("k", {"n": 1})
    b = store.create("k", {"n": 2})
    c = store.create("k", {"n": 3})
    assert [store.queue_position(j.id) for j in (a, b, c)] == [1, 2, 3]
    assert store.next_queued().id == a.id
    store.mark_running(a.id, os.getpid())
    assert store.queue_position(a.id) is None
    assert [store.queue_position(j.id) for j in (b, c)] == [1, 2]
    assert store.next_queued().id == b.id
    listed = store.list()
    assert [j.id for j in listed] == [c.id, b.id, a.id]  # newest first
    assert [j.queue_position for j in listed] == [2, 1, None]
    assert [j.id for j in store.list(limit=1)] == [c.id]
    assert [j.id for j in store.list(state="running")] == [a.id]
    assert store.count_running() == 1


def test_phase_progress_rate_eta(store: JobStore) -> None:
    job = store.create("k", {})
    store.mark_running(job.id, os.getpid())
    store.set_phase(job.id, "write", total=100, unit="images")
    store.set_progress(job.id, 5)  # the first work done starts the clock: no rate yet
    first = store.get(job.id).progress
    assert first.rate is None and first.eta_s is None
    time.sleep(0.05)
    store.set_progress(job.id, 25)
    p = store.get(job.id).progress
    assert (p.done, p.total, p.unit, p.percent) == (25, 100, "images", 25.0)
    assert p.rate is not None and 20 / 0.5 < p.rate < 20 / 0.04
    assert p.eta_s == pytest.approx(75 / p.rate)
    store.set_progress(job.id, 30, total=60)
    assert store.get(job.id).progress.percent == 50.0
    store.set_phase(job.id, "verify")
    got = store.get(job.id)
    assert got.phase == "verify"
    assert got.progress.done == 0 and got.progress.total is None
    assert got.progress.rate is None and got.progress.eta_s is None
    assert got.progress.unit == "items"


def test_the_rate_leaves_out_what_comes_before_the_first_item(store: JobStore) -> None:
    """A phase that spends its first second starting processes is not three times slower."""
    job = store.create("k", {})
    store.mark_running(job.id, os.getpid())
    store.set_phase(job.id, "write", total=1000, unit="images")
    time.sleep(1.0)  # start-up: nothing done yet
    store.set_progress(job.id, 0)
    store.set_progress(job.id, 10)
    time.sleep(0.1)
    store.set_progress(job.id, 20)
    p = store.get(job.id).progress
    # Counted from the phase start this would be 20 / 1.1 s, about 18/s (ETA 54 s).
    assert p.rate is not None and p.rate > 40 and p.eta_s < 980 / 40


def test_a_database_of_the_first_schema_gets_the_new_columns(tmp_path) -> None:
    import sqlite3

    from jobkit.store import _ADDED_COLUMNS, _SCHEMA

    path = tmp_path / "old.db"
    old = _SCHEMA
    for column, kind in _ADDED_COLUMNS.items():
        old = old.replace(f"    {column:<16} {kind},\n", "")
    assert "rate_base" not in old
    with sqlite3.connect(path) as conn:
        conn.executescript(old)
    store = JobStore(path)
    job = store.create("k", {})
    store.mark_running(job.id, os.getpid())
    store.set_phase(job.id, "p", total=10)
    store.set_progress(job.id, 1)
    store.set_progress(job.id, 2)
    assert store.get(job.id).progress.done == 2


def test_metrics_merge_and_result(store: JobStore) -> None:
    job = store.create("k", {})
    store.set_metrics(job.id, {"epoch": 1, "loss": 2.0})
    store.set_metrics(job.id, {"loss": 1.5, "accuracy": 0.3})
    store.set_result(job.id, {"model": "/data/runs/x/model.keras"})
    got = store.get(job.id)
    assert got.metrics == {"epoch": 1, "loss": 1.5, "accuracy": 0.3}
    assert got.result == {"model": "/data/runs/x/model.keras"}


def test_finish_only_once(store: JobStore) -> None:
    job = store.create("k", {})
    assert store.finish(job.id, JobState.FAILED, JobError(type="failed", message="x"))
    assert not store.finish(job.id, JobState.SUCCEEDED)
    got = store.get(job.id)
    assert got.state == JobState.FAILED
    assert got.error == JobError(type="failed", message="x")
    assert got.finished_at is not None
    with pytest.raises(ValueError):
        store.finish(job.id, JobState.RUNNING)


def test_request_cancel(store: JobStore) -> None:
    job = store.create("k", {})
    assert store.request_cancel(job.id)
    assert store.get(job.id).cancel_requested
    store.finish(job.id, JobState.CANCELLED)
    assert not store.request_cancel(job.id)


def test_mark_running_only_from_queued(store: JobStore) -> None:
    job = store.create("k", {})
    assert store.mark_running(job.id, 1234)
    assert not store.mark_running(job.id, 5678)
    got = store.get(job.id)
    assert got.state == JobState.RUNNING and got.pid == 1234 and got.started_at is not None


def test_orphans_marked_interrupted(store: JobStore) -> None:
    gone = store.create("k", {"n": 1})
    alive = store.create("k", {"n": 2})
    reused = store.create("k", {"n": 3})
    pid = dead_pid()
    store.mark_running(gone.id, pid)
    store.mark_running(alive.id, os.getpid())
    store.mark_running(reused.id, os.getpid())
    # Pretend `reused` started before this process existed: its pid now names another process.
    created = psutil.Process().create_time()
    conn = sqlite3.connect(store.db_path)
    with conn:
        conn.execute("UPDATE jobs SET started_at = ? WHERE id = ?", [created - 3600, reused.id])
    conn.close()

    assert sorted(store.mark_orphans_interrupted()) == sorted([gone.id, reused.id])
    got = store.get(gone.id)
    assert got.state == JobState.INTERRUPTED
    assert got.error.type == "interrupted"
    assert got.error.message == f"worker process {pid} is gone (service restarted?)"
    assert store.get(alive.id).state == JobState.RUNNING
    assert store.mark_orphans_interrupted() == []


def test_reset_for_retry(store: JobStore) -> None:
    job = store.create("k", {"n": 1}, resource_key="r")
    later = store.create("k", {"n": 2})
    store.mark_running(job.id, 99999)
    store.set_phase(job.id, "epoch", total=10)
    store.set_metrics(job.id, {"epoch": 3})
    store.finish(job.id, JobState.INTERRUPTED, JobError(type="interrupted", message="gone"))
    again = store.reset_for_retry(job.id)
    assert again.id == job.id and again.request == {"n": 1}
    assert again.state == JobState.QUEUED
    assert again.error is None and again.pid is None and again.started_at is None
    assert again.metrics == {"epoch": 3}
    assert again.queue_position == 2  # behind the job queued meanwhile
    assert store.next_queued().id == later.id
    with pytest.raises(ResourceBusy):
        store.create("k", {}, resource_key="r")
    with pytest.raises(JobStateConflict):
        store.reset_for_retry(job.id)  # queued, not retryable
    with pytest.raises(JobNotFound):
        store.reset_for_retry("missing")


def test_reset_for_retry_refuses_busy_resource(store: JobStore) -> None:
    job = store.create("k", {}, resource_key="r")
    store.finish(job.id, JobState.FAILED)
    other = store.create("k", {"x": 1}, resource_key="r")
    with pytest.raises(ResourceBusy) as info:
        store.reset_for_retry(job.id)
    assert info.value.job_id == other.id


def test_store_shared_across_processes(store: JobStore) -> None:
    job = store.create("k", {})
    code = (
        "import sys; from jobkit.store import JobStore; s = JobStore(sys.argv[1]);"
        "s.set_phase(sys.argv[2], 'p', total=3); s.set_progress(sys.argv[2], 3)"
    )
    subprocess.run([sys.executable, "-c", code, str(store.db_path), job.id], check=True)
    got = store.get(job.id)
    assert got.phase == "p" and got.progress.done == 3 and got.progress.percent == 100.0


def test_list_filters_by_state_and_by_a_tag_of_the_request(store: JobStore) -> None:
    a = store.create("k", {"tags": ["baseline", "half"]})
    b = store.create("k", {"tags": ["half"]})
    c = store.create("k", {"tags": []})
    d = store.create("k", {"other": "no tags at all"})
    store.finish(b.id, JobState.FAILED)
    assert [j.id for j in store.list(tag="half")] == [b.id, a.id]  # newest first
    assert [j.id for j in store.list(tag="baseline")] == [a.id]
    assert [j.id for j in store.list(tag="half", state="queued")] == [a.id]
    assert store.list(tag="hal") == [] and store.list(tag="%") == []
    assert {j.id for j in store.list()} == {a.id, b.id, c.id, d.id}
