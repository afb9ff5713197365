import shutil

import pytest

from dataset_service.datasets import get_dataset, list_datasets
from datavolume import DataRoot
from shard_format.schema import METADATA_FILE


@pytest.fixture
def volume(reference, tmp_path):
    """A volume with the reference dataset, a folder being written and a broken one."""
    root, metadata = reference
    shutil.copytree(
        DataRoot(root).dataset(metadata.name), DataRoot(tmp_path).dataset(metadata.name)
    )
    DataRoot(tmp_path).dataset("half-written").mkdir()  # no metadata: not (yet) a dataset
    DataRoot(tmp_path).dataset("broken").mkdir()
    (DataRoot(tmp_path).dataset("broken") / METADATA_FILE).write_text("{not json")
    return DataRoot(tmp_path), metadata


def test_lists_ready_datasets_with_split_counts(volume):
    root, metadata = volume
    (found,) = list_datasets(root)
    assert found.name == metadata.name and found.path == "datasets/tiny-imagenet-200"
    assert {s: v.num_records for s, v in found.splits.items()} == {
        "train": 80,
        "val": 20,
        "test": 10,
    }
    assert found.splits["train"].num_shards == len(metadata.splits["train"].shards)
    assert found.num_classes == 4 and found.source_kind == "synthetic"


def test_get_dataset(volume):
    root, metadata = volume
    detail = get_dataset(root, metadata.name)
    assert detail is not None and detail.metadata == metadata
    assert get_dataset(root, "half-written") is None
    assert get_dataset(root, "absent") is None


def test_empty_volume(tmp_path):
    assert list_datasets(DataRoot(tmp_path)) == []
