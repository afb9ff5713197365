"""The host-side twin the input-pipeline benchmark compares: the same numbers as the layer, and
flips drawn anew each epoch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bench.host_preprocess import flip_generator, preprocess_batch
from trainer_service.model.preprocess import Preprocess, standardize


def _batch(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def _flipped(out, images):
    """Per image: True if flipped left-right, False if unchanged (asserts it is one of the two)."""
    base = keras.ops.convert_to_numpy(standardize(images))
    flags = []
    for o, b in zip(out, base, strict=True):
        same, mirrored = np.allclose(o, b, atol=1e-5), np.allclose(o, b[:, ::-1], atol=1e-5)
        assert same or mirrored
        flags.append(mirrored and not same)
    return flags


def test_host_twin_matches_layer_in_eval():
    images = _batch()
    host = preprocess_batch(tf.constant(images), training=False).numpy()
    device = keras.ops.convert_to_numpy(Preprocess()(images, training=False))
    np.testing.assert_allclose(host, device, atol=1e-5)


@pytest.mark.parametrize("seed", [None, 7])
def test_host_flip_draws_anew_each_epoch_even_with_tf_seeded(seed):
    """Each epoch is a new iterator; the flips must differ between epochs, also after
    ``keras.utils.set_random_seed`` (which a seeded op once answered with the same flips)."""
    keras.utils.set_random_seed(0)
    images = tf.constant(_batch(64))
    generator = flip_generator(seed)
    ds = tf.data.Dataset.from_tensors(images).map(
        lambda x: preprocess_batch(x, training=True, generator=generator)
    )
    epochs = [_flipped(next(iter(ds)).numpy(), images.numpy()) for _ in range(2)]
    assert 10 < sum(epochs[0]) < 54
    assert epochs[0] != epochs[1]


def test_host_flips_repeat_with_the_seed():
    images = tf.constant(_batch(64))

    def flips(seed):
        generator = flip_generator(seed)
        ds = tf.data.Dataset.from_tensors(images).map(
            lambda x: preprocess_batch(x, training=True, generator=generator)
        )
        return [_flipped(next(iter(ds)).numpy(), images.numpy()) for _ in range(2)]

    assert flips(3) == flips(3)
