"""The job store's reserve (``jobkit.reserve``) on a real full file system: a small tmpfs filled
to 0 bytes free. Ends, results and progress are recorded there, from this process and from a
worker-like one; a store without the reserve cannot; the reserve is rebuilt once space returns;
a store opened again on the full volume opens with its spare file."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from jobkit.models import JobError, JobState
from jobkit.reserve import RESERVE_BYTES, SPARE_BYTES, for_lack_of_space
from jobkit.store import JobStore
from tests.jobkit.jobkit_helpers import REPO_ROOT
from tests.jobkit.test_store import dead_pid
from tests.utils.full_volume import MiB, fill, free_bytes, tmpfs

FULL = JobError(type="out_of_space", message="the volume is full (No space left on device)")


@pytest.fixture
def volume(tmp_path: Path):
    with tmpfs(tmp_path / "volume", 8 * MiB) as path:
        yield path


def running_jobs(store: JobStore, count: int) -> list[str]:
    ids = []
    for i in range(count):
        job = store.create("train", {"i": i, "tags": ["full"]})
        store.mark_running(job.id, os.getpid())
        ids.append(job.id)
    return ids


def close(store: JobStore) -> None:
    """Close this thread's connection (the last one: SQLite deletes its log and index)."""
    store._close_this_thread()
    gc.collect()


def finish_in_another_process(db: Path, job_id: str) -> subprocess.CompletedProcess:
    """What a worker does at its end: open the store, record the end."""
    code = (
        "import sys; from jobkit.store import JobStore; from jobkit.models import JobError;"
        f"print(JobStore({str(db)!r}).finish({job_id!r}, 'failed',"
        " JobError(type='out_of_space', message='full')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_ends_are_recorded_on_a_volume_with_zero_bytes_free(volume: Path):
    store = JobStore(volume / "state" / "jobs.db")
    assert store.keep_reserve() and store.reserve().whole()
    ids = running_jobs(store, 4)
    bare = JobStore(volume / "bare" / "jobs.db")  # the same store without its reserve
    bare_ids = running_jobs(bare, 2)
    keep = volume / "keep.bin"
    keep.write_bytes(os.urandom(64 * 1024))

    filled = fill(volume / "filler")
    assert free_bytes(volume) == 0 and filled > 0

    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        bare.finish(bare_ids[0], JobState.FAILED, FULL)  # the volume really is full
    for i in range(600):  # a worker's progress, throttled to 2 a second: 5 minutes of it
        store.set_progress(ids[0], i, 1000)
    store.set_metrics(ids[0], {"epoch": 3, "loss": 0.25})
    store.set_result(ids[1], {"log": "x" * 20_000})
    assert store.finish(ids[0], JobState.FAILED, FULL)
    assert store.finish(ids[1], JobState.SUCCEEDED)
    worker = finish_in_another_process(store.db_path, ids[2])
    assert worker.returncode == 0 and worker.stdout.strip() == "True", worker.stderr

    assert free_bytes(volume) == 0  # still full: the store wrote into room of its own
    jobs = {job.id: job for job in store.list()}
    assert (jobs[ids[0]].state, jobs[ids[0]].error) == (JobState.FAILED, FULL)
    assert jobs[ids[0]].metrics == {"epoch": 3, "loss": 0.25}
    assert jobs[ids[0]].progress.done == 599
    assert jobs[ids[1]].state == JobState.SUCCEEDED and len(jobs[ids[1]].result["log"]) == 20_000
    assert jobs[ids[2]].state == JobState.FAILED and jobs[ids[2]].error.type == "out_of_space"
    assert jobs[ids[3]].state == JobState.RUNNING
    assert (volume / "filler").stat().st_size == filled and len(keep.read_bytes()) == 64 * 1024


def test_the_reserve_is_rebuilt_once_space_returns(volume: Path):
    store = JobStore(volume / "state" / "jobs.db")
    assert store.keep_reserve()
    (job_id,) = running_jobs(store, 1)
    fill(volume / "filler")
    store.set_result(job_id, {"blob": "y" * (RESERVE_BYTES // 2)})  # new pages: from the reserve
    used = store.reserve()
    assert used.free_page_bytes < RESERVE_BYTES // 2 + 64 * 1024
    assert store.release_spare() and not store.reserve().whole()
    assert free_bytes(volume) == SPARE_BYTES
    assert store.keep_reserve() is False  # no room to rebuild it: it waits, and nothing fails
    assert free_bytes(volume) == SPARE_BYTES  # what is left is not taken from the jobs

    (volume / "filler").unlink()
    assert store.keep_reserve() is True
    rebuilt = store.reserve()
    assert rebuilt.free_page_bytes >= RESERVE_BYTES and rebuilt.wal_bytes >= RESERVE_BYTES
    assert rebuilt.spare_bytes == SPARE_BYTES and rebuilt.unwritten_bytes <= 0
    fill(volume / "filler")
    assert store.finish(job_id, JobState.FAILED, FULL)  # and it serves again
    assert store.get(job_id).state == JobState.FAILED


def test_a_store_opened_again_on_a_full_volume_uses_its_spare_file(volume: Path):
    db = volume / "state" / "jobs.db"
    store = JobStore(db)
    assert store.keep_reserve()
    job = store.create("train", {})
    store.mark_running(job.id, dead_pid())  # its worker is gone with the service
    close(store)  # the service stops: SQLite deletes its log and the log's index
    assert not db.with_name("jobs.db-wal").exists()
    fill(volume / "filler")

    spare = db.with_name("jobs.db-spare")
    hidden = spare.rename(volume / "hidden")  # without its spare file ...
    with pytest.raises(sqlite3.OperationalError) as info:
        JobStore(db)  # ... SQLite cannot create the log's index on the full volume
    assert for_lack_of_space(info.value)
    hidden.rename(spare)

    again = JobStore(db)  # the service starts again
    assert not spare.exists()  # deleted to make room for the log and its index
    assert again.mark_orphans_interrupted() == [job.id]
    assert again.get(job.id).state == JobState.INTERRUPTED
    assert free_bytes(volume) < SPARE_BYTES
