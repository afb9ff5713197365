"""Starts, watches and stops worker processes for queued jobs (used by the server process).

One background thread (not the asyncio loop) does all the work: it starts queued jobs FIFO
while fewer than ``max_concurrent`` workers exist (a worker counts until its process has exited
and been reaped, so a cancelled one still saving never overlaps the next), reaps workers that
exited, records the end of workers that died without recording it, and SIGKILLs cancelled
workers after the grace.

**A full volume.** The store keeps room for itself on the volume (:mod:`jobkit.reserve`; the
runner rebuilds it at start and about every second once the volume has room), so a worker that
fails for lack of space records its own end, and the runner records the end of one that could
not. A store that cannot be written at all (its reserve used up, a read-only volume) never stops
the runner: an end it cannot record is kept and written on a later pass, once the store takes
writes again; a worker that could not record its own end exits with ``EXIT_UNRECORDED`` and its
job ends ``out_of_space``. Until then the runner says what it knows: :meth:`JobRunner.present`
shows such a job in the state it will be recorded in, with ``unrecorded_end`` saying why it is
not recorded yet; a cancel of it is refused with that state, and ``unrecorded_ends()`` feeds
``/readyz``.

Each worker runs in its own session / process group (``start_new_session=True``) so that
cancel and shutdown signal the worker and every process it started; once a worker exits,
whatever is left of its group is killed.

**Restarts.** A job whose request has ``max_restarts: N`` is put back in the queue by the runner
itself, up to N times, when it ends for a reason that is not its request's (:data:`RESTARTABLE`:
its worker killed by a signal, out of memory, or interrupted because the service stopped or
died); each restart and its cause are in the job's ``restarts``/``restart_causes`` and its log.
A job the service found running when it started again (its worker gone) or had interrupted at
shutdown is restarted when the runner starts. Input faults (``invalid_input``, ``data_error``),
a full volume and cancels are never restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from datavolume.layout import DataRoot
from jobkit.errors import JobStateConflict, QueueFull, ResourceBusy, VolumeNotWritable
from jobkit.models import JobError, JobPublic, JobState, UnrecordedEnd
from jobkit.reserve import RESERVE_BYTES, SPARE_BYTES, for_lack_of_space
from jobkit.store import JobStore, pid_alive
from jobkit.worker import EXIT_UNRECORDED

logger = logging.getLogger("jobkit.runner")

LOG_TAIL_BYTES = 64 * 1024
#: How a job may end and be restarted (``max_restarts``): none of these is its request's fault.
RESTARTABLE = frozenset({"killed", "out_of_memory", "interrupted"})
_POLL_S = 0.1
_IDLE_POLL_S = 1.0
#: How often the dispatcher checks the store's reserve (two small reads when it is whole).
_RESERVE_CHECK_S = 1.0


@dataclass
class _Child:
    """A worker we watch: our own child (``proc``) or one adopted from a previous server."""

    job_id: str
    pid: int
    proc: subprocess.Popen[bytes] | None
    started_at: float | None = None
    kill_at: float | None = None  # monotonic deadline for SIGKILL after a cancel
    sigkilled: bool = False
    exited: str | None = None  # how it ended, once reaped (kept while the end is unrecorded)
    slots: tuple[str, ...] = ()  # the device slots it holds until it is reaped
    end_logged: bool = False  # the end's line is in the job's log (written once)

    def alive(self) -> bool:
        if self.exited is not None:
            return False
        if self.proc is not None:
            return self.proc.poll() is None
        return pid_alive(self.pid, self.started_at)


@dataclass(frozen=True)
class _Unrecorded:
    """An end the runner knows of but could not write to the store yet."""

    state: JobState
    error: JobError
    end: UnrecordedEnd


def devices_wanted(job: JobPublic) -> int:
    """The request's ``devices``: how many device slots the job takes (1 when absent)."""
    value = job.request.get("devices", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def restarts_allowed(job: JobPublic) -> int:
    """The request's ``max_restarts`` (0 when absent or not a positive int)."""
    value = job.request.get("max_restarts", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def describe_exit(returncode: int) -> str:
    """Describe a worker's exit: 'worker killed by signal SIGKILL', 'worker exited with code 1'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker killed by signal {name}"
    return f"worker exited with code {returncode}"


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False if the group is gone."""
    if pgid <= 1 or pgid == os.getpgrp():
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        logger.warning("no permission to signal process group %s", pgid)
        return False
    return True


def kill_group(pgid: int, wait_s: float = 2.0) -> list[psutil.Process]:
    """SIGKILL what is left of process group ``pgid`` and wait until it is gone.

    Returns the processes still alive after ``wait_s`` (normally none).
    """
    if not signal_group(pgid, signal.SIGKILL):
        return []
    deadline = time.monotonic() + wait_s
    while True:
        left = group_members(pgid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.01)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.astimezone(UTC).timestamp()


class JobRunner:
    """Runs queued jobs of the ``targets`` kinds in worker processes.

    targets: job kind -> ``"module:function"`` (a ``fn(ctx: JobContext) -> None``).
    log_dir: each job's stdout/stderr and log go to ``<log_dir>/<job_id>.log``.
    env: extra environment variables for the workers (on top of this process's environment).
    nice: niceness added to each worker (and so its child processes), so that the server's
    status calls win the CPU over the job's work.

    max_queued: refuse new jobs (``admit``) while this many wait (None: no limit).
    volume, min_free_bytes: refuse new jobs while the volume cannot take writes or has less
    free space than that.
    reserve_bytes: the room the store keeps for itself (``JobStore.keep_reserve``), so that a
    job's end can be recorded on a full volume; 0 keeps none.
    slots: the devices jobs run on (e.g. GPU indices), each held by one job at a time: a job
    takes as many as its request's ``devices`` (1 when absent), from the free ones, and its
    worker gets ``slot_env(its slots)`` in its environment (``CUDA_VISIBLE_DEVICES``, say).
    Jobs start in queue order: one that needs more slots than are free waits, and so do those
    behind it. None: no slots, jobs are only counted (``max_concurrent``).

    Lifecycle: ``start()`` at service startup, ``admit()`` then ``wake()`` around creating a
    job, ``cancel(id)`` from the cancel route, ``stop()`` at shutdown.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        targets: Mapping[str, str],
        log_dir: Path,
        max_concurrent: int = 1,
        cancel_grace_s: float = 30.0,
        env: Mapping[str, str] | None = None,
        nice: int = 0,
        max_queued: int | None = None,
        volume: DataRoot | None = None,
        min_free_bytes: int = 0,
        reserve_bytes: int = RESERVE_BYTES,
        slots: Sequence[str] | None = None,
        slot_env: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if slots is not None and (not slots or len(set(slots)) != len(slots)):
            raise ValueError(f"slots must be distinct names, at least one: {slots!r}")
        self.store = store
        self.targets = dict(targets)
        self.log_dir = Path(log_dir)
        self.max_concurrent = max_concurrent
        self.cancel_grace_s = cancel_grace_s
        self.nice = nice
        self.max_queued = max_queued
        self.volume = volume
        self.min_free_bytes = min_free_bytes
        self.reserve_bytes = reserve_bytes
        self.slots = None if slots is None else tuple(slots)
        self.slot_env = slot_env or (lambda held: {})
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self._children: dict[str, _Child] = {}
        self._lock = threading.RLock()
        # Ends known but not recorded: read by the routes without waiting for the dispatcher.
        self._unrecorded: dict[str, _Unrecorded] = {}
        self._unrecorded_lock = threading.Lock()
        self._reserve_checked_at = float("-inf")
        self._reserve_whole: bool | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._orphans_checked = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Mark orphaned running jobs interrupted, adopt live ones, start the dispatcher.

        Returns the ids of the jobs marked interrupted.
        """
        if self._thread is not None:
            raise RuntimeError("runner already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._keep_reserve()
        interrupted = self._mark_orphans()
        with self._lock:
            for job in self.store.list(limit=1_000_000, state=JobState.RUNNING):
                if job.pid and job.id not in self._children:
                    # The worker outlived the previous server: watch it until it ends.
                    logger.info("adopting running job %s (pid %s)", job.id, job.pid)
                    self._children[job.id] = _Child(
                        job.id, job.pid, None, started_at=_epoch(job.started_at),
                        slots=tuple(job.devices),
                    )  # fmt: skip
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="jobkit-runner", daemon=True)
        self._thread.start()
        return interrupted

    def _mark_orphans(self) -> list[str]:
        """Running jobs whose worker is gone end ``interrupted`` (at start-up; retried on every
        pass while the store cannot be written)."""
        try:
            interrupted = self.store.mark_orphans_interrupted()
        except sqlite3.Error as exc:
            logger.error("cannot record jobs whose worker is gone yet (%s); retrying", exc)
            with contextlib.suppress(sqlite3.Error):
                for job_id, error in self.store.orphans().items():
                    self._note_unrecorded(job_id, JobState.INTERRUPTED, error, error.message, exc)
            return []
        self._orphans_checked = True
        for job_id in interrupted:
            self._forget_unrecorded(job_id)
            logger.warning("job %s was running when the service stopped: interrupted", job_id)
        # Those, and those a shutdown interrupted, resume by themselves if they asked to.
        for job in self.store.list(limit=1_000_000, state=JobState.INTERRUPTED):
            self._maybe_restart(job.id)
        return interrupted

    def _maybe_restart(self, job_id: str) -> bool:
        """Queue the job again if it ended for a reason in :data:`RESTARTABLE` and its request
        allows another restart; returns whether it did."""
        job = self.store.get(job_id)
        if self._stopping or job is None or job.error is None:
            return False
        if job.state not in (JobState.FAILED, JobState.INTERRUPTED):
            return False
        allowed = restarts_allowed(job)
        if job.error.type not in RESTARTABLE or job.restarts >= allowed:
            return False
        cause = f"{job.error.type}: {job.error.message}" if job.error.message else job.error.type
        try:
            self.store.reset_for_retry(job_id, restart_cause=cause)
        except (JobStateConflict, ResourceBusy) as exc:
            logger.warning("job %s: not restarted: %s", job_id, exc)
            return False
        self._append_log(job_id, f"restart {job.restarts + 1}/{allowed} after: {cause}")
        logger.warning("job %s restarted (%d/%d) after: %s", job_id, job.restarts + 1,
                       allowed, cause)  # fmt: skip
        self.wake()
        return True

    def wake(self) -> None:
        """Tell the dispatcher to look at the queue now (call after creating a job)."""
        self._wake.set()

    def admit(self) -> None:
        """Raise ``QueueFull`` or ``VolumeNotWritable`` if a new job must not be queued now."""
        if self.max_queued is not None:
            queued = self.store.count_queued()
            if queued >= self.max_queued:
                raise QueueFull(queued, self.max_queued)
        reason = self.volume_problem()
        if reason is not None:
            raise VolumeNotWritable(f"{reason}: a new job would fail; free space on it first")

    def volume_problem(self) -> str | None:
        """Why the volume cannot take a job's writes now, or None (no volume: never)."""
        if self.volume is None:
            return None
        return self.volume.unwritable_reason(self.min_free_bytes)

    # -- what the runner knows and the store does not say yet ------------------------------

    def present(self, job: JobPublic) -> JobPublic:
        """``job`` as this service knows it: a job whose worker has ended but whose end the
        store could not record yet shows the state and error the runner will record, with
        ``unrecorded_end`` saying how the worker ended and why that is not recorded. Every
        route that shows a job shows it through this."""
        if job.state.terminal:
            return job
        with self._unrecorded_lock:
            pending = self._unrecorded.get(job.id)
        if pending is None:
            return job
        return job.model_copy(
            update={"state": pending.state, "error": pending.error, "unrecorded_end": pending.end}
        )

    def list_jobs(
        self, limit: int = 100, *, state: JobState | str | None = None, tag: str | None = None
    ) -> list[JobPublic]:
        """``JobStore.list`` through :meth:`present`, filtered by the state shown: a job whose
        end is not recorded yet is listed under the state it will be recorded in."""
        jobs = [self.present(job) for job in self.store.list(limit, state=state, tag=tag)]
        if state is None:
            return jobs
        state = JobState(state)
        jobs = [job for job in jobs if job.state == state]
        listed = {job.id for job in jobs}
        with self._unrecorded_lock:
            ended = [job_id for job_id, end in self._unrecorded.items() if end.state == state]
        for job_id in ended:
            job = self.store.get(job_id)
            if job is None or job.id in listed:
                continue
            job = self.present(job)
            if job.state == state and (tag is None or tag in (job.request.get("tags") or [])):
                jobs.append(job)
        jobs.sort(key=lambda job: job.created_at, reverse=True)  # stable: the store's order
        return jobs[: max(0, int(limit))]

    def unrecorded_ends(self) -> dict[str, UnrecordedEnd]:
        """The jobs whose worker has ended but whose end is not recorded yet, by id."""
        with self._unrecorded_lock:
            return {job_id: end.end for job_id, end in self._unrecorded.items()}

    def unrecorded_problem(self) -> str | None:
        """Why the service is not ready while such ends wait, or None: "1 job has ended (failed)
        but its end is not recorded yet: the job store cannot be written: ..." (no job ids:
        ``/readyz`` answers without a token)."""
        with self._unrecorded_lock:
            ends = list(self._unrecorded.values())
        if not ends:
            return None
        states = ", ".join(sorted({str(end.state) for end in ends}))
        jobs, its = ("1 job has", "its") if len(ends) == 1 else (f"{len(ends)} jobs have", "their")
        return f"{jobs} ended ({states}) but {its} end is not recorded yet: {ends[-1].end.reason}"

    def _note_unrecorded(
        self, job_id: str, state: JobState, error: JobError, worker: str, exc: Exception
    ) -> None:
        """Remember an end the store refused; the first one noted is the one recorded."""
        reason = f"the job store cannot be written: {exc}"
        with self._unrecorded_lock:
            known = self._unrecorded.get(job_id)
            if known is None:
                end = UnrecordedEnd(worker=worker, reason=reason, since=datetime.now(UTC))
                self._unrecorded[job_id] = _Unrecorded(state, error, end)
            elif known.end.reason != reason:
                end = known.end.model_copy(update={"reason": reason})
                self._unrecorded[job_id] = _Unrecorded(known.state, known.error, end)

    def _forget_unrecorded(self, job_id: str) -> None:
        with self._unrecorded_lock:
            self._unrecorded.pop(job_id, None)

    def _refuse_cancel_if_ended(self, job: JobPublic) -> None:
        if not job.state.terminal:
            return
        detail = f"job {job.id} is already {job.state}"
        if job.unrecorded_end is not None:
            kind = f" ({job.error.type})" if job.error else ""
            detail = (
                f"job {job.id} has already ended: {job.state}{kind}, {job.unrecorded_end.worker}"
                f"; its end is not recorded yet ({job.unrecorded_end.reason})"
            )
        raise JobStateConflict(job.id, job.state, detail)

    # -- the store's reserve -----------------------------------------------------------------

    def _keep_reserve(self) -> None:
        """Rebuild the store's reserve if it was used and the volume has room again (at start,
        then about every ``_RESERVE_CHECK_S`` from the dispatcher)."""
        if self.reserve_bytes <= 0:
            return
        self._reserve_checked_at = time.monotonic()
        try:
            whole = self.store.keep_reserve(self.reserve_bytes, SPARE_BYTES)
        except (sqlite3.Error, OSError) as exc:
            logger.debug("cannot rebuild the job store's reserve now (%s)", exc)
            whole = False
        if whole != self._reserve_whole:
            if whole:
                logger.info("the job store's reserve is whole (%d bytes)", self.reserve_bytes)
            else:
                with contextlib.suppress(sqlite3.Error, OSError):
                    logger.warning(
                        "the job store's reserve is not whole (%s); it is rebuilt once the volume "
                        "has room",
                        self.store.reserve(),
                    )
            self._reserve_whole = whole

    def stop(self) -> None:
        """Shut down: stop dispatching, SIGTERM running workers, SIGKILL them after the grace.

        Jobs they leave unfinished end as interrupted (or cancelled if a cancel was requested);
        queued jobs stay queued for the next start.
        """
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            children = list(self._children.values())
            for child in children:
                if child.alive():
                    signal_group(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.cancel_grace_s
            while any(c.alive() for c in children) and time.monotonic() < deadline:
                time.sleep(0.02)
            for child in children:
                if child.alive():
                    child.sigkilled = True
                    signal_group(child.pid, signal.SIGKILL)
                if child.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.proc.wait(timeout=5)
                try:
                    self._on_exit(child)
                except sqlite3.Error as exc:  # the next start marks it interrupted
                    logger.error("job %s: cannot record its end (%s)", child.job_id, exc)

    # -- cancel / logs ---------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobPublic:
        """Cancel a job and return it.

        Queued: cancelled at once. Running: flagged ``cancel_requested`` and its process group
        gets SIGTERM (SIGKILL after ``cancel_grace_s``); the job becomes cancelled when the
        worker ends. Raises ``JobNotFound``, or ``JobStateConflict`` if it already finished.
        """
        # An end known but not recorded is answered at once, without waiting for the dispatcher.
        self._refuse_cancel_if_ended(self.present(self.store.require(job_id)))
        with self._lock:
            job = self.present(self.store.require(job_id))
            self._refuse_cancel_if_ended(job)
            if job.state == JobState.QUEUED:
                self.store.finish(
                    job_id, JobState.CANCELLED, JobError(type="cancelled", message="cancelled")
                )
                return self.store.require(job_id)
            self.store.request_cancel(job_id)
            child = self._children.get(job_id)
            if child is None:
                started = _epoch(job.started_at)
                if not pid_alive(job.pid, started):
                    self.store.finish(
                        job_id,
                        JobState.CANCELLED,
                        JobError(type="cancelled", message=f"worker process {job.pid} is gone"),
                    )
                    return self.store.require(job_id)
                assert job.pid is not None
                child = _Child(job_id, job.pid, None, started_at=started)
                self._children[job_id] = child
            if child.kill_at is None:
                logger.info("cancelling job %s: SIGTERM to process group %s", job_id, child.pid)
                signal_group(child.pid, signal.SIGTERM)
                child.kill_at = time.monotonic() + self.cancel_grace_s
            self._wake.set()
            return self.store.require(job_id)

    def log_path(self, job_id: str) -> Path:
        """``<log_dir>/<job_id>.log``."""
        if not job_id.isalnum():
            raise ValueError(f"bad job id {job_id!r}")
        return self.log_dir / f"{job_id}.log"

    def log_tail(self, job_id: str, max_bytes: int = LOG_TAIL_BYTES) -> str:
        """The last ``max_bytes`` of the job's log (starting at a line boundary); "" if none."""
        path = self.log_path(job_id)
        try:
            with path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size > max_bytes:
                    f.seek(size - max_bytes)
                    data = f.read()
                    newline = data.find(b"\n")
                    if 0 <= newline < len(data) - 1:
                        data = data[newline + 1 :]
                else:
                    f.seek(0)
                    data = f.read()
        except FileNotFoundError:
            return ""
        return data.decode("utf-8", errors="replace")

    def free_slots(self) -> list[str]:
        """The slots no worker holds, in order (empty without slots)."""
        with self._lock:
            held = {slot for child in self._children.values() for slot in child.slots}
        return [slot for slot in self.slots or () if slot not in held]

    def spare_slots(self) -> int:
        """How many more slots a new job could have now: the free ones less what the queued
        jobs will take (without slots: ``max_concurrent`` less the jobs running and queued)."""
        queued = self.store.list(limit=1_000_000, state=JobState.QUEUED)
        if self.slots is None:
            with self._lock:
                running = len(self._children)
            return max(0, self.max_concurrent - running - len(queued))
        wanted = sum(devices_wanted(job) for job in queued)
        with self._lock:
            room = self.max_concurrent - len(self._children) - len(queued)
        return max(0, min(len(self.free_slots()) - wanted, room * len(self.slots)))

    def running_job_ids(self) -> list[str]:
        """Ids of the jobs whose workers this runner watches."""
        with self._lock:
            return list(self._children)

    # -- dispatcher thread -----------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                with self._lock:
                    if not self._orphans_checked:
                        self._mark_orphans()
                    self._reap()
                    if time.monotonic() - self._reserve_checked_at >= _RESERVE_CHECK_S:
                        self._keep_reserve()
                    if not self._stopping:
                        self._dispatch()
            except Exception:
                logger.exception("job runner iteration failed")
            timeout = _POLL_S if self._children else _IDLE_POLL_S
            self._wake.wait(timeout)

    def _reap(self) -> None:
        now = time.monotonic()
        for child in list(self._children.values()):
            if not child.alive():
                try:
                    self._on_exit(child)
                except sqlite3.Error as exc:  # the store cannot be written: retry next pass
                    logger.error(
                        "job %s: cannot record its end yet (%s); retrying", child.job_id, exc
                    )
            elif child.kill_at is not None and now >= child.kill_at:
                logger.warning(
                    "job %s did not stop within %.3g s: SIGKILL", child.job_id, self.cancel_grace_s
                )
                child.sigkilled = True
                child.kill_at = None
                signal_group(child.pid, signal.SIGKILL)

    def _dispatch(self) -> None:
        # A worker counts until its process is gone: the next job never starts beside it.
        while (
            len(self._children) < self.max_concurrent
            and self.store.count_running() < self.max_concurrent
        ):
            job = self.store.next_queued()
            if job is None:
                return
            held: tuple[str, ...] = ()
            if self.slots is not None:
                wanted, free = devices_wanted(job), self.free_slots()
                if wanted > len(self.slots):
                    self.store.finish(job.id, JobState.FAILED, JobError(
                        type="invalid_input",
                        message=f"the job asks for {wanted} devices; this service has "
                        f"{len(self.slots)}"))  # fmt: skip
                    continue
                if wanted > len(free):
                    return  # it waits for its slots; the jobs behind it wait behind it
                held = tuple(free[:wanted])
            self._launch(job, held)

    def _launch(self, job: JobPublic, slots: tuple[str, ...] = ()) -> None:
        target = self.targets.get(job.kind)
        if target is None:  # a job this service does not run (a database shared by mistake)
            self.store.finish(
                job.id,
                JobState.FAILED,
                JobError(type="failed", message=f"no worker target for job kind {job.kind!r}"),
            )
            return
        log_path = self.log_path(job.id)
        cmd = [
            sys.executable,
            "-m",
            "jobkit.worker",
            "--db",
            str(self.store.db_path),
            "--job",
            job.id,
            "--target",
            target,
            "--nice",
            str(self.nice),
        ]
        try:
            with log_path.open("ab") as log_file:
                stamp = datetime.now(UTC).isoformat(timespec="seconds")
                log_file.write(f"[jobkit] {stamp} starting {job.kind} job {job.id}\n".encode())
                log_file.flush()
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env={**self.env, **self.slot_env(slots)} if self.slots else self.env,
                )
        except OSError as exc:
            logger.exception("could not start a worker for job %s", job.id)
            self.store.finish(
                job.id,
                JobState.FAILED,
                JobError(type="failed", message=f"could not start the worker: {exc}"),
            )
            return
        # Watched before anything else is written: a store that fails now loses no process.
        child = _Child(job.id, proc.pid, proc, started_at=time.time(), slots=slots)
        self._children[job.id] = child
        self.store.mark_running(job.id, proc.pid, list(slots))
        started = self.store.get(job.id)
        child.started_at = _epoch(started.started_at) if started else child.started_at
        logger.info("started job %s (%s) as pid %s%s", job.id, job.kind, proc.pid,
                    f" on {', '.join(slots)}" if slots else "")  # fmt: skip

    def _on_exit(self, child: _Child) -> None:
        """The worker is gone: kill its leftovers and record an end if the worker did not. The
        child stays watched until that is recorded (``sqlite3.Error`` propagates: retry)."""
        if child.exited is None:
            if child.proc is not None:
                child.exited = describe_exit(child.proc.returncode)
                left = kill_group(child.pid)
                if left:
                    logger.error(
                        "job %s: processes %s survived SIGKILL",
                        child.job_id,
                        [p.pid for p in left],
                    )
            else:
                child.exited = f"worker process {child.pid} is gone"
        how = child.exited
        job = self.store.get(child.job_id)
        with self._unrecorded_lock:
            known = self._unrecorded.get(child.job_id)
        if job is not None and not job.state.terminal:
            unrecorded = child.proc is not None and child.proc.returncode == EXIT_UNRECORDED
            if known is not None:  # the end already shown is the one recorded
                state, error = known.state, known.error
            elif unrecorded:
                state = JobState.FAILED
                error = JobError(
                    type="out_of_space",
                    message="the job ended but its worker could not record how: the job store "
                    "on the volume could not be written (the volume full?). Its log has the "
                    "reason; free space, then resume the job (or post its request again)",
                )
            elif self._stopping:
                state = JobState.INTERRUPTED
                error = JobError(type="interrupted", message=f"service shut down; {how}")
            elif job.cancel_requested:
                state = JobState.CANCELLED
                detail = how
                if child.sigkilled:
                    detail = (
                        f"worker did not stop within {self.cancel_grace_s:g} s of SIGTERM and "
                        "was killed (SIGKILL)"
                    )
                error = JobError(type="cancelled", message=f"cancelled; {detail}")
            else:
                state = JobState.FAILED
                error = JobError(type="killed", message=how)
            # Log first: a client that sees the final state also finds the reason in the log.
            if not child.end_logged:
                self._append_log(child.job_id, f"{how}; job {state}")
                child.end_logged = True
            try:
                self.store.finish(child.job_id, state, error)
            except sqlite3.Error as exc:  # shown as it is (present) until a later pass records it
                self._note_unrecorded(child.job_id, state, error, how, exc)
                raise
            logger.warning("job %s %s: %s", child.job_id, state, error.message)
        elif not child.end_logged:
            self._append_log(child.job_id, f"{how}; job {job.state if job else 'gone'}")
        self._forget_unrecorded(child.job_id)
        self._children.pop(child.job_id, None)
        try:
            self._maybe_restart(child.job_id)
        except sqlite3.Error as exc:  # its end is recorded; a restart waits for a new start
            logger.error("job %s: cannot restart it (%s)", child.job_id, exc)

    def _append_log(self, job_id: str, line: str) -> None:
        """Append one ``[jobkit]`` line to the job's log. On a full volume the store's spare file
        is deleted to make room for it (a best effort: the line is lost if that fails too)."""
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        data = f"[jobkit] {stamp} {line}\n".encode()
        for attempt in range(2):
            try:
                self._write_whole(self.log_path(job_id), data)
                return
            except OSError as exc:
                if attempt or not for_lack_of_space(exc) or not self.store.release_spare():
                    return

    @staticmethod
    def _write_whole(path: Path, data: bytes) -> None:
        """Append ``data`` to ``path``, whole or not at all (no half line on a full volume)."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
