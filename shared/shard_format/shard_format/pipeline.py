"""tf.data input pipelines over a split's shards. Imports TensorFlow.

Training: parallel interleave over shuffled shards, decode to uint8 (a batch of records at a
time, then unbatched), cache the decoded images in memory when they fit, shuffle, batch,
prefetch; element order need not be deterministic (unless asked: ``deterministic=True``).
Evaluation: the same without shuffling and with deterministic order.

Batches stay uint8 and preprocessing runs inside the model (``Preprocess`` layer) on the
accelerator: 4x less host-to-device traffic and no float work on the CPU cores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from shard_format.metadata import DatasetMetadata, load_metadata
from shard_format.records import decode_batch
from shard_format.schema import IMAGE_SHAPE

AUTOTUNE = tf.data.AUTOTUNE
DECODED_IMAGE_BYTES = math.prod(IMAGE_SHAPE)
#: Records parsed and decoded together (then unbatched, so shuffling stays per image).
DECODE_BATCH = 256


def fits_in_memory(num_records: int, fraction: float = 0.5) -> bool:
    """Whether ``num_records`` decoded uint8 images take less than ``fraction`` of free memory."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not on this platform: be conservative
        return False
    return num_records * DECODED_IMAGE_BYTES < fraction * available


def build_dataset(
    files: Sequence[str | Path],
    *,
    batch_size: int,
    training: bool,
    num_records: int | None = None,
    cache: bool | None = None,
    shuffle_buffer: int = 20_000,
    seed: int | None = None,
    drop_remainder: bool | None = None,
    deterministic: bool | None = None,
) -> tf.data.Dataset:
    """Batches of ``(images, labels)`` from TFRecord shards.

    Images are uint8 [B, 64, 64, 3] (the model standardizes and augments them), labels int32.
    ``cache=None`` caches when ``num_records`` decoded images fit in memory (see
    :func:`fits_in_memory`).
    ``drop_remainder`` defaults to ``training`` (static batch shapes for the compiled step).
    ``deterministic`` (default: not ``training``) keeps the element order of the parallel
    steps: with a ``seed``, a training pipeline then yields the same batches on every run.
    """
    if not files:
        raise ValueError("no shard files given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if cache is None:
        cache = num_records is not None and fits_in_memory(num_records)
    if drop_remainder is None:
        drop_remainder = training
    ordered = not training if deterministic is None else deterministic

    files = [str(f) for f in files]
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 16),
        num_parallel_calls=AUTOTUNE,
        deterministic=ordered,
    )
    ds = ds.batch(DECODE_BATCH).map(
        decode_batch, num_parallel_calls=AUTOTUNE, deterministic=ordered
    )
    ds = ds.unbatch()
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(
        batch_size,
        drop_remainder=drop_remainder,
        num_parallel_calls=AUTOTUNE,
        deterministic=ordered,
    )
    options = tf.data.Options()
    options.deterministic = ordered
    return ds.with_options(options).prefetch(AUTOTUNE)


def build_split(
    dataset_dir: Path,
    split: str,
    *,
    batch_size: int,
    training: bool,
    metadata: DatasetMetadata | None = None,
    **kwargs,
) -> tuple[tf.data.Dataset, int]:
    """The pipeline for one split of a prepared dataset and its exact steps per epoch."""
    metadata = metadata or load_metadata(dataset_dir)
    info = metadata.split(split)
    drop = kwargs.get("drop_remainder")
    drop = training if drop is None else drop
    steps = info.num_records // batch_size if drop else math.ceil(info.num_records / batch_size)
    ds = build_dataset(
        metadata.shard_paths(dataset_dir, split),
        batch_size=batch_size,
        training=training,
        num_records=info.num_records,
        **kwargs,
    )
    return ds, steps
