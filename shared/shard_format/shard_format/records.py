"""Parse and decode records (readers). Imports TensorFlow.

Records are written by :mod:`shard_format.encode` (no TensorFlow there): the bytes TFDS's
``FeaturesDict.serialize_example`` gives for the features in :mod:`shard_format.schema`, so
shards also load with ``tfds.builder_from_directory``.
"""

from __future__ import annotations

import tensorflow as tf

from shard_format.schema import CHANNELS, FILE_NAME, IMAGE, IMAGE_SIZE, LABEL, WNID

FEATURE_SPEC = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    WNID: tf.io.FixedLenFeature([], tf.string),
    FILE_NAME: tf.io.FixedLenFeature([], tf.string),
}


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


def decode_batch(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of records -> (uint8 images [B, 64, 64, 3], int32 labels [B]).

    One vectorized parse for the batch and the JPEG decodes run in parallel inside it: per
    record, tf.data's own overhead would cost more than the decode of a 64x64 image.
    """
    features = tf.io.parse_example(
        serialized, {IMAGE: FEATURE_SPEC[IMAGE], LABEL: FEATURE_SPEC[LABEL]}
    )
    images = tf.map_fn(
        decode_image,
        features[IMAGE],
        fn_output_signature=tf.TensorSpec((IMAGE_SIZE, IMAGE_SIZE, CHANNELS), tf.uint8),
        parallel_iterations=16,
    )
    return images, tf.cast(features[LABEL], tf.int32)
