"""Job functions the jobkit tests run in worker processes (imported via PYTHONPATH)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobkit.worker import JobCancelled, JobContext, JobFailed


def _ready(ctx: JobContext, **extra: object) -> None:
    """Tell the test the job is past its setup (SIGTERM handler in place, children started)."""
    ctx.metrics({"ready": True, **extra})
    ctx.flush()


def succeed(ctx: JobContext) -> None:
    count = int(ctx.request.get("count", 10))
    ctx.phase("count", total=count, unit="images")
    for i in range(1, count + 1):
        ctx.progress(i)
    ctx.metrics({"epoch": 1, "loss": 0.5})
    ctx.log.info("counted %d images", count)
    print("hello from stdout", flush=True)
    ctx.result({"count": count})


def report_niceness(ctx: JobContext) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.nice(0))"], capture_output=True, text=True
    )
    ctx.result({"worker": os.nice(0), "child": int(child.stdout)})


def fail_readable(ctx: JobContext) -> None:
    raise JobFailed("dataset 'tiny' has no images", type="invalid_input")


def out_of_memory(ctx: JobContext) -> None:
    raise MemoryError()


class ResourceExhaustedError(Exception):
    """Named like TensorFlow's OOM error."""


def resource_exhausted(ctx: JobContext) -> None:
    raise ResourceExhaustedError("OOM when allocating tensor with shape [4096, 4096]")


def crash(ctx: JobContext) -> None:
    raise ValueError("boom")


def sigkill_self(ctx: JobContext) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exit_7(ctx: JobContext) -> None:
    os._exit(7)


def spawn_child(ctx: JobContext) -> None:
    """Start `sleep 60` and wait; stops (cancelled) when asked."""
    child = subprocess.Popen(["sleep", "60"])
    _ready(ctx, child_pid=child.pid)
    while True:
        ctx.check_stop()
        time.sleep(0.02)


def spawn_stubborn_child(ctx: JobContext) -> None:
    """Start a child that ignores SIGTERM, then stop (cancelled) leaving it behind."""
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    _ready(ctx, child_pid=child.pid)
    while not ctx.should_stop:
        time.sleep(0.02)
    raise JobCancelled("left a child behind")


def ignore_sigterm(ctx: JobContext) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _ready(ctx)
    while True:
        time.sleep(0.02)


def graceful(ctx: JobContext) -> None:
    """On stop: write a 'checkpoint' file named by the request, then raise JobCancelled."""
    _ready(ctx)
    while not ctx.should_stop:
        time.sleep(0.02)
    Path(ctx.request["checkpoint"]).write_text("saved")
    raise JobCancelled("stopped after saving a checkpoint")


def wait_for_stop(ctx: JobContext) -> None:
    """Runs until stopped, then returns normally."""
    _ready(ctx)
    while not ctx.should_stop:
        time.sleep(0.02)


def busy_in_setup(ctx: JobContext) -> None:
    """Busy in code that never polls the stop flag, inside an interruptible section."""
    with ctx.interruptible():
        _ready(ctx)
        for _ in range(600):
            time.sleep(0.1)
    ctx.result({"finished": True})


def linger_after_the_end(ctx: JobContext) -> None:
    """Succeeds, then its process takes ``linger_s`` to exit (as a worker tearing down a GPU
    runtime does), writing the moment it exits to the file ``exited``."""
    import atexit

    def linger() -> None:
        time.sleep(float(ctx.request["linger_s"]))
        Path(ctx.request["exited"]).write_text(repr(time.time()))

    atexit.register(linger)
    ctx.result({"done": True})


def disk_full_at_the_end(ctx: JobContext) -> None:
    """Fails with ENOSPC, and the job store of this worker cannot record it (as on a full
    volume): the worker exits with EXIT_UNRECORDED."""
    import errno
    import sqlite3

    from jobkit.store import JobStore

    def full(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    JobStore.finish = full  # in this worker process only
    raise OSError(errno.ENOSPC, "No space left on device", "shard.tmp")


def no_space_while_working(ctx: JobContext) -> None:
    import errno

    raise OSError(errno.ENOSPC, "No space left on device", "shard-00003.tmp")


def die_once(ctx: JobContext) -> None:
    """SIGKILLs itself on its first run (``how``: "kill") or fails out of memory ("oom"), then
    succeeds; each run is counted in the file ``marker``."""
    marker = Path(ctx.request["marker"])
    runs = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(runs + 1))
    if runs == 0:
        if ctx.request.get("how") == "oom":
            raise MemoryError()
        os.kill(os.getpid(), signal.SIGKILL)
    ctx.result({"runs": runs + 1})


def fill_the_volume(ctx: JobContext) -> None:
    """Writes the file ``path`` until its volume is full, keeps it, and fails as the write did
    (ENOSPC): a job whose volume fills under it."""
    from tests.utils.full_volume import fill

    _ready(ctx)
    fill(Path(ctx.request["path"]))
    fd = os.open(ctx.request["path"], os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, bytes(4096))  # the job's next write: No space left on device
    finally:
        os.close(fd)


def report_devices(ctx: JobContext) -> None:
    """Reports the devices its environment shows, then runs until stopped."""
    _ready(ctx, visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    while not ctx.should_stop:
        time.sleep(0.02)
