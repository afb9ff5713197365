"""A real small volume for the full-volume tests: a tmpfs mounted for one test, and a filler.

Mounting needs root (CI and the dev containers run the tests as root). The tmpfs is unmounted
when the test ends, whatever happened (lazily if a process still holds a file on it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

MiB = 2**20


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``path`` (created) for the ``with`` block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def free_bytes(path: Path) -> int:
    """What an unprivileged writer may still write on the volume holding ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(path: Path) -> int:
    """Append to the file ``path`` until its volume has no byte left; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for block in (bytes(MiB), bytes(64 * 1024), bytes(4096), b"\0"):
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


class Filler:
    """Fills a volume and keeps it full: a thread takes any room that appears (a job deleting
    its half-written files, say) until :meth:`stop`; :meth:`remove` frees the space again."""

    def __init__(self, path: Path, interval_s: float = 0.005) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Filler:
        fill(self.path)
        self._thread = threading.Thread(target=self._keep_full, name="filler", daemon=True)
        self._thread.start()
        return self

    def _keep_full(self) -> None:
        while not self._stop.wait(self.interval_s):
            fill(self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def remove(self) -> None:
        """Stop, and delete the file: the volume has room again."""
        self.stop()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Filler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) -> its SHA-256: what must not change."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
