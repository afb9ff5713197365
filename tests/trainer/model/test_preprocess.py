import keras
import numpy as np
import tensorflow as tf

from trainer_service.model.preprocess import Preprocess, random_flip, standardize


def _batch(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def test_standardize_gives_zero_mean_unit_std_per_image():
    x = keras.ops.convert_to_numpy(standardize(_batch()))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(1, 2, 3)), 1.0, atol=1e-4)


def test_standardize_matches_tf_per_image_standardization():
    images = _batch()
    ours = keras.ops.convert_to_numpy(standardize(images))
    reference = tf.image.per_image_standardization(images.astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_constant_image_maps_to_zeros_not_nan():
    x = keras.ops.convert_to_numpy(standardize(np.full((1, 64, 64, 3), 200, np.uint8)))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x, 0.0, atol=1e-3)  # float32 mean rounding, scaled by 1/std


def _flipped(out, images):
    """Per image: True if flipped left-right, False if unchanged (asserts it is one of the two)."""
    base = keras.ops.convert_to_numpy(standardize(images))
    flags = []
    for o, b in zip(out, base, strict=True):
        same, mirrored = np.allclose(o, b, atol=1e-5), np.allclose(o, b[:, ::-1], atol=1e-5)
        assert same or mirrored
        flags.append(mirrored and not same)
    return flags


def test_layer_never_flips_in_eval():
    images = _batch(32)
    layer = Preprocess(seed=1)
    for _ in range(3):
        out = keras.ops.convert_to_numpy(layer(images, training=False))
        assert not any(_flipped(out, images))


def test_layer_flips_some_images_in_training_and_draws_anew_each_call():
    images = _batch(64)
    layer = Preprocess(seed=1)
    first = _flipped(keras.ops.convert_to_numpy(layer(images, training=True)), images)
    second = _flipped(keras.ops.convert_to_numpy(layer(images, training=True)), images)
    assert 10 < sum(first) < 54  # about half
    assert first != second  # a new draw on the next call (next epoch)


def test_random_flip_with_int_seed_is_reproducible():
    images = _batch(16).astype("float32")
    a = keras.ops.convert_to_numpy(random_flip(images, seed=7))
    b = keras.ops.convert_to_numpy(random_flip(images, seed=7))
    np.testing.assert_array_equal(a, b)


def test_layer_config_round_trip():
    layer = Preprocess(flip=False, seed=3)
    clone = Preprocess.from_config(layer.get_config())
    assert (clone.flip, clone.seed) == (False, 3)
