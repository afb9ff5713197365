"""JobRunner: real worker processes, dispatch, crashes, cancel with grace, shutdown."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jobkit.errors import JobNotFound, JobStateConflict
from jobkit.models import JobState
from jobkit.runner import describe_exit
from jobkit.store import JobStore
from tests.jobkit.jobkit_helpers import (
    REPO_ROOT,
    TARGETS,
    wait_ready,
    wait_terminal,
    wait_until,
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_describe_exit() -> None:
    assert describe_exit(-9) == "worker killed by signal SIGKILL"
    assert describe_exit(-15) == "worker killed by signal SIGTERM"
    assert describe_exit(3) == "worker exited with code 3"


def test_job_succeeds_with_progress_result_and_log(store: JobStore, make_runner) -> None:
    runner = make_runner()
    runner.start()
    job = store.create("succeed", {"count": 25})
    runner.wake()
    done = wait_terminal(store, job.id)
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.progress.done == 25 and done.progress.percent == 100.0
    assert done.result == {"count": 25}
    assert done.metrics == {"epoch": 1, "loss": 0.5}
    assert done.pid is not None and done.started_at is not None
    wait_until(store, job.id, lambda _: job.id not in runner.running_job_ids())
    log = runner.log_tail(job.id)
    assert "counted 25 images" in log
    assert "hello from stdout" in log
    assert f"starting succeed job {job.id}" in log
    assert runner.log_tail(job.id, max_bytes=40).count("\n") <= 2
    assert runner.log_tail("0123abcd") == ""


def test_a_job_of_a_kind_the_runner_has_no_target_for_fails_readably(
    store: JobStore, make_runner
) -> None:
    runner = make_runner()
    runner.start()
    stray = store.create("no-such-kind", {})
    after = store.create("succeed", {"count": 1})
    runner.wake()
    failed = wait_terminal(store, stray.id)
    assert failed.state == JobState.FAILED
    assert failed.error.message == "no worker target for job kind 'no-such-kind'"
    assert wait_terminal(store, after.id).state == JobState.SUCCEEDED  # the queue goes on


def test_workers_and_their_children_run_at_lower_priority(store: JobStore, make_runner) -> None:
    runner = make_runner(nice=7)
    runner.start()
    job = store.create("report_niceness", {})
    runner.wake()
    done = wait_terminal(store, job.id)
    assert done.state == JobState.SUCCEEDED, done.error
    base = os.nice(0)
    assert done.result == {"worker": min(base + 7, 19), "child": min(base + 7, 19)}


def test_job_failed_message(store: JobStore, make_runner) -> None:
    runner = make_runner()
    runner.start()
    job = store.create("fail_readable", {})
    runner.wake()
    done = wait_terminal(store, job.id)
    assert done.state == JobState.FAILED
    assert done.error.type == "invalid_input"
    assert done.error.message == "dataset 'tiny' has no images"


def test_memory_error_is_out_of_memory(store: JobStore, make_runner) -> None:
    runner = make_runner()
    runner.start()
    job = store.create("out_of_memory", {})
    runner.wake()
    done = wait_terminal(store, job.id)
    assert done.state == JobState.FAILED
    assert done.error.type == "out_of_memory"


def test_worker_killed_by_sigkill(store: JobStore, make_runner) -> None:
    runner = make_runner()
    runner.start()
    job = store.create("sigkill_self", {})
    runner.wake()
    done = wait_terminal(store, job.id)
    assert done.state == JobState.FAILED
    assert done.error.type == "killed"
    assert done.error.message == "worker killed by signal SIGKILL"
    assert "worker killed by signal SIGKILL" in runner.log_tail(job.id)


def test_worker_exit_code_without_record(store: JobStore, make_runner) -> None:
    runner = make_runner()
    runner.start()
    job = store.create("exit_7", {})
    runner.wake()
    done = wait_terminal(store, job.id)
    assert done.state == JobState.FAILED
    assert (done.error.type, done.error.message) == ("killed", "worker exited with code 7")


def test_cancel_running_job_kills_its_children(store: JobStore, make_runner) -> None:
    runner = make_runner()
    runner.start()
    job = store.create("spawn_child", {})
    runner.wake()
    running = wait_ready(store, job.id)
    child_pid = running.metrics["child_pid"]
    assert psutil.pid_exists(child_pid) and not gone(child_pid)
    worker_pid = running.pid

    cancelling = runner.cancel(job.id)
    # Still stopping, or (a loaded machine may run the worker first) already stopped.
    assert cancelling.cancel_requested
    assert cancelling.state in (JobState.RUNNING, JobState.CANCELLED)
    done = wait_terminal(store, job.id)
    assert done.state == JobState.CANCELLED
    assert done.error.type == "cancelled"
    assert wait_gone(child_pid)
    assert wait_gone(worker_pid)
    with pytest.raises(JobStateConflict):
        runner.cancel(job.id)


def test_cancel_interrupts_an_interruptible_section_at_once(store: JobStore, make_runner) -> None:
    """Code that never polls (a model build) stops within the grace, by itself: no SIGKILL."""
    runner = make_runner(cancel_grace_s=60)
    runner.start()
    job = store.create("busy_in_setup", {})
    runner.wake()
    wait_ready(store, job.id)
    started = time.monotonic()
    runner.cancel(job.id)
    done = wait_terminal(store, job.id, timeout=30)
    wait_until(store, job.id, lambda _: job.id not in runner.running_job_ids(), timeout=30)
    assert time.monotonic() - started < 30
    assert done.state == JobState.CANCELLED and done.result is None
    log = runner.log_tail(job.id)
    assert "SIGKILL" not in log and "cancelled (stop requested)" in log


def test_leftover_group_processes_are_killed_when_worker_exits(
    store: JobStore, make_runner
) -> None:
    runner = make_runner()
    runner.start()
    job = store.create("spawn_stubborn_child", {})
    runner.wake()
    child_pid = wait_ready(store, job.id).metrics["child_pid"]
    runner.cancel(job.id)
    assert wait_terminal(store, job.id).state == JobState.CANCELLED
    # The child ignored SIGTERM and outlived the worker; the runner SIGKILLs the group.
    assert wait_gone(child_pid)


def test_job_ignoring_sigterm_is_killed_after_grace(store: JobStore, make_runner) -> None:
    runner = make_runner(cancel_grace_s=0.5)
    runner.start()
    job = store.create("ignore_sigterm", {})
    runner.wake()
    running = wait_ready(store, job.id)
    start = time.monotonic()
    runner.cancel(job.id)
    done = wait_terminal(store, job.id, timeout=5)
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 3
    assert done.state == JobState.CANCELLED
    assert "SIGKILL" in done.error.message
    assert wait_gone(running.pid)


def test_graceful_job_saves_before_cancelling(store: JobStore, make_runner, tmp_path: Path) -> None:
    runner = make_runner(cancel_grace_s=5)
    runner.start()
    checkpoint = tmp_path / "checkpoint.txt"
    job = store.create("graceful", {"checkpoint": str(checkpoint)})
    runner.wake()
    wait_ready(store, job.id)
    runner.cancel(job.id)
    done = wait_terminal(store, job.id)
    assert done.state == JobState.CANCELLED
    assert done.error.message == "cancelled (stopped after saving a checkpoint)"
    assert checkpoint.read_text() == "saved"


def test_queue_fifo_with_max_concurrent(store: JobStore, make_runner) -> None:
    runner = make_runner(max_concurrent=1)
    first = store.create("wait_for_stop", {"n": 1})
    second = store.create("wait_for_stop", {"n": 2})
    third = store.create("succeed", {"count": 1})
    runner.start()
    wait_ready(store, first.id)
    time.sleep(0.2)  # give the dispatcher a chance to (wrongly) start more
    assert store.get(second.id).state == JobState.QUEUED
    assert store.get(second.id).queue_position == 1
    assert store.get(third.id).queue_position == 2

    cancelled = runner.cancel(third.id)  # queued: cancelled at once
    assert cancelled.state == JobState.CANCELLED
    assert store.get(second.id).queue_position == 1

    runner.cancel(first.id)
    assert wait_terminal(store, first.id).state == JobState.CANCELLED
    wait_ready(store, second.id)
    assert store.get(second.id).state == JobState.RUNNING


def test_cancel_unknown_job(make_runner) -> None:
    with pytest.raises(JobNotFound):
        make_runner().cancel("0123abcd")


def test_orphans_interrupted_on_start(store: JobStore, make_runner) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    job = store.create("succeed", {})
    store.mark_running(job.id, proc.pid)
    runner = make_runner()
    assert runner.start() == [job.id]
    got = store.get(job.id)
    assert got.state == JobState.INTERRUPTED
    assert got.error.message == f"worker process {proc.pid} is gone (service restarted?)"
    # It can be retried (resumed) and then runs.
    store.reset_for_retry(job.id)
    runner.wake()
    assert wait_terminal(store, job.id).state == JobState.SUCCEEDED


def test_stop_interrupts_running_jobs(store: JobStore, make_runner) -> None:
    runner = make_runner(cancel_grace_s=0.5)
    runner.start()
    polite = store.create("wait_for_stop", {})
    stubborn = store.create("ignore_sigterm", {})
    runner.wake()
    a = wait_ready(store, polite.id)
    b = wait_ready(store, stubborn.id)
    queued = store.create("succeed", {})
    runner.stop()
    for job_id, pid in ((polite.id, a.pid), (stubborn.id, b.pid)):
        got = store.get(job_id)
        assert got.state == JobState.INTERRUPTED, got
        assert got.error.type == "interrupted"
        assert gone(pid)
    assert store.get(queued.id).state == JobState.QUEUED  # left for the next start


def test_runner_adopts_live_worker_from_previous_server(store: JobStore, make_runner) -> None:
    # A worker that survived its server (own session), run directly.
    job = store.create("wait_for_stop", {})
    db, target = str(store.db_path), TARGETS["wait_for_stop"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobkit.worker", "--db", db, "--job", job.id, "--target", target],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(store, job.id)
        runner = make_runner()
        assert runner.start() == []
        assert runner.running_job_ids() == [job.id]
        runner.cancel(job.id)
        assert worker.wait(timeout=5) == 3
        assert wait_terminal(store, job.id).state == JobState.CANCELLED
    finally:
        worker.kill()


# -- restarts (request.max_restarts) ------------------------------------------------------------


def settled(store: JobStore, job_id: str, timeout: float = 30.0):
    """The job once it succeeded, or ended and stayed ended for two runner passes."""

    def done(job) -> bool:
        if job.state == JobState.SUCCEEDED:
            return True
        if not job.state.terminal:
            return False
        time.sleep(2.5)  # a restart would have queued it again by now
        return store.get(job_id).state.terminal

    wait_until(store, job_id, done, timeout)
    return store.get(job_id)


@pytest.mark.parametrize(
    ("how", "cause"),
    [("kill", "killed: worker killed by signal SIGKILL"), ("oom", "out_of_memory: MemoryError")],
)
def test_a_job_killed_or_out_of_memory_is_restarted(store, make_runner, tmp_path, how, cause):
    runner = make_runner()
    runner.start()
    marker = tmp_path / "runs"
    job = store.create("die_once", {"marker": str(marker), "how": how, "max_restarts": 2})
    runner.wake()
    done = settled(store, job.id)
    assert done.state == JobState.SUCCEEDED, (done.error, runner.log_tail(job.id))
    assert done.result == {"runs": 2}
    assert done.restarts == 1 and len(done.restart_causes) == 1
    assert done.restart_causes == [cause]
    assert "restart 1/2 after:" in runner.log_tail(job.id)


def test_restarts_stop_at_max_restarts(store, make_runner):
    runner = make_runner()
    runner.start()
    job = store.create("sigkill_self", {"max_restarts": 2})
    runner.wake()
    done = settled(store, job.id)
    assert done.state == JobState.FAILED and done.error.type == "killed"
    assert done.restarts == 2
    assert done.restart_causes == ["killed: worker killed by signal SIGKILL"] * 2


@pytest.mark.parametrize("kind", ["fail_readable", "sigkill_self"])
def test_an_input_fault_or_a_job_that_did_not_ask_is_never_restarted(store, make_runner, kind):
    runner = make_runner()
    runner.start()
    job = store.create(kind, {"max_restarts": 3} if kind == "fail_readable" else {})
    runner.wake()
    done = settled(store, job.id)
    assert done.state == JobState.FAILED and done.restarts == 0


def test_a_cancelled_job_is_never_restarted(store, make_runner):
    runner = make_runner()
    runner.start()
    job = store.create("wait_for_stop", {"max_restarts": 3})
    runner.wake()
    wait_ready(store, job.id)
    runner.cancel(job.id)
    done = settled(store, job.id)
    assert done.state == JobState.CANCELLED and done.restarts == 0


def test_a_job_found_orphaned_at_start_resumes_if_it_asked(store, make_runner):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    asked = store.create("succeed", {"max_restarts": 1})
    store.mark_running(asked.id, proc.pid)
    plain = store.create("succeed", {"count": 3})
    store.mark_running(plain.id, proc.pid)
    runner = make_runner()
    assert set(runner.start()) == {asked.id, plain.id}
    done = settled(store, asked.id)
    assert done.state == JobState.SUCCEEDED and done.restarts == 1
    gone = f"interrupted: worker process {proc.pid} is gone (service restarted?)"
    assert done.restart_causes == [gone]
    assert store.get(plain.id).state == JobState.INTERRUPTED


def gpus(slots) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": ",".join(slot.removeprefix("gpu") for slot in slots)}


def test_each_job_holds_its_device_slots_and_sees_only_them(store: JobStore, make_runner) -> None:
    runner = make_runner(max_concurrent=3, slots=["gpu0", "gpu1", "gpu2"], slot_env=gpus)
    runner.start()
    two = store.create("report_devices", {"devices": 2})
    one = store.create("report_devices", {})
    waiting = store.create("report_devices", {"devices": 2})  # one slot free: it waits
    behind = store.create("report_devices", {})  # queue order: it waits behind it
    runner.wake()
    assert wait_ready(store, two.id).metrics["visible"] == "0,1"
    assert wait_ready(store, one.id).metrics["visible"] == "2"
    assert store.get(two.id).devices == ["gpu0", "gpu1"] and store.get(one.id).devices == ["gpu2"]
    time.sleep(0.5)
    assert [store.get(j.id).state for j in (waiting, behind)] == [JobState.QUEUED] * 2
    assert runner.free_slots() == [] and runner.spare_slots() == 0

    runner.cancel(two.id)  # its slots free once its worker is gone
    assert wait_ready(store, waiting.id).metrics["visible"] == "0,1"
    assert store.get(behind.id).state == JobState.QUEUED
    runner.cancel(one.id)
    assert wait_ready(store, behind.id).metrics["visible"] == "2"
    assert wait_terminal(store, two.id).devices == ["gpu0", "gpu1"]  # where it ran, kept


def test_a_job_asking_for_more_devices_than_there_are_fails_saying_so(store, make_runner):
    runner = make_runner(max_concurrent=2, slots=["gpu0", "gpu1"], slot_env=gpus)
    runner.start()
    job = store.create("report_devices", {"devices": 3})
    runner.wake()
    failed = wait_terminal(store, job.id)
    assert failed.state == JobState.FAILED and failed.error.type == "invalid_input"
    assert "asks for 3 devices; this service has 2" in failed.error.message


def test_spare_slots_count_what_the_queue_will_take(store: JobStore, make_runner) -> None:
    runner = make_runner(max_concurrent=2)  # no slots: jobs are counted
    assert runner.spare_slots() == 2
    store.create("succeed", {"count": 1})  # queued, the runner not started
    assert runner.spare_slots() == 1
    slotted = make_runner(max_concurrent=4, slots=["a", "b", "c", "d"])
    store.create("succeed", {"count": 1, "devices": 2})
    assert slotted.spare_slots() == 1  # 4 free, 1 + 2 wanted by the queue
