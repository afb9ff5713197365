"""Prepared datasets on the volume: opening a ready one, and publishing a new version.

    datasets/<name>                  -> .versions/<name>@<time>   (a symlink; what readers open)
    datasets/.versions/<name>@<time>/  complete versions: the current one and the one before it
    datasets/.staging/<name>/          the version being written (resumable after a crash)

**Ready** means: ``datasets/<name>`` resolves to a folder whose ``shard_format.json`` (written
last, atomically) reads with this code's schema version and names ``<name>``.
:func:`open_dataset` is the one reader of that rule; both services use it.

**Publishing.** A prepare writes into the staging folder, seeded with hard links to the current
version's shards and their write records so that unchanged shards are reused (the writer replaces
files by rename, never in place, so a linked file of the current version is never modified). Only
after the metadata is written does :func:`publish` move the staging folder to a new version and
replace the symlink atomically. A failed or cancelled prepare therefore leaves the current dataset
exactly as it was, and a reader that resolved the link (the trainer does, at the start of a run)
keeps reading its version: the previous version is kept until the next swap.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from datavolume.files import atomic_write_text
from datavolume.layout import VERSIONS_DIR, DataRoot
from shard_format.metadata import DatasetMetadata, SchemaVersionError, load_metadata
from shard_format.schema import METADATA_FILE

#: Not seeded into a new staging folder: its presence would make a half-built one look ready.
_NOT_SEEDED = {METADATA_FILE}


class DatasetUnavailable(Exception):
    """Dataset ``name`` cannot be read; ``slug`` names why (a problem type for the APIs):
    ``dataset-not-found`` (absent, or still being written), ``dataset-schema-version``
    (written by another schema version), ``dataset-unusable`` (unreadable metadata),
    ``dataset-version-removed`` (a version asked for by its folder is gone)."""

    def __init__(self, message: str, slug: str) -> None:
        super().__init__(message)
        self.message, self.slug = message, slug


@dataclass(frozen=True)
class ReadyDataset:
    """A dataset as a reader opened it: the resolved version folder and its metadata."""

    folder: Path
    metadata: DatasetMetadata


def open_dataset(root: DataRoot, name: str, folder: str | None = None) -> ReadyDataset:
    """Dataset ``name`` if it is ready, else :class:`DatasetUnavailable`.

    The link is resolved once: a new version published later does not change what the caller
    reads. ``folder`` (relative to the data root, as ``ReadyDataset.folder`` was when a reader
    recorded it) opens that version instead of the current one: a run keeps the version it
    began with, across resumes, while the volume keeps it (``dataset-version-removed`` once
    pruned).
    """
    if folder is not None:
        path = root.path / folder
        if not path.is_dir():
            raise DatasetUnavailable(
                f"the version {Path(folder).name!r} of {name!r} is no longer on the volume "
                "(a dataset keeps its current and its previous version)",
                "dataset-version-removed",
            )
        folder_path = path.resolve()
    else:
        link = root.dataset(name)
        folder_path = link.resolve() if link.exists() else link
    try:
        metadata = load_metadata(folder_path)
    except FileNotFoundError:
        raise DatasetUnavailable(
            f"no prepared dataset {name!r} (absent, or still being written)", "dataset-not-found"
        ) from None
    except SchemaVersionError as exc:
        raise DatasetUnavailable(f"{name!r}: {exc}", "dataset-schema-version") from None
    except (OSError, ValueError, ValidationError) as exc:  # unreadable JSON or metadata
        raise DatasetUnavailable(
            f"{name!r} has unreadable metadata: {exc}", "dataset-unusable"
        ) from None
    if metadata.name != name:
        raise DatasetUnavailable(
            f"the metadata in {name!r} names another dataset ({metadata.name!r})",
            "dataset-unusable",
        )
    return ReadyDataset(folder_path, metadata)


def dataset_names(root: DataRoot) -> list[str]:
    """Names of the folders under ``datasets/`` (ready or not), sorted; hidden ones are the
    volume's own (staging, versions)."""
    if not root.datasets.is_dir():
        return []
    return sorted(
        p.name for p in root.datasets.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def write_metadata(folder: Path, metadata: DatasetMetadata) -> Path:
    """Write a dataset's metadata atomically, last: its presence means "complete"."""
    path = Path(folder) / METADATA_FILE
    atomic_write_text(path, metadata.model_dump_json(indent=2))
    return path


def current_version(root: DataRoot, name: str) -> Path | None:
    """The folder ``datasets/<name>`` points to (or is), if any."""
    link = root.dataset(name)
    return link.resolve() if link.is_dir() else None


def open_staging(root: DataRoot, name: str) -> Path:
    """The staging folder of ``name``; a new one starts from hard links to the current version's
    shards and write records (what a resumed staging folder already has is kept)."""
    staging = root.staging(name)
    fresh = not staging.exists()
    staging.mkdir(parents=True, exist_ok=True)
    current = current_version(root, name)
    if fresh and current is not None:
        for source in sorted(current.rglob("*")):
            target = staging / source.relative_to(current)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif source.name not in _NOT_SEEDED:
                try:
                    os.link(source, target)
                except OSError:  # no hard links on this filesystem: copy
                    shutil.copy2(source, target)
    return staging


def publish(root: DataRoot, name: str, staging: Path) -> Path:
    """Make the complete ``staging`` folder the current version of ``name``; returns it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    version = root.versions / f"{name}@{stamp}"
    version.parent.mkdir(parents=True, exist_ok=True)
    previous = current_version(root, name)
    os.replace(staging, version)
    link = root.dataset(name)
    if link.exists() and not link.is_symlink():
        # A dataset written before versions existed: it becomes the previous version.
        legacy = root.versions / f"{name}@legacy-{stamp}"
        os.replace(link, legacy)
        previous = legacy
    tmp = link.with_name(f".{name}.link-{stamp}")
    tmp.symlink_to(Path(VERSIONS_DIR) / version.name)
    os.replace(tmp, link)  # atomic: readers see the old version or the new one
    _prune(root, name, keep={version, previous})
    return version


def _prune(root: DataRoot, name: str, keep: set[Path | None]) -> None:
    """Delete the versions of ``name`` older than the current and the previous one."""
    kept = {k.resolve() for k in keep if k is not None}
    for folder in root.versions.glob(f"{name}@*"):
        if folder.resolve() not in kept:
            shutil.rmtree(folder, ignore_errors=True)
