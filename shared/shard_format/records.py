"""Serialize records (writers) and parse/decode them (readers). Imports TensorFlow.

``serialize`` produces exactly what TFDS's ``FeaturesDict.serialize_example`` produces for the
features in :mod:`shard_format.schema`, so shards also load with ``tfds.builder_from_directory``.
"""

from __future__ import annotations

import tensorflow as tf

from shard_format.schema import CHANNELS, FILE_NAME, IMAGE, IMAGE_SIZE, LABEL, UNLABELED, WNID

FEATURE_SPEC = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    WNID: tf.io.FixedLenFeature([], tf.string),
    FILE_NAME: tf.io.FixedLenFeature([], tf.string),
}

_JPEG_MAGIC = b"\xff\xd8\xff"


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def serialize(image_jpeg: bytes, label: int, wnid: str, file_name: str) -> bytes:
    """One record: encoded JPEG bytes, class index (UNLABELED for test), wnid, source file name."""
    if not image_jpeg.startswith(_JPEG_MAGIC):
        raise ValueError(f"{file_name}: image bytes are not a JPEG; re-encode before serializing")
    if label < UNLABELED:
        raise ValueError(f"{file_name}: label must be >= {UNLABELED}, got {label}")
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE: _bytes(image_jpeg),
                LABEL: _int64(label),
                WNID: _bytes(wnid.encode()),
                FILE_NAME: _bytes(file_name.encode()),
            }
        )
    )
    # Deterministic map order: the same record is the same bytes in every process, so shards
    # written in parallel or re-written after a crash are byte-identical.
    return example.SerializeToString(deterministic=True)


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Raw features of one record: image stays encoded bytes, label is int32."""
    features = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    features[LABEL] = tf.cast(features[LABEL], tf.int32)
    return features


def decode_image(image_jpeg: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG -> uint8 [64, 64, 3] (grayscale/CMYK/PNG inputs are decoded to RGB too)."""
    image = tf.io.decode_jpeg(image_jpeg, channels=CHANNELS)
    return tf.ensure_shape(image, (IMAGE_SIZE, IMAGE_SIZE, CHANNELS))


def decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """All features of one record with the image decoded to uint8 [64, 64, 3]."""
    features = parse(serialized)
    features[IMAGE] = decode_image(features[IMAGE])
    return features


def decode_image_label(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(uint8 image, int32 label): what the training input pipeline needs, nothing more."""
    features = tf.io.parse_single_example(
        serialized, {IMAGE: FEATURE_SPEC[IMAGE], LABEL: FEATURE_SPEC[LABEL]}
    )
    return decode_image(features[IMAGE]), tf.cast(features[LABEL], tf.int32)
