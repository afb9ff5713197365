"""The shared volume's layout, declared once: :class:`DataRoot` knows where everything lives.

The two services never import each other: they meet here, on the volume. The dataset service
writes ``raw/`` and ``datasets/``; the trainer reads ``datasets/`` and writes ``runs/``;
TensorBoard reads ``runs/``; each service keeps its job records in ``state/``::

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
      state/<service>-jobs.db           a service's job database (SQLite)
      state/<service>-logs/<job>.log    one log per job

Paths a client names (a zip, a folder, a checkpoint) are relative to the root and must resolve
inside it, links followed (:meth:`DataRoot.resolve`).
"""

from __future__ import annotations

import re
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
STATE_DIR = "state"

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class OutsideRoot(ValueError):
    """A client-named path is empty, or resolves outside the root (``..``, absolute, a link)."""


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

    # -- each service's job records ---------------------------------------------------------

    @property
    def state(self) -> Path:
        return self.path / STATE_DIR

    def jobs_db(self, service: str) -> Path:
        return self.state / f"{service}-jobs.db"

    def job_logs(self, service: str) -> Path:
        return self.state / f"{service}-logs"

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
        given = Path(text)
        resolved = (given if given.is_absolute() else resolved_root / given).resolve()
        if not resolved.is_relative_to(resolved_root):
            raise OutsideRoot(
                f"path {text!r} is outside the data root (after resolving '..' and links)"
            )
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` as a string relative to the root (for messages and answers)."""
        for root in (self.path, self.path.resolve()):
            if Path(path).is_relative_to(root):
                return str(Path(path).relative_to(root))
        return str(path)
