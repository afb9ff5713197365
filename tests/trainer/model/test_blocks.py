"""The residual blocks: shapes, argument validation, config round trip, names, L2 losses."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer_service.model.blocks import Bottleneck, Downsample, ResnetBasic, SpecialBottleneck

BASE_CONFIG_KEYS = {"name", "trainable", "dtype"}


def _x(channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, 16, 16, channels)).astype("float32")


@pytest.mark.parametrize(
    ("block", "channels", "expected"),
    [
        (ResnetBasic(8), 4, (2, 16, 16, 8)),
        (ResnetBasic(8, kernel_size=1, strides=2), 4, (2, 8, 8, 8)),
        (Bottleneck(16), 16, (2, 16, 16, 16)),
        (SpecialBottleneck(16), 3, (2, 16, 16, 16)),
        (SpecialBottleneck(16), 16, (2, 16, 16, 16)),
        (Downsample(16), 16, (2, 8, 8, 32)),
    ],
)
def test_output_shapes(block, channels, expected):
    y = block(_x(channels))
    assert tuple(y.shape) == expected
    assert tuple(block.compute_output_shape((2, 16, 16, channels))) == expected


def test_bottleneck_keeps_shape_and_downsample_halves_and_doubles():
    x = _x(32)
    assert tuple(Bottleneck(32)(x).shape) == x.shape
    y = Downsample(32)(x)
    assert tuple(y.shape) == (2, 8, 8, 64)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Bottleneck(30), "filters must be a positive multiple of 4, got 30"),
        (lambda: Bottleneck(0), "got 0"),
        (lambda: Bottleneck(-8), "got -8"),
        (lambda: Bottleneck(32.0), "got 32.0"),
        (lambda: SpecialBottleneck(True), "got True"),
        (lambda: SpecialBottleneck("64"), "got '64'"),
        (lambda: Downsample(7), "filters must be a positive multiple of 2, got 7"),
        (lambda: ResnetBasic(0), "filters must be a positive int, got 0"),
        (lambda: ResnetBasic(8, kernel_size=0), "kernel_size must be a positive int, got 0"),
        (lambda: ResnetBasic(8, strides=1.5), "strides must be a positive int, got 1.5"),
        (lambda: Bottleneck(16, weight_decay=-1e-4), "got -0.0001"),
        (lambda: Bottleneck(16, weight_decay=float("nan")), "got nan"),
    ],
)
def test_invalid_arguments_raise_with_the_value(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        make()


def test_bottleneck_rejects_a_channel_mismatch():
    with pytest.raises(ValueError, match=r"needs 16 input channels.*got 8"):
        Bottleneck(16)(_x(8))


@pytest.mark.parametrize(
    ("block", "args", "channels"),
    [
        (
            ResnetBasic(8, kernel_size=1, strides=2, weight_decay=1e-4, name="basic"),
            {
                "filters": 8,
                "kernel_size": 1,
                "strides": 2,
                "weight_decay": 1e-4,
                "zero_init": False,
            },
            4,
        ),
        (
            Bottleneck(16, name="b"),
            {"filters": 16, "weight_decay": 0.0, "zero_init_residual": False},
            16,
        ),
        (
            SpecialBottleneck(16, weight_decay=0.5, name="s"),
            {"filters": 16, "weight_decay": 0.5, "zero_init_residual": False},
            3,
        ),
        (
            Downsample(8, zero_init_residual=True, name="d"),
            {"filters": 8, "weight_decay": 0.0, "zero_init_residual": True},
            8,
        ),
    ],
)
def test_get_config_is_the_constructor_args_and_round_trips(block, args, channels):
    config = block.get_config()
    assert {k: v for k, v in config.items() if k not in BASE_CONFIG_KEYS} == args
    x = _x(channels)
    y = block(x, training=False)
    clone = type(block).from_config(config)
    clone(x)  # build
    assert [v.path for v in clone.weights] == [v.path for v in block.weights]
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(clone(x, training=False), y, rtol=1e-6, atol=1e-6)
    # Registered under the package name, so Keras can deserialize it without custom_objects.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(block))
    assert type(restored) is type(block)
    assert restored.get_config() == config


def test_sublayer_names_are_deterministic():
    block = Downsample(8, name="down")
    block(_x(8))
    assert [v.path for v in block.weights] == [
        f"down/{basic}/{leaf}"
        for basic in ("reduce", "conv3x3", "expand", "projection")
        for leaf in ("bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance", "conv/kernel")
    ]


def test_special_bottleneck_shortcut_is_a_plain_1x1_conv():
    block = SpecialBottleneck(16, name="s")
    block(_x(3))
    assert isinstance(block.projection, keras.layers.Conv2D)
    assert [v.path for v in block.weights if v.path.startswith("s/projection")] == [
        "s/projection/kernel"
    ]
    # residual: BN(3)+1x1 3->4, BN(4)+3x3 4->4, BN(4)+1x1 4->16; shortcut: 1x1 3->16.
    assert block.count_params() == (4 * 3 + 3 * 4) + (4 * 4 + 9 * 16) + (4 * 4 + 64) + 48


def test_blocks_are_residual():
    x = _x(16)
    block = Bottleneck(16)
    y = block(x, training=False)
    np.testing.assert_allclose(y, x + block.residual(x, training=False), atol=1e-5)
    down = Downsample(16)
    y = down(x, training=False)
    expected = down.projection(x, training=False) + down.residual(x, training=False)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_weight_decay_adds_an_l2_loss_per_convolution():
    wd = 1e-3
    block = Downsample(8, weight_decay=wd)
    block(_x(8))
    kernels = [v for v in block.trainable_weights if v.path.endswith("kernel")]
    assert len(kernels) == 4
    assert len(block.losses) == 4
    expected = wd * sum(float(np.sum(np.square(k.numpy()))) for k in kernels)
    assert float(sum(np.asarray(loss) for loss in block.losses)) == pytest.approx(expected, 1e-5)
    unregularized = Downsample(8)
    unregularized(_x(8))
    assert unregularized.losses == []
