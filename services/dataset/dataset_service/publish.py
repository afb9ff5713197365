"""Build a dataset beside the one readers use, and swap it in only once it is complete.

    datasets/<name>                  -> .versions/<name>@<time>   (a symlink; what readers open)
    datasets/.versions/<name>@<time>/  complete versions: the current one and the one before it
    datasets/.staging/<name>/          the version being written (resumable after a crash)

A prepare writes into the staging folder, seeded with hard links to the current version's shards
and their write records so that unchanged shards are reused (the writer replaces files by
rename, never in place, so a linked file of the current version is never modified). Only after
the metadata is written does :func:`publish` move the staging folder to a new version and
replace the symlink atomically. A failed or cancelled prepare therefore leaves the current
dataset exactly as it was, and a reader that resolved the link (the trainer does, at the start
of a run) keeps reading its version: the previous version is kept until the next swap.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from shard_format.schema import METADATA_FILE, dataset_dir, datasets_root

STAGING_DIR = ".staging"
VERSIONS_DIR = ".versions"
#: Not seeded into a new staging folder: its presence would make a half-built one look ready.
_NOT_SEEDED = {METADATA_FILE}


def staging_dir(data_root: Path, name: str) -> Path:
    return datasets_root(data_root) / STAGING_DIR / name


def versions_root(data_root: Path) -> Path:
    return datasets_root(data_root) / VERSIONS_DIR


def current_version(data_root: Path, name: str) -> Path | None:
    """The folder ``datasets/<name>`` points to (or is), if any."""
    link = dataset_dir(data_root, name)
    return link.resolve() if link.is_dir() else None


def open_staging(data_root: Path, name: str) -> Path:
    """The staging folder of ``name``; a new one starts from hard links to the current version's
    shards and write records (what a resumed staging folder already has is kept)."""
    staging = staging_dir(data_root, name)
    fresh = not staging.exists()
    staging.mkdir(parents=True, exist_ok=True)
    current = current_version(data_root, name)
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


def publish(data_root: Path, name: str, staging: Path) -> Path:
    """Make the complete ``staging`` folder the current version of ``name``; returns it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    version = versions_root(data_root) / f"{name}@{stamp}"
    version.parent.mkdir(parents=True, exist_ok=True)
    previous = current_version(data_root, name)
    os.replace(staging, version)
    link = dataset_dir(data_root, name)
    if link.exists() and not link.is_symlink():
        # A dataset written before versions existed: it becomes the previous version.
        legacy = versions_root(data_root) / f"{name}@legacy-{stamp}"
        os.replace(link, legacy)
        previous = legacy
    tmp = link.with_name(f".{name}.link-{stamp}")
    tmp.symlink_to(Path(VERSIONS_DIR) / version.name)
    os.replace(tmp, link)  # atomic: readers see the old version or the new one
    _prune(data_root, name, keep={version, previous})
    return version


def _prune(data_root: Path, name: str, keep: set[Path | None]) -> None:
    """Delete the versions of ``name`` older than the current and the previous one."""
    for folder in versions_root(data_root).glob(f"{name}@*"):
        if folder.resolve() not in {k.resolve() for k in keep if k is not None}:
            shutil.rmtree(folder, ignore_errors=True)
