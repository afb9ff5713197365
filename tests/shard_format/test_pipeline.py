import numpy as np
import pytest
import tensorflow as tf

from datavolume.datasets import write_metadata
from shard_format.metadata import (
    ClassInfo,
    DatasetMetadata,
    Provenance,
    ShardInfo,
    SplitInfo,
)
from shard_format.pipeline import build_dataset, build_split, fits_in_memory
from tests.utils.shards import write_shards


def _labels(ds):
    return np.concatenate([y.numpy() for _, y in ds])


def test_eval_pipeline_is_complete_deterministic_and_uint8(tmp_path, toy_records):
    files = write_shards(tmp_path, toy_records, shards=3)
    ds = build_dataset(files, batch_size=4, training=False)
    first, second = _labels(ds), _labels(ds)
    assert len(first) == 17  # the last, partial batch is kept in evaluation
    np.testing.assert_array_equal(first, second)
    assert sorted(first.tolist()) == sorted(r[1] for r in toy_records)
    images, _ = next(iter(ds))
    assert images.dtype == tf.uint8 and images.shape == (4, 64, 64, 3)


def test_training_pipeline_shuffles_and_drops_remainder(tmp_path, toy_records):
    files = write_shards(tmp_path, toy_records, shards=3)
    ds = build_dataset(files, batch_size=4, training=True, cache=True, seed=1)
    epochs = [_labels(ds) for _ in range(3)]
    assert all(len(e) == 16 for e in epochs)  # static batch shape for the compiled step
    assert any(not np.array_equal(epochs[0], e) for e in epochs[1:])  # reshuffled per epoch


def test_bad_arguments_are_refused(tmp_path, toy_records):
    with pytest.raises(ValueError, match="no shard files"):
        build_dataset([], batch_size=4, training=False)
    files = write_shards(tmp_path, toy_records, shards=1)
    with pytest.raises(ValueError, match="batch_size"):
        build_dataset(files, batch_size=0, training=False)


def test_build_split_counts_exact_steps(tmp_path, toy_records):
    files = write_shards(tmp_path, toy_records, shards=3)
    shards = [
        ShardInfo(file_name=f.name, num_records=n, num_bytes=f.stat().st_size, sha256="0" * 64)
        for f, n in zip(files, (6, 6, 5), strict=True)
    ]
    meta = DatasetMetadata(
        name="toy",
        classes=[ClassInfo(index=i, wnid=f"n0000000{i}") for i in range(5)],
        splits={"train": SplitInfo(name="train", labeled=True, num_records=17, shards=shards)},
        provenance=Provenance(source_kind="synthetic", source="test", shuffle_seed=0),
    )
    write_metadata(tmp_path, meta)
    _, train_steps = build_split(tmp_path, "train", batch_size=4, training=True)
    ds, eval_steps = build_split(tmp_path, "train", batch_size=4, training=False)
    assert (train_steps, eval_steps) == (4, 5)
    assert sum(1 for _ in ds) == eval_steps


def test_fits_in_memory_scales_with_count():
    assert fits_in_memory(10)
    assert not fits_in_memory(10**12)
