"""The prepared dataset a run reads: ready on the volume, with labeled train and val splits.

Checked once by the API (before a 202) and once by the run. Keras-free: the API process
imports it.
"""

from __future__ import annotations

from datavolume.datasets import DatasetUnavailable, ReadyDataset, open_dataset
from datavolume.layout import DataRoot
from shard_format.schema import TRAIN, VAL


def usable_dataset(root: DataRoot, name: str) -> ReadyDataset:
    """Dataset ``name`` as :func:`datavolume.datasets.open_dataset` opens it (its version folder
    resolved once: a run keeps reading the version it began with), if it has labeled, non-empty
    train and val splits; :class:`DatasetUnavailable` otherwise."""
    dataset = open_dataset(root, name)
    for split in (TRAIN, VAL):
        info = dataset.metadata.splits.get(split)
        if info is None or not info.labeled or info.num_records == 0:
            raise DatasetUnavailable(f"{name!r} has no labeled {split} split", "dataset-unusable")
    return dataset
