"""The old homework's way of sharding Tiny ImageNet, reproduced faithfully as a baseline.

    python -m bench.homework_baseline TRAIN_DIR OUT_DIR [--batch-size 128] [--shards 16]

What the homework did, and this does:

* ``ImageDataGenerator(rescale=1/255, samplewise_center=True, samplewise_std_normalization=True,
  horizontal_flip=True).flow_from_directory(train_dir, target_size=(64, 64), batch_size=...,
  class_mode="sparse")`` over the *train* folder only (``train/<wnid>/images/*.JPEG``: one folder
  per class, which is why the homework could not use val as shipped). Keras's legacy
  ``tf.keras.preprocessing.image`` path (still in Keras 3.15; it needs scipy), not tf-keras.
* every image of one pass over the iterator is written as one ``tf.train.Example`` holding the
  raw bytes of the float32 [64, 64, 3] tensor (49,152 bytes) and the label, into TFRecord
  shards, sequentially in one process.

Consequences the benchmark reports: the random flip is drawn once and baked into the data (every
epoch sees the same flips), the standardization is frozen into the records, each record is
~20x the JPEG, and the class order is flow_from_directory's alphabetical wnid order, not
``wnids.txt``'s. Only train is sharded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_KEY = "image"
LABEL_KEY = "label"


def homework_generator():
    import tensorflow as tf

    return tf.keras.preprocessing.image.ImageDataGenerator(
        rescale=1.0 / 255,
        samplewise_center=True,
        samplewise_std_normalization=True,
        horizontal_flip=True,
    )


def float_example(image: np.ndarray, label: int) -> bytes:
    """One record: the float32 image tensor's raw bytes and the int label."""
    import tensorflow as tf

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE_KEY: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[image.astype(np.float32).tobytes()])
                ),
                LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
        )
    ).SerializeToString()


def write_homework_shards(
    train_dir: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 128,
    num_shards: int = 16,
    class_mode: str = "sparse",
    seed: int = 0,
) -> dict:
    """Shard ``train_dir`` the homework's way; returns counts, bytes and seconds.

    ``seconds`` covers listing the files, the pass over the iterator and writing; the
    TensorFlow import is done before the clock starts.
    """
    import tensorflow as tf

    if class_mode not in ("sparse", "categorical"):
        raise ValueError(f"class_mode must be 'sparse' or 'categorical', got {class_mode!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    iterator = homework_generator().flow_from_directory(
        str(train_dir),
        target_size=(64, 64),
        batch_size=batch_size,
        class_mode=class_mode,
        shuffle=True,
        seed=seed,
    )
    total = iterator.samples
    num_shards = max(1, min(num_shards, total))
    per_shard = -(-total // num_shards)
    paths = [
        out_dir / f"homework-train.tfrecord-{k:05d}-of-{num_shards:05d}" for k in range(num_shards)
    ]
    written = 0
    writer = None
    for _ in range(len(iterator)):
        images, labels = next(iterator)
        if class_mode == "categorical":
            labels = labels.argmax(axis=-1)
        for image, label in zip(images, labels, strict=True):
            if written % per_shard == 0:
                if writer is not None:
                    writer.close()
                writer = tf.io.TFRecordWriter(str(paths[written // per_shard]))
            writer.write(float_example(image, int(label)))
            written += 1
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - start
    files = [p for p in paths if p.exists()]
    return {
        "images": written,
        "seconds": seconds,
        "bytes": sum(p.stat().st_size for p in files),
        "shards": len(files),
        "classes": len(iterator.class_indices),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("train_dir", type=Path, help="train/ folder of tiny-imagenet-200")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--class-mode", choices=["sparse", "categorical"], default="sparse")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    r = write_homework_shards(
        args.train_dir,
        args.out_dir,
        batch_size=args.batch_size,
        num_shards=args.shards,
        class_mode=args.class_mode,
    )
    print(
        f"{r['images']} images in {r['seconds']:.1f} s ({r['images'] / r['seconds']:.0f}/s), "
        f"{r['bytes'] / max(r['images'], 1):,.0f} bytes per image, {r['shards']} shards"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
