"""A small, learnable, complete prepared dataset (shards + metadata) built with shard_format alone.

For tests of readers (the trainer) that must not depend on the dataset service's writer.
Each class has its own colour and stripe orientation, so a tiny CNN learns it in a few epochs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from datavolume import DataRoot
from datavolume.datasets import write_metadata
from shard_format.metadata import (
    ClassInfo,
    DatasetMetadata,
    Provenance,
    ShardInfo,
    SplitInfo,
)
from shard_format.schema import TEST, TRAIN, UNLABELED, VAL, shard_file_name
from tests.utils.shards import jpeg_bytes


def class_image(label: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    angle = np.pi * label / classes
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.5 + phase)
    hue = np.array([np.cos(angle), np.cos(angle + 2.1), np.cos(angle + 4.2)], np.float32)
    image = 128 + 60 * stripes[..., None] * hue + rng.normal(0, 12, (64, 64, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_toy_dataset(
    data_root: Path,
    name: str = "toy",
    *,
    classes: int = 4,
    train_per_class: int = 32,
    val_per_class: int = 8,
    test_images: int = 8,
    shards: int = 2,
    seed: int = 0,
) -> DatasetMetadata:
    """Write ``datasets/<name>/`` under ``data_root`` and return its metadata."""
    import tensorflow as tf

    from shard_format.encode import serialize

    rng = np.random.default_rng(seed)
    out = DataRoot(data_root).dataset(name)
    out.mkdir(parents=True, exist_ok=True)
    wnids = [f"n{9000000 + i:08d}" for i in range(classes)]
    counts = {TRAIN: train_per_class * classes, VAL: val_per_class * classes, TEST: test_images}
    splits = {}
    for split, count in counts.items():
        labels = [UNLABELED] * count if split == TEST else [i % classes for i in range(count)]
        per_shard = [[] for _ in range(shards)]
        for i, label in enumerate(labels):
            pixels = class_image(label if label >= 0 else i % classes, classes, rng)
            stem = "test" if split == TEST else ("val" if split == VAL else wnids[label])
            record = serialize(
                jpeg_bytes(pixels), label, "" if label < 0 else wnids[label], f"{stem}_{i}.JPEG"
            )
            per_shard[i % shards].append(record)
        infos = []
        for index, records in enumerate(per_shard):
            path = out / shard_file_name(name, split, index, shards)
            with tf.io.TFRecordWriter(str(path)) as writer:
                for record in records:
                    writer.write(record)
            data = path.read_bytes()
            infos.append(
                ShardInfo(
                    file_name=path.name,
                    num_records=len(records),
                    num_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
            )
        splits[split] = SplitInfo(
            name=split, labeled=split != TEST, num_records=count, shards=infos
        )
    metadata = DatasetMetadata(
        name=name,
        classes=[ClassInfo(index=i, wnid=w, words=f"class {i}") for i, w in enumerate(wnids)],
        splits=splits,
        provenance=Provenance(source_kind="synthetic", source=__name__, shuffle_seed=0),
    )
    write_metadata(out, metadata)
    return metadata
