"""The host-side twin of ``trainer_service.model.preprocess.Preprocess`` (TF ops in tf.data), for
the input-pipeline benchmark's comparison with preprocessing on the CPU cores: the trainer itself
preprocesses inside the model, on the accelerator.
"""

from __future__ import annotations

import math

import tensorflow as tf

from shard_format.pipeline import DECODED_IMAGE_BYTES


def flip_generator(seed: int | None = None) -> tf.random.Generator:
    """The random state of a pipeline's host flips: seeded, or from the OS. Made once per
    pipeline, outside its map function: its state carries across epochs, so every epoch draws
    new flips (a seeded ``tf.random.uniform`` op restarts its sequence with each iterator)."""
    if seed is None:
        return tf.random.Generator.from_non_deterministic_state()
    return tf.random.Generator.from_seed(seed)


def preprocess_batch(
    images: tf.Tensor, training: bool, generator: tf.random.Generator | None = None
) -> tf.Tensor:
    """Host-side twin of :class:`trainer_service.model.preprocess.Preprocess` with TF ops, in as few
    passes over the batch as it takes (the host's cores also decode): the flip on the uint8
    images (a quarter of the bytes of the floats), then mean and std per image in the 0..255
    scale, where ``(x - mean) / max(std, 255 / sqrt(n))`` is the ``[0, 1]`` standardization.
    Training flips draw from ``generator`` (:func:`flip_generator`; TF's global one if None)."""
    if training:
        generator = generator or tf.random.get_global_generator()
        flip = generator.uniform((tf.shape(images)[0], 1, 1, 1)) < 0.5
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    x = tf.cast(images, tf.float32)
    centred = x - tf.reduce_mean(x, axis=[-3, -2, -1], keepdims=True)
    std = tf.sqrt(tf.reduce_mean(tf.square(centred), axis=[-3, -2, -1], keepdims=True))
    return centred / tf.maximum(std, 255.0 / math.sqrt(DECODED_IMAGE_BYTES))
