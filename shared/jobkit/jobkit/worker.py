"""What runs inside a job's worker process.

The runner starts ``python -m jobkit.worker --db DB --job ID --target module:function``. The
worker installs a SIGTERM handler (which sets ``JobContext.should_stop``; inside a
``with ctx.interruptible():`` section it also raises ``JobCancelled`` at once), calls
``function(ctx)`` and records the final state itself:

- returns normally                       -> succeeded
- ``JobCancelled``, or returns after a stop request -> cancelled (interrupted if the SIGTERM
  came from a service shutdown rather than a cancel request)
- ``JobFailed(message, type)``            -> failed with that type and message
- ``MemoryError``, ``*ResourceExhausted*`` or "out of memory"/"OOM" in the message
                                         -> failed, type "out_of_memory"
- any other exception                    -> failed, type "failed", "Class: message"; the
                                            traceback goes to the job log

Exit status: 0 succeeded, 1 failed, 2 bad arguments or unknown job, 3 cancelled/interrupted,
4 the end could not be recorded (the job store cannot be written: the volume is full, say); the
runner then records it, as ``out_of_space``, once the store takes writes again.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobkit.context import Context
from jobkit.errors import JobCancelled, JobFailed, is_out_of_memory, is_out_of_space
from jobkit.models import JobError, JobState
from jobkit.store import JobStore

PROGRESS_INTERVAL_S = 0.5
EXIT_CODES = {
    JobState.SUCCEEDED: 0,
    JobState.FAILED: 1,
    JobState.CANCELLED: 3,
    JobState.INTERRUPTED: 3,
}
EXIT_UNRECORDED = 4


class EndNotRecorded(RuntimeError):
    """The job ended but its end could not be written to the job store."""


JobFunction = Callable[["JobContext"], None]


class JobContext(Context):
    """Handed to the job function: the request, progress/metrics/result reporting, stop flag.

    Progress and metrics writes are throttled to one every ``PROGRESS_INTERVAL_S``; the last
    value is always written (on a phase change, a result, and when the job ends).
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        request: dict[str, Any],
        log: logging.Logger,
        *,
        stop_event: threading.Event | None = None,
        interval_s: float = PROGRESS_INTERVAL_S,
    ) -> None:
        self.job_id = job_id
        self.request = request
        self.log = log
        self._store = store
        self._stop = stop_event or threading.Event()
        self._interval = interval_s
        self._last_write = 0.0
        self._pending_progress: tuple[int, int | None] | None = None
        self._pending_metrics: dict[str, Any] = {}
        self._total: int | None = None

    # -- reporting -------------------------------------------------------------------------

    def _start_phase(self, name: str, total: int | None, unit: str, metrics: dict | None) -> None:
        self.flush()
        self._total = total
        self._store.set_phase(self.job_id, name, total, unit, metrics)

    def progress(self, done: int, total: int | None = None) -> None:
        """Report ``done`` items of the phase (throttled; the final ``done == total`` is kept)."""
        if total is not None:
            self._total = total
        self._pending_progress = (done, total)
        final = self._total is not None and done >= self._total
        self._maybe_write(force=final)

    def metrics(self, values: dict[str, Any]) -> None:
        """Merge free-form metrics (e.g. ``{"epoch": 3, "loss": 0.41}``), throttled."""
        self._pending_metrics.update(values)
        self._maybe_write()

    def result(self, values: dict[str, Any]) -> None:
        """Record what the job produced (written at once)."""
        self.flush()
        self._store.set_result(self.job_id, values)

    def flush(self) -> None:
        """Write pending progress and metrics now."""
        if self._pending_progress is not None:
            done, total = self._pending_progress
            self._pending_progress = None
            self._store.set_progress(self.job_id, done, total)
        if self._pending_metrics:
            metrics, self._pending_metrics = self._pending_metrics, {}
            self._store.set_metrics(self.job_id, metrics)
        self._last_write = time.monotonic()

    def _maybe_write(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_write >= self._interval:
            self.flush()


def load_target(target: str) -> JobFunction:
    """Import ``"package.module:function"``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target must look like 'module:function', got {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"target {target!r} is not callable")
    return obj


def classify_exception(exc: BaseException) -> JobError:
    """The ``JobError`` recorded for an exception a job function raised."""
    if isinstance(exc, JobFailed):
        return JobError(type=exc.type, message=exc.message)
    name = type(exc).__name__
    text = str(exc)
    message = f"{name}: {text}" if text else name
    if is_out_of_space(exc):
        return JobError(
            type="out_of_space",
            message=f"the volume is full ({text or name}): free space on it, then resume the "
            "job (or post its request again)",
        )
    if is_out_of_memory(exc):
        return JobError(type="out_of_memory", message=message)
    return JobError(type="failed", message=message)


def _stopped_error(store: JobStore, job_id: str, reason: str) -> tuple[JobState, JobError]:
    job = store.get(job_id)
    if job is None or job.cancel_requested:
        return JobState.CANCELLED, JobError(type="cancelled", message=f"cancelled ({reason})")
    return JobState.INTERRUPTED, JobError(
        type="interrupted", message=f"interrupted by SIGTERM (service shutdown?) ({reason})"
    )


def execute(
    store: JobStore,
    job_id: str,
    fn: JobFunction | str,
    *,
    stop_event: threading.Event | None = None,
    log: logging.Logger | None = None,
) -> JobState:
    """Run ``fn`` for the job and record its final state; returns that state.

    Installs no signal handlers (``main`` does), so tests can call it in-process. A job that
    is already terminal is not run (its state is returned).
    """
    log = log or logging.getLogger(f"jobkit.job.{job_id}")
    job = store.get(job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    if job.state.terminal:
        log.warning("job %s is already %s; not running it", job_id, job.state)
        return job.state
    store.mark_running(job_id, os.getpid())
    stop_event = stop_event or threading.Event()
    if job.cancel_requested:
        stop_event.set()
    ctx = JobContext(
        store,
        job_id,
        job.request,
        log,
        stop_event=stop_event,
    )
    state, error = JobState.SUCCEEDED, None
    try:
        if isinstance(fn, str):
            fn = load_target(fn)
        fn(ctx)
        if ctx.should_stop:
            state, error = _stopped_error(store, job_id, "stopped on request")
    except JobCancelled as exc:
        state, error = _stopped_error(store, job_id, str(exc) or "JobCancelled")
    except JobFailed as exc:
        state, error = JobState.FAILED, classify_exception(exc)
        log.error("job failed (%s): %s", exc.type, exc.message)
    except (Exception, KeyboardInterrupt) as exc:
        state, error = JobState.FAILED, classify_exception(exc)
        log.exception("job failed: %s", error.message)
    finally:
        try:
            ctx.flush()
        except Exception:
            log.exception("could not write the last progress")
    try:
        store.finish(job_id, state, error)
    except (sqlite3.Error, OSError) as exc:
        log.error("job %s ended %s but that could not be recorded: %s", job_id, state, exc)
        raise EndNotRecorded(str(exc)) from exc
    log.info("job %s %s%s", job_id, state, f": {error.message}" if error else "")
    return state


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m jobkit.worker``."""
    parser = argparse.ArgumentParser(prog="python -m jobkit.worker", description=__doc__)
    parser.add_argument("--db", required=True, type=Path, help="job database (SQLite file)")
    parser.add_argument("--job", required=True, help="job id")
    parser.add_argument("--target", required=True, help="job function, 'module:function'")
    parser.add_argument(
        "--nice", type=int, default=0, help="lower this process's (and its children's) priority"
    )
    args = parser.parse_args(argv)
    if args.nice > 0:
        # The service shares the machine with its workers: it answers status calls first.
        os.nice(args.nice)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_event.set())
    store = JobStore(args.db)
    try:
        state = execute(store, args.job, args.target, stop_event=stop_event)
    except LookupError as exc:
        logging.getLogger("jobkit.worker").error("%s", exc)
        return 2
    except (EndNotRecorded, sqlite3.Error) as exc:  # the store cannot be written at all
        logging.getLogger("jobkit.worker").error("the job store cannot be written: %s", exc)
        return EXIT_UNRECORDED
    return EXIT_CODES[state]


__all__ = [
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "classify_exception",
    "execute",
    "load_target",
    "main",
]

if __name__ == "__main__":
    # Run the canonical module (not this __main__ copy) so JobContext is jobkit.worker.JobContext.
    from jobkit.worker import main as _main

    sys.exit(_main())
