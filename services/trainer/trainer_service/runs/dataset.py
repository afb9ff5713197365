"""The prepared dataset a run reads: ready on the volume, with labeled train and val splits;
and the record of the version it read (``dataset.json`` in the run folder).

Checked once by the API (before a 202) and once by the run. A run reads the version it began
with to its end, across resumes (``dataset.json`` pins it). Keras-free: the API process imports
it.
"""

from __future__ import annotations

from typing import Any

from datavolume.datasets import DatasetUnavailable, ReadyDataset, open_dataset
from datavolume.files import atomic_write_json, file_digest, read_json
from datavolume.layout import DataRoot
from datavolume.runs import RunFolder
from shard_format.schema import METADATA_FILE, TRAIN, VAL


def usable_dataset(root: DataRoot, name: str, folder: str | None = None) -> ReadyDataset:
    """Dataset ``name`` as :func:`datavolume.datasets.open_dataset` opens it (its current
    version, resolved once, or the version in ``folder``), if it has labeled, non-empty train and
    val splits; :class:`DatasetUnavailable` otherwise."""
    dataset = open_dataset(root, name, folder)
    for split in (TRAIN, VAL):
        info = dataset.metadata.splits.get(split)
        if info is None or not info.labeled or info.num_records == 0:
            raise DatasetUnavailable(f"{name!r} has no labeled {split} split", "dataset-unusable")
    return dataset


# -- what a run read -------------------------------------------------------------------------


def record_dataset(run: RunFolder, root: DataRoot, dataset: ReadyDataset) -> dict[str, Any]:
    """Write ``dataset.json`` into the run folder: the dataset's name, the version folder the run
    reads (``datasets/.versions/<name>@<time>``), the SHA-256 of its metadata file, and the
    classes in the model's output order. Written when a run starts (a resume rewrites it with the
    version it reads then); it is how the run's predictions name their classes."""
    record = {
        **_describe(root, dataset),
        "metadata_sha256": file_digest(dataset.folder / METADATA_FILE),
    }
    atomic_write_json(run.dataset_record, record)
    return record


def pinned_folder(run: RunFolder) -> str | None:
    """The dataset version folder the run began with (``dataset.json``), or None for a run that
    has not started. A run reads that version to its end, across resumes."""
    record = read_json(run.dataset_record, tolerate_corrupt=True)
    return record.get("folder") if isinstance(record, dict) else None


def dataset_status(run: RunFolder, root: DataRoot) -> dict[str, Any] | None:
    """What the run's status says of its dataset: name, version, metadata digest, whether that
    version is still on the volume (a resume needs it) and still the current one."""
    record = read_json(run.dataset_record, tolerate_corrupt=True)
    if not isinstance(record, dict) or "folder" not in record:
        return None
    folder = root.path / record["folder"]
    current = root.dataset(record["name"])
    return {
        "name": record["name"],
        "version": record.get("version"),
        "metadata_sha256": record.get("metadata_sha256"),
        "available": folder.is_dir(),
        "current": current.exists() and folder.resolve() == current.resolve(),
    }


def read_dataset_record(run: RunFolder, root: DataRoot) -> dict[str, Any]:
    """The run's ``dataset.json``; for a run from before it existed, the same facts read from
    the dataset it names as it is now (:class:`DatasetUnavailable` if it is gone)."""
    record = read_json(run.dataset_record, tolerate_corrupt=True)
    if record is not None:
        return record
    name = (read_json(run.config, tolerate_corrupt=True) or {}).get("dataset")
    if not name:
        raise DatasetUnavailable(f"run {run.root.name} names no dataset", "dataset-not-found")
    return _describe(root, open_dataset(root, name))


def _describe(root: DataRoot, dataset: ReadyDataset) -> dict[str, Any]:
    metadata = dataset.metadata
    return {
        "name": metadata.name,
        "version": dataset.folder.name,
        "folder": root.relative(dataset.folder),
        "num_classes": metadata.num_classes,
        "classes": [
            {"index": c.index, "wnid": c.wnid, "words": c.words}
            for c in sorted(metadata.classes, key=lambda c: c.index)
        ],
    }
