"""Builders of real JPEGs and shards written with the shared serializer (no service involved)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from shard_format.schema import shard_file_name


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_shards(directory: Path, records: list[tuple[bytes, int, str, str]], shards: int):
    """Write ``records`` round-robin into ``shards`` files; returns the file paths."""
    import tensorflow as tf

    from shard_format.encode import serialize

    paths = [directory / shard_file_name("toy", "train", i, shards) for i in range(shards)]
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    for i, record in enumerate(records):
        writers[i % shards].write(serialize(*record))
    for w in writers:
        w.close()
    return paths
