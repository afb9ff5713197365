"""Augment: whole-pixel random crops with padding and random resized crops, per image, in
training only; shapes and dtype kept, reproducible under a seed, on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from trainer_service.model.augment import Augment
from trainer_service.model.resnet import build_resnet


def _images(n=8, size=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _shift_of(out, image, padding):
    """The whole-pixel (dy, dx) that turns ``image`` into ``out`` (zeros where uncovered)."""
    size = image.shape[0]
    for dy in range(-padding, padding + 1):
        for dx in range(-padding, padding + 1):
            shifted = np.zeros_like(image)
            src = image[max(0, -dy) : size - max(0, dy), max(0, -dx) : size - max(0, dx)]
            shifted[max(0, dy) : size - max(0, -dy), max(0, dx) : size - max(0, -dx)] = src
            if np.array_equal(shifted, out):
                return dy, dx
    return None


@pytest.mark.parametrize(
    "kwargs", [{"crop_padding": 3}, {"resized_crop_scale": [0.3, 1.0]}, {"crop_padding": 2,
     "resized_crop_scale": [0.5, 1.0], "resized_crop_ratio": [0.5, 2.0]}],
)  # fmt: skip
def test_inference_is_the_identity_and_training_keeps_shape_and_dtype(kwargs):
    layer = Augment(**kwargs, seed=1)
    x = _images()
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)
    np.testing.assert_array_equal(_np(layer(x)), x)  # no training flag: inference
    out = _np(layer(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.array_equal(out, x)


def test_crop_padding_moves_each_image_by_whole_pixels_within_the_padding():
    x = _images(32)
    out = _np(Augment(crop_padding=3, seed=1)(x, training=True))
    shifts = [_shift_of(o, i, 3) for o, i in zip(out, x, strict=True)]
    assert None not in shifts  # exact copies of pixels, the uncovered border at 0 (the mean)
    assert len(set(shifts)) > 5  # each image draws its own shift (not one per batch)
    assert {dy for dy, _ in shifts} <= set(range(-3, 4))


def test_a_full_resized_crop_at_ratio_one_is_the_identity():
    x = _images()
    layer = Augment(resized_crop_scale=[1.0, 1.0], resized_crop_ratio=[1.0, 1.0], seed=1)
    np.testing.assert_allclose(_np(layer(x, training=True)), x, atol=1e-5)


def test_a_resized_crop_zooms_in():
    """A quarter of a smooth ramp, resized back: the values span about half the range."""
    ramp = np.tile(np.linspace(0, 1, 32, dtype="float32"), (32, 1))[None, :, :, None]
    x = np.repeat(ramp, 8, axis=0)
    layer = Augment(resized_crop_scale=[0.25, 0.25], resized_crop_ratio=[1.0, 1.0], seed=2)
    out = _np(layer(x, training=True))
    spans = out.max(axis=(1, 2, 3)) - out.min(axis=(1, 2, 3))
    np.testing.assert_allclose(spans, 0.5, atol=0.05)


def test_draws_are_new_each_call_and_repeat_with_the_seed():
    x = _images()
    first, second = Augment(crop_padding=4, seed=5), Augment(crop_padding=4, seed=5)
    a1, a2 = _np(first(x, training=True)), _np(first(x, training=True))
    assert not np.array_equal(a1, a2)  # the next epoch draws anew
    np.testing.assert_array_equal(_np(second(x, training=True)), a1)
    np.testing.assert_array_equal(_np(second(x, training=True)), a2)


@pytest.mark.parametrize(
    "kwargs",
    [{"crop_padding": -1}, {"crop_padding": 2.0}, {"crop_padding": True},
     {"resized_crop_scale": [0.0, 1.0]}, {"resized_crop_ratio": [2.0, 1.0]}],
)  # fmt: skip
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        Augment(**kwargs)


def test_config_round_trip_and_saving_in_a_model(tmp_path):
    layer = Augment(crop_padding=4, resized_crop_scale=[0.35, 1.0], seed=3, name="augment")
    clone = Augment.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    model = build_resnet(4, 8, (1,), preprocessing=[layer])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _images(2, 64)
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), atol=1e-5)


def test_the_model_stays_compilable():
    """Keras's RandomTranslation would turn XLA off for the whole model; ours must not."""
    model = build_resnet(4, 8, (1,), preprocessing=[Augment(crop_padding=4)])
    assert all(layer.supports_jit for layer in model._flatten_layers())


JAX_SCRIPT = textwrap.dedent(
    """
    import json
    import keras, numpy as np
    from trainer_service.model.augment import Augment
    x = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype("float32")
    layer = Augment(crop_padding=3, resized_crop_scale=[0.5, 1.0], seed=1)
    step = keras.ops.convert_to_numpy  # eager on JAX
    out = step(layer(x, training=True))
    print(json.dumps({"backend": keras.backend.backend(), "shape": list(out.shape),
                      "dtype": str(out.dtype), "changed": bool(not np.array_equal(out, x)),
                      "identity": bool(np.array_equal(step(layer(x, training=False)), x))}))
    """
)


# jax is pinned in the dev lock (and the trainer image's): its absence is a failure, not a skip.
def test_runs_on_the_jax_backend():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"backend": "jax", "shape": [4, 16, 16, 3], "dtype": "float32",
                      "changed": True, "identity": True}  # fmt: skip
