"""Prepared datasets on the volume: folders under ``datasets/`` with a readable metadata file."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import ValidationError

from dataset_service.models import DatasetDetail, DatasetSummary, SplitSummary
from dataset_service.paths import relative_to_root
from jobkit.files import atomic_write_text
from shard_format.metadata import DatasetMetadata, SchemaVersionError, load_metadata
from shard_format.schema import METADATA_FILE, dataset_dir, datasets_root

log = logging.getLogger(__name__)


def write_metadata(folder: Path, metadata: DatasetMetadata) -> Path:
    """Write a dataset's metadata atomically: no reader sees half of it. Returns its path."""
    path = Path(folder) / METADATA_FILE
    atomic_write_text(path, metadata.model_dump_json(indent=2))
    return path


def _summary(data_root: Path, metadata: DatasetMetadata) -> dict:
    return {
        "name": metadata.name,
        "path": relative_to_root(data_root, dataset_dir(data_root, metadata.name)),
        "num_classes": metadata.num_classes,
        "splits": {
            name: SplitSummary(
                num_records=split.num_records,
                num_shards=len(split.shards),
                num_bytes=split.num_bytes,
            )
            for name, split in metadata.splits.items()
        },
        "source_kind": metadata.provenance.source_kind,
        "created_at": metadata.provenance.created_at,
    }


def read_dataset(data_root: Path, name: str) -> DatasetMetadata | None:
    """The metadata of a ready dataset, or None (absent, being written, or unreadable)."""
    folder = dataset_dir(data_root, name)
    try:
        metadata = load_metadata(folder)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, SchemaVersionError, ValidationError) as exc:
        log.warning("ignoring %s: unreadable metadata (%s)", folder, exc)
        return None
    return metadata if metadata.name == name else None


def list_datasets(data_root: Path) -> list[DatasetSummary]:
    """Ready datasets, by name."""
    root = datasets_root(data_root)
    if not root.is_dir():
        return []
    found = []
    # Hidden folders are the service's own (staging, versions), not datasets.
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        metadata = read_dataset(data_root, folder.name)
        if metadata is not None:
            found.append(DatasetSummary(**_summary(data_root, metadata)))
    return found


def get_dataset(data_root: Path, name: str) -> DatasetDetail | None:
    metadata = read_dataset(data_root, name)
    if metadata is None:
        return None
    return DatasetDetail(**_summary(data_root, metadata), metadata=metadata)
