"""Prepared datasets as the dataset API shows them: summaries and details of the ready ones."""

from __future__ import annotations

import logging

from dataset_service.models import DatasetDetail, DatasetSummary, SplitSummary
from datavolume.datasets import DatasetUnavailable, ReadyDataset, dataset_names, open_dataset
from datavolume.layout import DataRoot

log = logging.getLogger(__name__)


def _summary(root: DataRoot, dataset: ReadyDataset) -> dict:
    metadata = dataset.metadata
    return {
        "name": metadata.name,
        "path": root.relative(root.dataset(metadata.name)),
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


def _ready(root: DataRoot, name: str) -> ReadyDataset | None:
    """The dataset if ready; None if absent or being written (an unreadable one is logged)."""
    try:
        return open_dataset(root, name)
    except DatasetUnavailable as exc:
        if exc.slug != "dataset-not-found":
            log.warning("ignoring dataset %r: %s", name, exc.message)
        return None


def list_datasets(root: DataRoot) -> list[DatasetSummary]:
    """Ready datasets, by name."""
    found = (_ready(root, name) for name in dataset_names(root))
    return [DatasetSummary(**_summary(root, dataset)) for dataset in found if dataset]


def get_dataset(root: DataRoot, name: str) -> DatasetDetail | None:
    dataset = _ready(root, name)
    if dataset is None:
        return None
    return DatasetDetail(**_summary(root, dataset), metadata=dataset.metadata)
