"""The prepared dataset a run reads, checked once for the API (before a 202) and the run.

Keras-free: the API process imports it.
"""

from __future__ import annotations

from pathlib import Path

from shard_format.metadata import DatasetMetadata, SchemaVersionError, load_metadata
from shard_format.schema import TRAIN, VAL, dataset_dir


class DatasetUnusable(Exception):
    """The dataset cannot be trained on; ``slug`` names why (for the problem type)."""

    def __init__(self, message: str, slug: str) -> None:
        super().__init__(message)
        self.message, self.slug = message, slug


def usable_dataset(data_root: Path, name: str) -> tuple[Path, DatasetMetadata]:
    """The dataset's folder and metadata: prepared, of this schema version, with labeled,
    non-empty train and val splits; :class:`DatasetUnusable` otherwise.

    The folder is resolved once: the dataset service may publish a new version of the dataset
    while a run trains (it swaps a symlink), and the run goes on reading the version it began
    with.
    """
    folder = dataset_dir(data_root, name)
    folder = folder.resolve() if folder.exists() else folder
    try:
        metadata = load_metadata(folder)
    except FileNotFoundError:
        raise DatasetUnusable(
            f"no prepared dataset {name!r} (absent, or still being written)", "dataset-not-found"
        ) from None
    except SchemaVersionError as exc:
        raise DatasetUnusable(f"{name!r}: {exc}", "dataset-schema-version") from None
    except ValueError as exc:  # unreadable JSON or metadata
        raise DatasetUnusable(
            f"{name!r} has unreadable metadata: {exc}", "dataset-unusable"
        ) from None
    for split in (TRAIN, VAL):
        info = metadata.splits.get(split)
        if info is None or not info.labeled or info.num_records == 0:
            raise DatasetUnusable(f"{name!r} has no labeled {split} split", "dataset-unusable")
    return folder, metadata
