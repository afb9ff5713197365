"""The shared volume's layout, declared once: :class:`DataRoot` knows where everything lives.

The two services never import each other: they meet here, on the volume. The dataset service
writes ``raw/`` and ``datasets/``; the trainer reads ``datasets/`` and writes ``runs/`` and
``sweeps/``; TensorBoard reads ``runs/``; each service keeps its job records in ``state/``::

    <data_root>/
      raw/downloads/<file>              archives fetched by URL (name from the URL's last segment)
      raw/extracted/<name>/             the generated tree of synthetic dataset <name>, and
      raw/extracted/archive-<md5>/      an archive extracted as an ImageFolder tree (on request);
                                        each holds a .source.json marker once complete
      datasets/<name>                   a symlink to .versions/<name>@<time>/: the version readers
                                        open (shards, shard_format.json, TFDS metadata)
      datasets/.versions/<name>@<time>/ complete versions: the current one and the one before it
      datasets/.staging/<name>/         the version a prepare is writing (see datavolume.datasets)
      runs/<run_id>/                    one training run (see datavolume.runs.RunFolder)
      sweeps/<name>/                    one sweep (see SweepFolder below):
        sweep.json                      the sweep as it was asked (the body of POST /v1/sweeps)
        study.journal                   the Optuna study (journal storage; with a database URL
                                        in the trainer's settings the study lives there)
        study.journal.lock, ask.lock    Optuna's file locks: the journal's, and the one held
                                        while a service asks for a trial
        plot.png                        the best value over the trials, which fields mattered
      sweeps/.hosts/<instance>          a trainer service's lease: its modification time is
                                        when it last said it was alive
      state/<service>-jobs.db           a service's job database (SQLite)
      state/<service>-logs/<job>.log    one log per job (a service may keep these two in a
                                        state folder of its own: two trainer services
                                        sharing the volume each keep theirs)

Paths a client names (a zip, a folder, a checkpoint) are relative to the root and must resolve
inside it, links followed (:meth:`DataRoot.resolve`).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from datavolume.runs import RunFolder

RAW_DIR = "raw"
DOWNLOADS_DIR = "downloads"
EXTRACTED_DIR = "extracted"
DATASETS_DIR = "datasets"
STAGING_DIR = ".staging"
VERSIONS_DIR = ".versions"
RUNS_DIR = "runs"
SWEEPS_DIR = "sweeps"
HOSTS_DIR = ".hosts"
STATE_DIR = "state"

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


#: What a file system takes: one name, and a whole path (Linux's NAME_MAX and PATH_MAX).
NAME_MAX, PATH_MAX = 255, 4096


class OutsideRoot(ValueError):
    """A client-named path is unusable: empty, too long, a loop of links, or resolving outside
    the root (``..``, absolute, a link)."""


@dataclass(frozen=True)
class DataRoot:
    """The shared volume mounted at ``path`` (``/data`` in the containers)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- raw inputs (dataset service) ------------------------------------------------------

    @property
    def raw(self) -> Path:
        return self.path / RAW_DIR

    @property
    def downloads(self) -> Path:
        return self.raw / DOWNLOADS_DIR

    def download(self, url: str) -> Path:
        """Where the archive at ``url`` is downloaded: its last path segment, made safe."""
        last = unquote(urlparse(url).path.rsplit("/", 1)[-1])
        safe = _UNSAFE_CHARS.sub("_", last).lstrip(".")
        return self.downloads / (safe or "download")

    @property
    def extracted(self) -> Path:
        return self.raw / EXTRACTED_DIR

    def generated_tree(self, name: str) -> Path:
        """The generated (synthetic) source tree of dataset ``name``."""
        return self.extracted / name

    def archive_tree(self, md5: str) -> Path:
        """The extracted, reorganized tree of the archive with this MD5 (shared by names)."""
        return self.extracted / f"archive-{md5}"

    # -- prepared datasets (written by the dataset service, read by the trainer) -----------

    @property
    def datasets(self) -> Path:
        return self.path / DATASETS_DIR

    def dataset(self, name: str) -> Path:
        """The folder readers open for dataset ``name`` (a link to its current version)."""
        return self.datasets / name

    def staging(self, name: str) -> Path:
        """The folder a prepare of ``name`` writes before it is published."""
        return self.datasets / STAGING_DIR / name

    @property
    def versions(self) -> Path:
        return self.datasets / VERSIONS_DIR

    # -- training runs (written by the trainer, read by TensorBoard and people) ------------

    @property
    def runs(self) -> Path:
        return self.path / RUNS_DIR

    def run(self, run_id: str) -> RunFolder:
        if not run_id.isalnum():
            raise ValueError(f"bad run id {run_id!r}")
        return RunFolder(self.runs / run_id)

    # -- sweeps (written by the trainer services) -------------------------------------------

    @property
    def sweeps(self) -> Path:
        return self.path / SWEEPS_DIR

    def sweep(self, name: str) -> SweepFolder:
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"bad sweep name {name!r}")
        return SweepFolder(self.sweeps / name)

    @property
    def sweep_hosts(self) -> Path:
        """The trainer services' leases (the layout above)."""
        return self.sweeps / HOSTS_DIR

    # -- each service's job records ---------------------------------------------------------

    @property
    def state(self) -> Path:
        return self.path / STATE_DIR

    def jobs_db(self, service: str, state: Path | None = None) -> Path:
        """A service's job database, in ``state`` (its own state folder) or ``state/``."""
        return (state or self.state) / f"{service}-jobs.db"

    def job_logs(self, service: str, state: Path | None = None) -> Path:
        return (state or self.state) / f"{service}-logs"

    # -- can it take writes -------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the volume."""
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def unwritable_reason(self, min_free_bytes: int = 0) -> str | None:
        """Why the volume cannot take writes now (missing, read-only, full, or less free space
        than ``min_free_bytes``), or None. Writes and removes a small probe file in ``state/``
        (the job stores live there). The reason names no server path."""
        try:
            free = self.free_bytes()
        except OSError as exc:
            return f"the data root cannot be read ({exc.strerror})"
        if free < min_free_bytes:
            return (
                f"the volume has {free / 2**20:,.1f} MiB free, less than the "
                f"{min_free_bytes / 2**20:,.0f} MiB kept for jobs to run and record their state"
            )
        probe = self.state / f".write-probe-{os.getpid()}-{threading.get_ident()}"
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"x")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            return f"the volume cannot be written ({exc.strerror})"
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        return None

    # -- paths clients name -----------------------------------------------------------------

    def resolve(self, client_path: str | Path) -> Path:
        """``client_path`` (relative to the root, or absolute) resolved, links followed.

        Raises :class:`OutsideRoot` unless the result lies inside the resolved root; the
        message repeats what the client gave, never a server path. The path need not exist.
        """
        resolved_root = self.path.resolve()
        text = str(client_path)
        if not text or "\x00" in text:
            raise OutsideRoot(f"path {text!r} is empty or invalid")
        shown = text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"
        given = Path(text)
        if len(text) > PATH_MAX or any(len(part.encode()) > NAME_MAX for part in given.parts):
            raise OutsideRoot(
                f"path {shown!r} is too long (at most {NAME_MAX} bytes per name, {PATH_MAX} in all)"
            )
        try:
            resolved = (given if given.is_absolute() else resolved_root / given).resolve()
        except (RuntimeError, OSError):  # a loop of links, or a name the system refuses
            raise OutsideRoot(f"path {shown!r} cannot be resolved (a loop of links?)") from None
        if not resolved.is_relative_to(resolved_root):
            raise OutsideRoot(
                f"path {shown!r} is outside the data root (after resolving '..' and links)"
            )
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` as a string relative to the root (for messages and answers)."""
        for root in (self.path, self.path.resolve()):
            if Path(path).is_relative_to(root):
                return str(Path(path).relative_to(root))
        return str(path)


@dataclass(frozen=True)
class SweepFolder:
    """The files of one sweep folder (see the module docstring); ``DataRoot.sweep(name)``. Its
    trials are ordinary runs (``runs/<id>/``), linked to it by their ``trial.json``."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "sweep.json"

    @property
    def journal(self) -> Path:
        return self.root / "study.journal"

    @property
    def ask_lock(self) -> Path:
        """The ask lock's name: Optuna's lock makes ``ask.lock`` beside it while held."""
        return self.root / "ask"

    @property
    def plot(self) -> Path:
        return self.root / "plot.png"
