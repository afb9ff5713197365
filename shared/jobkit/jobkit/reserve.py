"""Room the job store keeps for itself, so that it can record a job's end on a full volume.

The job store lives on the volume the jobs write. When a job fills that volume, its worker
fails, and the end of the job (``JobStore.finish``, from the worker or else from the runner)
must still be written, while the volume reports 0 bytes free and may stay full for hours.

**The reserve is inside the store's own files**, where no other writer can take it:

- *Free pages in the database file.* SQLite takes new pages from the free pages of its file
  (its freelist) before it grows the file. :func:`refill` writes a blob of ``size`` bytes into
  the file, checkpoints it into the file, then drops it: its pages stay in the file, free.
- *A write-ahead log at least ``size`` long.* In WAL mode a commit appends the pages it changed
  to ``<db>-wal``; once a checkpoint has copied them into the database, the next commit writes
  the log again from its start. SQLite never shortens the log while the store is open (no
  ``journal_size_limit``). The blob's pages make it ``size`` long, and every connection
  checkpoints every :data:`CHECKPOINT_BYTES` of log (``wal_autocheckpoint``), a fraction of it,
  so commits land inside the log's existing length. The log's index ``<db>-shm`` (32 KiB) does
  not grow while the log stays under 4096 pages.

An end, a result, progress: each changes a row in place (pages written into the log) or takes a
page or two from the freelist. None needs a byte the volume does not already give the store, so
none fails for lack of space until the freelist is used up (1 MiB: over a hundred ends). Nothing
has to be released first, so nothing can be taken in between: the test fills a real tmpfs to
0 bytes free and records ends from the server and from worker processes
(``tests/jobkit/test_store_reserve.py``).

Why not a file released when a write fails: the space it frees is free for every writer, and a
volume filling up has a writer that takes it. Why not a volume of its own for the store: many
users have one volume; this works on one.

**The spare file** ``<db>-spare`` (:data:`SPARE_BYTES`) covers what the files above cannot:
when the last connection closes (the service stops), SQLite deletes the log and its index, and
a service started again on a volume that is still full cannot create them. ``JobStore`` deletes
the spare file when it cannot open for that reason, and tries again; the runner deletes it when
it cannot append a job's last log line. Space freed this way can be taken by another writer
first: a best effort, where the reserve above is a guarantee.

:func:`refill` puts back what was used, once the volume has room again (the runner calls it at
start and about every second). It does not cover copy-on-write file systems (btrfs, ZFS), which
need new blocks even to overwrite a page: there, keep free space.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

#: The free pages kept in the database file, and the length its write-ahead log keeps.
RESERVE_BYTES = 1 * 2**20
#: The spare file's size: enough to create the log and its index and record a few ends.
SPARE_BYTES = 256 * 2**10
#: How much log a connection writes before it checkpoints (a fraction of RESERVE_BYTES).
CHECKPOINT_BYTES = 128 * 2**10
#: The table the reserve's blob lives in while it is written (dropped at once).
_TABLE = "jobkit_reserve"


@dataclass(frozen=True)
class Reserve:
    """What the store holds now: free pages in its file, its log's length, the spare file."""

    free_page_bytes: int
    wal_bytes: int
    spare_bytes: int
    unwritten_bytes: int  # pages the database counts that its file does not hold yet

    def whole(self, size: int = RESERVE_BYTES, spare: int = SPARE_BYTES) -> bool:
        """Whether every part is at least as large as asked."""
        return (
            self.free_page_bytes >= size
            and self.wal_bytes >= size
            and self.spare_bytes >= spare
            and self.unwritten_bytes <= 0
        )


def wal_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-wal")


def spare_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-spare")


def checkpoint_pages(conn: sqlite3.Connection) -> int:
    """``wal_autocheckpoint`` for this connection: :data:`CHECKPOINT_BYTES` of pages."""
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    return max(8, CHECKPOINT_BYTES // int(page_size))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def measure(conn: sqlite3.Connection, db_path: Path) -> Reserve:
    """The reserve as it is now (reads only)."""
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    return Reserve(
        free_page_bytes=int(free_pages) * int(page_size),
        wal_bytes=_size(wal_path(db_path)),
        spare_bytes=_size(spare_path(db_path)),
        unwritten_bytes=int(pages) * int(page_size) - _size(db_path),
    )


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def refill(
    conn: sqlite3.Connection, db_path: Path, size: int = RESERVE_BYTES, spare: int = SPARE_BYTES
) -> bool:
    """Make the reserve whole again if the volume has room for what it lacks and ``size`` more
    (what is left of a nearly full volume is the jobs'); returns whether it is whole.
    ``conn``: an autocommit connection, in no transaction."""
    now = measure(conn, db_path)
    if now.whole(size, spare):
        return True
    lacking = (
        max(0, size - now.free_page_bytes)
        + max(0, size - now.wal_bytes)
        + max(0, spare - now.spare_bytes)
        + max(0, now.unwritten_bytes)
    )
    if free_bytes(db_path.parent) < lacking + size:
        return False
    if now.free_page_bytes < size or now.wal_bytes < size:
        # Two commits: pages freed in the commit that wrote them would never reach the file.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (room BLOB)")
            conn.execute(f"INSERT INTO {_TABLE} VALUES (zeroblob(?))", [size])
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the blob's pages into the file
        conn.execute(f"DROP TABLE {_TABLE}")
    if measure(conn, db_path).unwritten_bytes > 0:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    if now.spare_bytes < spare:
        _write_spare(spare_path(db_path), spare)
    return measure(conn, db_path).whole(size, spare)


def _write_spare(path: Path, size: int) -> None:
    """Write the spare file with real blocks (not a sparse file), then rename it in place."""
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as f:
            block = bytes(64 * 1024)
            for start in range(0, size, len(block)):
                f.write(block[: size - start])
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def release_spare(db_path: Path) -> bool:
    """Delete the spare file; returns whether there was one."""
    try:
        spare_path(db_path).unlink()
    except FileNotFoundError:
        return False
    return True


def for_lack_of_space(exc: BaseException) -> bool:
    """Whether an error opening or writing the store may come from a full volume: SQLite's
    "database or disk is full", its I/O errors (it creates the log's index with writes), or
    ENOSPC/EDQUOT."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
        text = str(exc)
        return "disk is full" in text or "disk I/O error" in text
    return False


__all__ = [
    "CHECKPOINT_BYTES",
    "RESERVE_BYTES",
    "SPARE_BYTES",
    "Reserve",
    "checkpoint_pages",
    "for_lack_of_space",
    "measure",
    "refill",
    "release_spare",
    "spare_path",
    "wal_path",
]
