"""Image augmentation inside the model, so it runs on the accelerator: the training-only crops
(:class:`Augment`) and the test-time flip average (:func:`flip_averaging_model`).

:class:`Augment` follows ``model.preprocess.Preprocess`` (which standardizes each image
and, in training, flips it): it moves and rescales each training image on its own, with its own
random draw, and passes images through unchanged at inference, so a saved model predicts
deterministically. Pure ``keras.ops``: it runs on the TensorFlow and JAX backends, under XLA, and
its seed generator is part of the model's state.

- random crop with padding (``crop_padding`` pixels): each image shifted by a whole number of
  pixels, up to that many each way, the uncovered border filled with 0 (after standardization,
  the image's mean): what ``RandomCrop(64, padding=p)`` does in the published recipes;
- random resized crop (``resized_crop_scale``, ``resized_crop_ratio``): a window of a random
  area fraction and aspect ratio at a random place, resized back to the image size (bilinear).

Both are one ``keras.ops.image.affine_transform`` per batch, a transform per image. Keras's own
layers are not used: ``RandomCrop`` draws one offset per batch (every image of a batch would
move the same way), ``RandomTranslation`` and ``RandomZoom`` mark themselves as not compilable
(``supports_jit = False``), which turns XLA off for the whole model and its training step, and
``RandomZoom`` zooms about the image's centre only.

The flip stays in ``Preprocess`` (the homework's model is unchanged when nothing else is asked).
Mixing images (MixUp, CutMix) needs the labels, so it lives in the training step
(``trainer_service.engine.objective``), not here.

**Test-time flip** (a run's ``tta_flip``): :func:`flip_averaged` averages the network's logits
for each image and its mirror; :func:`flip_averaging_model` is the same as an image -> logits
model (weights shared with the network), what a run's validation, predictions and exports use.
Its mirror is a registered layer (:class:`Mirror`), so the wrapped model saves and loads like
any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import layers, ops

from trainer_service.model.blocks import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class Augment(layers.Layer):
    """Random crop with padding and/or random resized crop of each image, in training only.

    Takes float images [B, H, W, C] (standardized) and returns the same shape and dtype.
    """

    def __init__(
        self,
        crop_padding: int = 0,
        resized_crop_scale: Sequence[float] | None = None,
        resized_crop_ratio: Sequence[float] = (0.75, 4 / 3),
        seed: int | None = None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int):
            raise ValueError(f"crop_padding must be an int in 0..32, got {crop_padding!r}")
        if not 0 <= crop_padding <= 32:
            raise ValueError(f"crop_padding must be an int in 0..32, got {crop_padding!r}")
        self.crop_padding = crop_padding
        self.resized_crop_scale = None if resized_crop_scale is None else list(resized_crop_scale)
        self.resized_crop_ratio = list(resized_crop_ratio)
        if self.resized_crop_scale is not None:
            low, high = self.resized_crop_scale
            if not 0 < low <= high <= 1:
                raise ValueError(f"resized_crop_scale must be 0 < min <= max <= 1, got {low, high}")
        if not 0 < self.resized_crop_ratio[0] <= self.resized_crop_ratio[1]:
            raise ValueError(f"resized_crop_ratio must be 0 < min <= max, got {resized_crop_ratio}")
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or (not self.crop_padding and self.resized_crop_scale is None):
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[-3], images.shape[-2]
        zeros, ones = ops.zeros((batch,)), ops.ones((batch,))
        # Output pixel (x, y) reads input (sx * x + tx, sy * y + ty): a scale and an offset.
        sx, sy, tx, ty = ones, ones, zeros, zeros
        if self.resized_crop_scale is not None:
            sx, sy, tx, ty = self._resized_crop(batch, height, width)
        if self.crop_padding:
            shift = keras.random.randint(
                (2, batch), -self.crop_padding, self.crop_padding + 1, seed=self._seed_generator
            )
            tx = tx + ops.cast(shift[0], "float32")
            ty = ty + ops.cast(shift[1], "float32")
        transform = ops.stack([sx, zeros, tx, zeros, sy, ty, zeros, zeros], axis=1)
        return ops.image.affine_transform(
            images,
            transform,
            # whole-pixel shifts alone copy pixels exactly; a rescaled window interpolates
            interpolation="bilinear" if self.resized_crop_scale is not None else "nearest",
            fill_mode="constant" if self.crop_padding else "nearest",
            fill_value=0.0,
        )

    def _resized_crop(self, batch, height: int, width: int):
        """Per image, the scale and offset that map the output onto a random window."""
        seed = self._seed_generator
        low, high = self.resized_crop_scale
        area = keras.random.uniform((batch,), low, high, seed=seed)
        log_lo, log_hi = (math.log(r) for r in self.resized_crop_ratio)
        ratio = ops.exp(keras.random.uniform((batch,), log_lo, log_hi, seed=seed))
        # The window's width and height as fractions of the image's (at most all of it).
        w = ops.minimum(ops.sqrt(area * ratio), 1.0)
        h = ops.minimum(ops.sqrt(area / ratio), 1.0)
        x0 = keras.random.uniform((batch,), seed=seed) * (1.0 - w)
        y0 = keras.random.uniform((batch,), seed=seed) * (1.0 - h)
        # Output pixel centre x + 0.5 maps to x0 * W + (x + 0.5) * w, less the input's 0.5.
        return w, h, x0 * width + 0.5 * w - 0.5, y0 * height + 0.5 * h - 0.5

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "crop_padding": self.crop_padding,
            "resized_crop_scale": self.resized_crop_scale,
            "resized_crop_ratio": self.resized_crop_ratio,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class Mirror(layers.Layer):
    """Every image of a batch [B, H, W, C] flipped left-right (always: not a random flip)."""

    def call(self, images):
        return ops.flip(images, axis=-2)

    def compute_output_shape(self, input_shape):
        return input_shape


def flip_averaged(network: keras.Model, images, training=False):
    """The mean of the network's logits for ``images`` and for their left-right mirrors."""
    mirrored = ops.flip(images, axis=-2)
    return (network(images, training=training) + network(mirrored, training=training)) / 2.0


def flip_averaging_model(network: keras.Model) -> keras.Model:
    """An image -> logits model giving :func:`flip_averaged` logits (weights shared)."""
    inputs = keras.Input(network.input.shape[1:], dtype=network.input.dtype, name="images")
    mirrored = Mirror(name="mirror", dtype=network.input.dtype)(inputs)
    averaged = layers.Average(name="flip_average", dtype="float32")(
        [network(inputs), network(mirrored)]
    )
    return keras.Model(inputs, averaged, name=f"{network.name}_flip_averaged")
