"""The job database: one embedded SQLite file shared by the server and its worker processes.

Each thread (of each process) keeps one connection (WAL mode, busy timeout), opened on first
use: a status poll costs a query, not a connect. A ``JobStore`` can be used from any thread and
from the worker processes at the same time. Writes that check-then-act
(create, reset_for_retry, set_metrics) run in one ``BEGIN IMMEDIATE`` transaction.

The store keeps room for itself in its own files, so that a job's end can be recorded on a full
volume (:mod:`jobkit.reserve`; the runner calls ``keep_reserve``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from jobkit import reserve as _reserve
from jobkit.errors import IdempotencyConflict, JobNotFound, JobStateConflict, ResourceBusy
from jobkit.models import TERMINAL_STATES, JobError, JobPublic, JobState, Progress
from jobkit.reserve import RESERVE_BYTES, SPARE_BYTES, Reserve

BUSY_TIMEOUT_S = 15.0
# psutil's create_time and our clock may disagree by a few clock ticks.
_CREATE_TIME_TOLERANCE_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    state            TEXT NOT NULL,
    queue_seq        INTEGER NOT NULL,
    request          TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    resource_key     TEXT,
    phase            TEXT,
    phase_started_at REAL,
    done             INTEGER NOT NULL DEFAULT 0,
    total            INTEGER,
    unit             TEXT NOT NULL DEFAULT 'items',
    rate             REAL,
    eta_s            REAL,
    rate_since       REAL,
    rate_base        INTEGER,
    metrics          TEXT NOT NULL DEFAULT '{}',
    result           TEXT,
    error_type       TEXT,
    error_message    TEXT,
    pid              INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    updated_at       REAL NOT NULL,
    restarts         INTEGER NOT NULL DEFAULT 0,
    restart_causes   TEXT NOT NULL DEFAULT '[]',
    devices          TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs (state, queue_seq);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_active_resource ON jobs (resource_key)
    WHERE resource_key IS NOT NULL AND state IN ('queued', 'running');
"""

#: Columns added since the first schema: (name, type), added to older databases on open.
_ADDED_COLUMNS = {
    "rate_since": "REAL",
    "rate_base": "INTEGER",
    "restarts": "INTEGER NOT NULL DEFAULT 0",
    "restart_causes": "TEXT NOT NULL DEFAULT '[]'",
    "devices": "TEXT NOT NULL DEFAULT '[]'",
}

_TERMINAL_SQL = "('succeeded', 'failed', 'cancelled', 'interrupted')"


