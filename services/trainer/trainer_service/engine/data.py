"""The run's input: dataset metadata and the tf.data pipelines of the train, val and test splits.

Batches are uint8 images with int32 labels (``shard_format.pipeline``); preprocessing runs in the
model. Steps per epoch come from the exact record counts in the metadata.
"""

from __future__ import annotations

import math
from pathlib import Path

from datavolume.datasets import DatasetUnavailable
from datavolume.layout import DataRoot
from jobkit.errors import JobFailed
from shard_format.metadata import DatasetMetadata
from shard_format.schema import FILE_NAME, IMAGE, TEST, TRAIN, VAL
from trainer_service.runs.config import Pipeline
from trainer_service.runs.dataset import usable_dataset


def load_dataset(
    root: DataRoot, name: str, folder: str | None = None
) -> tuple[Path, DatasetMetadata]:
    """:func:`trainer_service.runs.dataset.usable_dataset` (its version folder and metadata),
    failing the run as invalid input."""
    try:
        dataset = usable_dataset(root, name, folder)
    except DatasetUnavailable as exc:
        raise JobFailed(exc.message, "invalid_input") from None
    return dataset.folder, dataset.metadata


def _cache(pipeline: Pipeline, limited: bool) -> bool | None:
    # A pipeline cut short by a step limit never completes its cache (TF discards it, warning).
    if limited:
        return False
    return None if pipeline.cache == "auto" else pipeline.cache


def _exact_length(ds, steps: int):
    # Keras runs one extra (empty) step per epoch on a dataset of unknown length, and that step
    # counts in optimizer.iterations and in the metrics: state the exact length.
    import tensorflow as tf

    return ds.apply(tf.data.experimental.assert_cardinality(steps))


def val_pipeline(
    folder: Path,
    metadata: DatasetMetadata,
    batch_size: int,
    limit_steps: int | None = None,
    cache: bool | None = None,
):
    """(val batches in a fixed order, their count, images in them); the last batch may be short."""
    from shard_format.pipeline import build_split

    ds, steps = build_split(
        folder, VAL, batch_size=batch_size, training=False, metadata=metadata, cache=cache
    )
    ds = _exact_length(ds, steps)
    images = metadata.split(VAL).num_records
    if limit_steps and limit_steps < steps:
        ds, steps, images = ds.take(limit_steps), limit_steps, limit_steps * batch_size
    return ds, steps, images


def input_pipelines(pipeline: Pipeline, folder: Path, metadata: DatasetMetadata, seed: int):
    """(train dataset, train steps per epoch, val dataset) with the run's limits applied."""
    from shard_format.pipeline import build_split

    train_ds, steps = build_split(
        folder,
        TRAIN,
        batch_size=pipeline.batch_size,
        training=True,
        metadata=metadata,
        cache=_cache(pipeline, pipeline.limit_train_steps is not None),
        seed=seed,
        deterministic=pipeline.deterministic,
    )
    if steps < 1:
        count = metadata.split(TRAIN).num_records
        raise JobFailed(
            f"the train split has {count} images, fewer than one batch of {pipeline.batch_size}",
            "invalid_input",
        )
    train_ds = _exact_length(train_ds, steps)
    if pipeline.limit_train_steps and pipeline.limit_train_steps < steps:
        steps = pipeline.limit_train_steps
        train_ds = train_ds.take(steps)
    val_ds, _, _ = val_pipeline(
        folder,
        metadata,
        pipeline.batch_size,
        pipeline.limit_val_steps,
        _cache(pipeline, pipeline.limit_val_steps is not None),
    )
    return train_ds, steps, val_ds


def test_images(folder: Path, metadata: DatasetMetadata, batch_size: int):
    """Batches of (uint8 images, file names) of the test split, in shard order."""
    import tensorflow as tf

    from shard_format.records import decode

    def image_and_name(serialized):
        features = decode(serialized)
        return features[IMAGE], features[FILE_NAME]

    files = [str(p) for p in metadata.shard_paths(folder, TEST)]
    ds = tf.data.TFRecordDataset(files).map(image_and_name, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    return _exact_length(ds, math.ceil(metadata.split(TEST).num_records / batch_size)).prefetch(
        tf.data.AUTOTUNE
    )


def is_data_error(exc: BaseException) -> bool:
    """Whether reading the shards failed on their bytes (a corrupt or truncated record)."""
    name = type(exc).__name__
    return (
        name == "DataLossError"
        or "corrupted record" in str(exc)
        or (name == "InvalidArgumentError" and "truncated record" in str(exc))
    )


def corrupt_shards(folder: Path, metadata: DatasetMetadata) -> list[str]:
    """The shard files whose size or SHA-256 differs from what the metadata recorded."""
    from datavolume.files import file_digest

    bad = []
    for split in metadata.splits.values():
        for shard in split.shards:
            path = Path(folder) / shard.file_name
            if (
                not path.is_file()
                or path.stat().st_size != shard.num_bytes
                or file_digest(path) != shard.sha256
            ):
                bad.append(shard.file_name)
    return bad


def describe_corrupt_data(folder: Path, metadata: DatasetMetadata, name: str) -> str:
    """The readable reason of a run that read a corrupt record: which shards, what to do."""
    bad = corrupt_shards(folder, metadata)
    which = ", ".join(bad) if bad else "a shard (its checksum still matches: read error?)"
    return (
        f"dataset {name!r} has corrupt data: {which} differ from what was prepared; "
        f"re-prepare the dataset (a prepare of {name!r} rewrites exactly the damaged shards), "
        "then resume the run"
    )
