"""The model's first layer: read-time preprocessing in pure Keras ops, so it runs inside the
model on any backend (TensorFlow, JAX) and on the accelerator.

The old homework's intent, done right: rescale to [0, 1], per-image (sample-wise) centering and
std normalization, and a random horizontal flip in training only, drawn anew on every call (so
every epoch sees new flips; nothing is baked into the shards).

Files saved before this layer moved here from the shard format library name it
``shard_format>Preprocess``: that name is registered too, so they keep loading.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from trainer_service.model.blocks import PACKAGE

#: The name Keras recorded for this layer in files saved while it lived in ``shard_format``.
FORMER_NAME = "shard_format>Preprocess"


def standardize(images):
    """uint8/float images [..., H, W, C] -> float32, each image with mean 0 and std 1.

    Matches ``tf.image.per_image_standardization`` applied to ``images / 255``: the std is
    floored at ``1/sqrt(H*W*C)`` so a constant image maps to zeros instead of dividing by 0.
    """
    x = ops.cast(images, "float32") / 255.0
    num = math.prod(x.shape[-3:])
    mean = ops.mean(x, axis=(-3, -2, -1), keepdims=True)
    std = ops.std(x, axis=(-3, -2, -1), keepdims=True)
    return (x - mean) / ops.maximum(std, 1.0 / math.sqrt(num))


def random_flip(images, seed):
    """Flip each image of a batch [B, H, W, C] left-right with probability 1/2.

    ``seed`` is a ``keras.random.SeedGenerator`` (new draws on every call) or an int.
    """
    batch = ops.shape(images)[0]
    flip = keras.random.uniform((batch, 1, 1, 1), seed=seed) < 0.5
    return ops.where(flip, ops.flip(images, axis=-2), images)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Preprocess(keras.layers.Layer):
    """Standardize every image; flip randomly only when ``training`` is true.

    Put it first in the model to run preprocessing on the accelerator; it takes uint8 batches.
    It always computes in float32 (even under a mixed-precision policy); the next layer casts.
    """

    def __init__(self, flip: bool = True, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.flip = flip
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        x = standardize(images)
        if training and self.flip:
            x = random_flip(x, self._seed_generator)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "seed": self.seed}


keras.saving.get_custom_objects()[FORMER_NAME] = Preprocess