def request_hash(kind: str, request: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of (kind, request): sorted keys, no whitespace."""
    canonical = json.dumps(
        {"kind": kind, "request": request},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_job_id() -> str:
    """A short random id: the first 12 hex digits of a uuid4."""
    return uuid.uuid4().hex[:12]


def pid_alive(pid: int | None, started_at: float | None = None) -> bool:
    """Whether ``pid`` is a live process that could be the worker started at ``started_at``.

    A process created after the job started is a different process that reused the pid.
    Zombies count as gone.
    """
    if not pid or not psutil.pid_exists(pid):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started_at is not None and proc.create_time() > started_at + _CREATE_TIME_TOLERANCE_S:
            return False
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    return True


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class JobStore:
    """Jobs in one SQLite file (one per service: its jobs, of its kinds)."""

    def __init__(self, db_path: Path | str) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._open()
        except sqlite3.OperationalError as exc:
            # Started again on a full volume: SQLite cannot create its log and the log's index.
            if not (_reserve.for_lack_of_space(exc) and _reserve.release_spare(self.db_path)):
                raise
            self._close_this_thread()
            self._open()

    def _open(self) -> None:
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            for column, kind in _ADDED_COLUMNS.items():  # a database made by an older version
                if column not in columns:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")

    # -- connections -----------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (autocommit; transactions are explicit)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # new thread, or a forked child
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Commits stay inside the log's reserved length (see jobkit.reserve).
            conn.execute(f"PRAGMA wal_autocheckpoint={_reserve.checkpoint_pages(conn)}")
            local.conn, local.pid = conn, os.getpid()
        yield local.conn

    def _close_this_thread(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.__dict__.clear()
        if conn is not None:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # SQLite may have rolled back by itself (a full disk, say): keep the real error.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- the reserve (jobkit.reserve) --------------------------------------------------------

    def reserve(self) -> Reserve:
        """The room the store holds for itself now (free pages, log length, spare file)."""
        with self._connect() as conn:
            return _reserve.measure(conn, self.db_path)

    def keep_reserve(self, size: int = RESERVE_BYTES, spare: int = SPARE_BYTES) -> bool:
        """Put back the room the store keeps for itself (``size`` bytes of free pages and of
        log, a ``spare``-byte spare file) if the volume has room for it; returns whether it is
        whole. Costs two small reads when it is whole already."""
        with self._connect() as conn:
            return _reserve.refill(conn, self.db_path, size, spare)

    def release_spare(self) -> bool:
        """Delete the spare file, so that a write it makes room for can go on (the runner's last
        log line of a job on a full volume); returns whether there was one."""
        return _reserve.release_spare(self.db_path)

    def _update(self, job_id: str, sets: str, params: Iterable[Any], where: str = "") -> bool:
        now = time.time()
        with self._connect() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?{where}",
                [*params, now, job_id],
            )
            return cur.rowcount > 0

    # -- reading ---------------------------------------------------------------------------

    def _to_public(self, row: sqlite3.Row, queue_position: int | None) -> JobPublic:
        error = None
        if row["error_type"] is not None:
            error = JobError(type=row["error_type"], message=row["error_message"] or "")
        total = row["total"]
        percent = None
        if total:
            percent = round(100.0 * row["done"] / total, 2)
        return JobPublic(
            id=row["id"],
            kind=row["kind"],
            state=JobState(row["state"]),
            phase=row["phase"],
            progress=Progress(
                done=row["done"],
                total=total,
                percent=percent,
                rate=row["rate"],
                unit=row["unit"],
                eta_s=row["eta_s"],
            ),
            metrics=json.loads(row["metrics"]),
            request=json.loads(row["request"]),
            result=json.loads(row["result"]) if row["result"] is not None else None,
            error=error,
            queue_position=queue_position,
            pid=row["pid"],
            created_at=_ts(row["created_at"]),
            started_at=_ts(row["started_at"]),
            finished_at=_ts(row["finished_at"]),
            updated_at=_ts(row["updated_at"]),
            cancel_requested=bool(row["cancel_requested"]),
            restarts=row["restarts"],
            restart_causes=json.loads(row["restart_causes"]),
            devices=json.loads(row["devices"]),
        )

    def _position(self, conn: sqlite3.Connection, row: sqlite3.Row) -> int | None:
        if row["state"] != JobState.QUEUED:
            return None
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND queue_seq <= ?",
            [row["queue_seq"]],
        ).fetchone()
        return int(count)

    def _get(self, conn: sqlite3.Connection, job_id: str) -> JobPublic | None:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", [job_id]).fetchone()
        return None if row is None else self._to_public(row, self._position(conn, row))

    def get(self, job_id: str) -> JobPublic | None:
        """The job, or None if unknown."""
        with self._connect() as conn:
            return self._get(conn, job_id)

    def require(self, job_id: str) -> JobPublic:
        """Like ``get`` but raises ``JobNotFound``."""
        job = self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def list(
        self, limit: int = 100, *, state: JobState | str | None = None, tag: str | None = None
    ) -> list[JobPublic]:
        """Jobs newest first, optionally only those in one ``state``, and only those whose
        request's ``tags`` list holds ``tag``."""
        clauses, params = ["1"], []
        if state is not None:
            clauses.append("state = ?")
            params.append(str(JobState(state)))
        if tag is not None:
            tagged = "SELECT 1 FROM json_each(jobs.request, '$.tags') WHERE value = ?"
            clauses.append(f"EXISTS ({tagged})")
            params.append(tag)
        where = " AND ".join(clauses)
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                [*params, max(0, int(limit))],
            ).fetchall()
            queued = conn.execute(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY queue_seq"
            ).fetchall()
        positions = {r["id"]: i for i, r in enumerate(queued, start=1)}
        return [self._to_public(r, positions.get(r["id"])) for r in rows]

    def next_queued(self) -> JobPublic | None:
        """The oldest queued job (FIFO)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM jobs WHERE state = 'queued' ORDER BY queue_seq LIMIT 1"
            ).fetchone()
            return None if row is None else self._to_public(row, 1)

    def queue_position(self, job_id: str) -> int | None:
        """1-based position among queued jobs, or None if the job is not queued."""
        job = self.get(job_id)
        return None if job is None else job.queue_position

    def count_running(self) -> int:
        """How many jobs are in state running."""
        return self._count("running")

    def count_queued(self) -> int:
        """How many jobs wait in the queue."""
        return self._count("queued")

    def _count(self, state: str) -> int:
        with self._connect() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", [state]).fetchone()
        return int(count)

    # -- creating --------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        request: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        resource_key: str | None = None,
        job_id: str | None = None,
    ) -> JobPublic:
        """Queue a new job, atomically (``job_id``: its id, made beforehand with
        :func:`new_job_id`, when the caller must name it before it exists).

        - Same ``idempotency_key`` and same canonical request (and kind): returns the existing
          job unchanged. Same key with a different request: raises ``IdempotencyConflict``.
        - ``resource_key`` names what the job writes (e.g. ``"dataset:tiny"``); if a queued or
          running job holds the same key, raises ``ResourceBusy(job_id)``.
        """
        digest = request_hash(kind, request)
        body = json.dumps(request, sort_keys=True, ensure_ascii=False, allow_nan=False)
        with self._transaction() as conn:
            if idempotency_key is not None:
                row = conn.execute(
                    "SELECT id, request_hash FROM jobs WHERE idempotency_key = ?",
                    [idempotency_key],
                ).fetchone()
                if row is not None:
                    if row["request_hash"] != digest:
                        raise IdempotencyConflict(idempotency_key, row["id"])
                    existing = self._get(conn, row["id"])
                    assert existing is not None
                    return existing
            if resource_key is not None:
                self._check_resource_free(conn, resource_key)
            now = time.time()
            job_id = job_id or new_job_id()
            conn.execute(
                "INSERT INTO jobs (id, kind, state, queue_seq, request, request_hash,"
                " idempotency_key, resource_key, created_at, updated_at)"
                " VALUES (?, ?, 'queued', (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs),"
                " ?, ?, ?, ?, ?, ?)",
                [job_id, kind, body, digest, idempotency_key, resource_key, now, now],
            )
            job = self._get(conn, job_id)
            assert job is not None
            return job

    @staticmethod
    def _check_resource_free(
        conn: sqlite3.Connection, resource_key: str, except_id: str | None = None
    ) -> None:
        row = conn.execute(
            "SELECT id FROM jobs WHERE resource_key = ? AND state IN ('queued', 'running')"
            " AND id IS NOT ? ORDER BY queue_seq LIMIT 1",
            [resource_key, except_id],
        ).fetchone()
        if row is not None:
            raise ResourceBusy(row["id"], resource_key)

    # -- life cycle ------------------------------------------------------------------------

    def mark_running(self, job_id: str, pid: int, devices: list[str] | None = None) -> bool:
        """queued -> running with the worker ``pid``. False if the job was not queued.

        Both the runner (after spawning) and the worker (on start) call this; the first wins.
        ``devices`` (the runner's): the device slots the worker holds, recorded either way.
        """
        now = time.time()
        started = self._update(
            job_id,
            "state = 'running', pid = ?, started_at = ?, phase_started_at = ?",
            [pid, now, now],
            " AND state = 'queued'",
        )
        if devices is not None:
            self._update(job_id, "devices = ?", [json.dumps(devices)])
        return started

    def set_phase(
        self,
        job_id: str,
        phase: str,
        total: int | None = None,
        unit: str = "items",
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Start a phase: sets the name, resets done to 0 and restarts the rate/ETA clock.

        ``metrics`` are merged in the same transaction, so no reader sees the new phase with
        the previous phase's metrics (e.g. "epoch 2/3" beside ``epoch: 1``).
        """
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET phase = ?, total = ?, unit = ?, done = 0, rate = NULL,"
                " eta_s = NULL, phase_started_at = ?, rate_since = NULL, rate_base = NULL,"
                " updated_at = ? WHERE id = ?",
                [phase, total, unit, time.time(), time.time(), job_id],
            )
            if metrics:
                self._merge_metrics(conn, job_id, metrics)

    def set_progress(self, job_id: str, done: int, total: int | None = None) -> None:
        """Record ``done`` (and ``total`` if given), with the rate and ETA.

        The rate is measured from the phase's first report of work done, not from the phase
        start: what a phase does before its first item (starting processes, checking what a
        resume keeps) and the items done at once (kept from an earlier run) are not counted as
        slowness. Not throttled here: the worker's ``JobContext.progress`` throttles.
        """
        now = time.time()
        with self._connect() as conn:
            row = conn.execute(
                "SELECT total, rate_since, rate_base FROM jobs WHERE id = ?", [job_id]
            ).fetchone()
            if row is None:
                return
            total = total if total is not None else row["total"]
            since, base = row["rate_since"], row["rate_base"]
            if since is None and done > 0:
                since, base = now, done  # the clock starts at the first work done
            rate = None
            if since is not None and now - since > 1e-3 and done > base:
                rate = (done - base) / (now - since)
            eta = None
            if total is not None and done >= total:
                eta = 0.0
            elif total is not None and rate:
                eta = (total - done) / rate
            conn.execute(
                "UPDATE jobs SET done = ?, total = ?, rate = ?, eta_s = ?, updated_at = ?,"
                " rate_since = ?, rate_base = ? WHERE id = ?",
                [done, total, rate, eta, now, since, base, job_id],
            )

    def set_metrics(self, job_id: str, metrics: dict[str, Any]) -> None:
        """Merge ``metrics`` into the job's latest metrics (given keys overwrite)."""
        with self._transaction() as conn:
            self._merge_metrics(conn, job_id, metrics)

    @staticmethod
    def _merge_metrics(conn: sqlite3.Connection, job_id: str, metrics: dict[str, Any]) -> None:
        row = conn.execute("SELECT metrics FROM jobs WHERE id = ?", [job_id]).fetchone()
        if row is None:
            return
        merged = {**json.loads(row["metrics"]), **metrics}
        conn.execute(
            "UPDATE jobs SET metrics = ?, updated_at = ? WHERE id = ?",
            [json.dumps(merged, ensure_ascii=False), time.time(), job_id],
        )

    def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        """Set (replace) what the job produced."""
        self._update(job_id, "result = ?", [json.dumps(result, ensure_ascii=False)])

    def finish(self, job_id: str, state: JobState | str, error: JobError | None = None) -> bool:
        """Move a job to a terminal ``state``. No-op (returns False) if it is already terminal."""
        state = JobState(state)
        if not state.terminal:
            raise ValueError(f"finish() needs a terminal state, not {state}")
        return self._update(
            job_id,
            "state = ?, error_type = ?, error_message = ?, finished_at = ?",
            [
                str(state),
                error.type if error else None,
                error.message if error else None,
                time.time(),
            ],
            f" AND state NOT IN {_TERMINAL_SQL}",
        )

    def request_cancel(self, job_id: str) -> bool:
        """Flag the job as cancel-requested. False if it is unknown or already terminal."""
        return self._update(
            job_id, "cancel_requested = 1", [], f" AND state NOT IN {_TERMINAL_SQL}"
        )

    def orphans(self) -> dict[str, JobError]:
        """Running jobs whose worker process is gone, with the error that ends them (reads only).

        A pid that exists but belongs to a process created after the job started (pid reuse)
        counts as gone.
        """
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, pid, started_at FROM jobs WHERE state = 'running'"
            ).fetchall()
        return {
            row["id"]: JobError(
                type="interrupted",
                message=f"worker process {row['pid']} is gone (service restarted?)",
            )
            for row in rows
            if not pid_alive(row["pid"], row["started_at"])
        }

    def mark_orphans_interrupted(self) -> list[str]:
        """Mark running jobs whose worker process is gone (:meth:`orphans`) as ``interrupted``;
        returns their ids."""
        return [
            job_id
            for job_id, error in self.orphans().items()
            if self.finish(job_id, JobState.INTERRUPTED, error)
        ]

    def reset_for_retry(self, job_id: str, restart_cause: str | None = None) -> JobPublic:
        """Put an interrupted/failed/cancelled job back at the end of the queue (same id and
        request) so it can resume. Clears error, result, pid, timestamps and progress; keeps
        metrics. ``restart_cause``: the runner restarts it by itself (counted in ``restarts``,
        the cause appended to ``restart_causes``). Raises ``JobNotFound``, ``JobStateConflict``
        or ``ResourceBusy``.
        """
        retryable = (JobState.INTERRUPTED, JobState.FAILED, JobState.CANCELLED)
        with self._transaction() as conn:
            job = self._get(conn, job_id)
            if job is None:
                raise JobNotFound(job_id)
            if job.state not in retryable:
                raise JobStateConflict(
                    job_id,
                    job.state,
                    f"job {job_id} is {job.state}; only a job that is "
                    "interrupted, failed or cancelled can be retried",
                )
            (resource_key,) = conn.execute(
                "SELECT resource_key FROM jobs WHERE id = ?", [job_id]
            ).fetchone()
            if resource_key is not None:
                self._check_resource_free(conn, resource_key, except_id=job_id)
            conn.execute(
                "UPDATE jobs SET state = 'queued',"
                " queue_seq = (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs),"
                " error_type = NULL, error_message = NULL, result = NULL, pid = NULL,"
                " cancel_requested = 0, started_at = NULL, finished_at = NULL,"
                " phase = NULL, phase_started_at = NULL, rate_since = NULL, rate_base = NULL,"
                " done = 0, total = NULL, devices = '[]',"
                " rate = NULL, eta_s = NULL, updated_at = ? WHERE id = ?",
                [time.time(), job_id],
            )
            if restart_cause is not None:
                conn.execute(
                    "UPDATE jobs SET restarts = restarts + 1,"
                    " restart_causes = json_insert(restart_causes, '$[#]', ?) WHERE id = ?",
                    [restart_cause, job_id],
                )
            job = self._get(conn, job_id)
            assert job is not None
            return job


__all__ = ["TERMINAL_STATES", "JobStore", "new_job_id", "pid_alive", "request_hash"]
