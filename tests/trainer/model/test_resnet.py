"""The full model: exact sizes, validation, config/.keras round trips, training flag, backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from bench.model_cost import count_macs
from trainer_service.model.resnet import (
    WIDTHS,
    build_resnet,
    check_levels,
    parse_levels,
    resolve_width,
)

SMALL = {"classes": 10, "filters": 8, "levels": (1, 1), "input_shape": (16, 16, 3)}


def _images(n: int = 4, shape=(16, 16, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype("float32")


@pytest.fixture(scope="module")
def full_model():
    return build_resnet(200, WIDTHS["full"], (4, 6, 3, 2))


@pytest.fixture(scope="module")
def half_model():
    return build_resnet(200, WIDTHS["half"], (4, 6, 3, 2))


def test_width_presets_are_ints():
    assert WIDTHS == {"full": 64, "half": 32}
    assert all(type(w) is int for w in WIDTHS.values())
    assert resolve_width("full") == 64
    assert resolve_width("half") == 32
    assert resolve_width("48") == 48
    assert resolve_width(16) == 16


@pytest.mark.parametrize(
    ("model_fixture", "total", "gmacs", "macs"),
    [("full_model", 3_137_800, 0.4057, 405_741_568), ("half_model", 844_456, 0.1033, 103_256_064)],
)
def test_parameter_and_mac_counts(request, model_fixture, total, gmacs, macs):
    model = request.getfixturevalue(model_fixture)
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    non_trainable = sum(int(keras.ops.size(w)) for w in model.non_trainable_weights)
    assert model.count_params() == total
    assert trainable + non_trainable == total
    # The non-trainable parameters are exactly the BatchNorm moving means and variances.
    moving = [v for v in model.non_trainable_weights]
    assert all(v.path.endswith(("moving_mean", "moving_variance")) for v in moving)
    assert round(count_macs(model) / 1e9, 4) == gmacs
    assert count_macs(model) == macs


def test_full_model_structure(full_model):
    assert tuple(full_model.input.shape) == (None, 64, 64, 3)  # channels-last
    assert tuple(full_model.output.shape) == (None, 200)
    names = [layer.name for layer in full_model.layers]
    expected = ["images", "tail_conv", "special_bottleneck"]
    for level, repeats in enumerate((4, 6, 3, 2), start=1):
        expected += [f"level{level}_bottleneck{i}" for i in range(1, repeats + 1)]
        expected.append(f"level{level}_downsample")
    expected += ["final_bn", "final_relu", "pool", "logits"]
    assert names == expected
    tail = full_model.get_layer("tail_conv")
    assert tail.use_bias is False and tail.kernel.shape == (3, 3, 3, 64)
    logits = full_model.get_layer("logits")
    assert logits.use_bias is True and logits.kernel.shape == (1024, 200)
    assert tuple(full_model.get_layer("level4_downsample").output.shape) == (None, 4, 4, 1024)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": 30}, "filters must be a positive multiple of 4, got 30"),
        ({"filters": 32.0}, "filters must be a positive multiple of 4, got 32.0"),
        ({"filters": 0}, "got 0"),
        ({"classes": 0}, "classes must be a positive int, got 0"),
        ({"levels": []}, r"levels must be a non-empty list of non-negative ints, got \[\]"),
        ({"levels": (4, -1)}, r"got \(4, -1\)"),
        ({"levels": (4, 2.0)}, r"got \(4, 2.0\)"),
        ({"levels": "4632"}, "got '4632'"),
        ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0, got -0.1"),
        ({"input_shape": (3, 64)}, r"got \(3, 64\)"),
    ],
)
def test_invalid_arguments_raise_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_resnet(**kwargs)


def test_width_and_level_parsing():
    assert parse_levels("4,6,3,2") == (4, 6, 3, 2)
    assert parse_levels("0") == (0,)
    assert check_levels([1, 0, 2]) == (1, 0, 2)
    for bad in ("", "4,,2", "4,-1", "a,b"):
        with pytest.raises(ValueError, match=repr(bad)):
            parse_levels(bad)
    for bad in ("quarter", "30", "-4", 30, 0):
        with pytest.raises(ValueError, match=str(bad)):
            resolve_width(bad)


def test_levels_with_zero_repeats_and_any_width():
    model = build_resnet(5, 12, (0, 2, 0), input_shape=(16, 16, 3))
    assert [layer.name for layer in model.layers if "level" in layer.name] == [
        "level1_downsample",
        "level2_bottleneck1",
        "level2_bottleneck2",
        "level2_downsample",
        "level3_downsample",
    ]
    assert model.get_layer("logits").kernel.shape == (96, 5)
    assert tuple(model(_images(2), training=False).shape) == (2, 5)


def test_config_round_trip_gives_the_same_architecture_and_outputs():
    model = build_resnet(**SMALL)
    clone = keras.Model.from_config(model.get_config())
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in model.layers]
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert [v.path for v in clone.weights] == [v.path for v in model.weights]
    assert clone.count_params() == model.count_params()
    clone.set_weights(model.get_weights())
    x = _images()
    np.testing.assert_allclose(clone(x, training=False), model(x, training=False), atol=1e-6)


def test_keras_file_save_and_load(tmp_path):
    model = build_resnet(**SMALL, weight_decay=1e-4)
    x = _images()
    model(x, training=True)  # move the BatchNorm statistics away from their initial values
    expected = model.predict(x, verbose=0)
    path = tmp_path / "resnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert loaded.count_params() == model.count_params()
    assert len(loaded.losses) == len(model.losses) > 0


def test_training_flag_reaches_every_batchnorm():
    model = build_resnet(**SMALL)
    x = _images(8)
    stats = model.non_trainable_variables
    # levels (1, 1): special 3, bottlenecks 3 each, downsamples 4 each, the final BN.
    assert len(stats) == 2 * (3 + 2 * 3 + 2 * 4 + 1)
    assert all(v.path.endswith(("moving_mean", "moving_variance")) for v in stats)

    before = [v.numpy().copy() for v in stats]
    model(x, training=False)
    model.predict(x, verbose=0)
    for v, old in zip(stats, before, strict=True):
        np.testing.assert_array_equal(v.numpy(), old, err_msg=f"{v.path} changed at inference")

    for _ in range(3):
        model(x, training=True)
    unchanged = [
        v.path for v, old in zip(stats, before, strict=True) if np.array_equal(v.numpy(), old)
    ]
    assert unchanged == [], "training=True did not reach these BatchNorms"

    # Batch statistics (training) and moving statistics (inference) give different outputs.
    y_train = np.asarray(model(x, training=True))
    frozen = [v.numpy().copy() for v in stats]
    y_infer = np.asarray(model(x, training=False))
    assert not np.allclose(y_train, y_infer, atol=1e-4)
    for v, old in zip(stats, frozen, strict=True):
        np.testing.assert_array_equal(v.numpy(), old, err_msg=f"{v.path} changed at inference")


def test_weight_decay_regularizes_every_conv_and_the_dense():
    wd = 2e-4
    model = build_resnet(**SMALL, weight_decay=wd)
    kernels = [v for v in model.trainable_weights if v.path.endswith("kernel")]
    # tail 1 + special 4 + bottlenecks 3 each + downsamples 4 each + dense 1
    assert len(kernels) == 1 + 4 + 2 * 3 + 2 * 4 + 1
    assert len(model.losses) == len(kernels)
    expected = wd * sum(float(np.sum(np.square(k.numpy()))) for k in kernels)
    total = float(sum(np.asarray(loss) for loss in model.losses))
    assert total == pytest.approx(expected, rel=1e-5)
    assert build_resnet(**SMALL).losses == []


def test_preprocessing_hook_and_uint8_input():
    images = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    model = build_resnet(
        **SMALL, preprocessing=keras.layers.Rescaling(1 / 255, name="rescale"), input_dtype="uint8"
    )
    assert model.input.dtype == "uint8"
    assert [layer.name for layer in model.layers[:3]] == ["images", "rescale", "tail_conv"]
    assert model.count_params() == build_resnet(**SMALL).count_params()
    assert count_macs(model) == count_macs(build_resnet(**SMALL))
    assert tuple(model(images, training=False).shape) == (2, 10)


def test_shared_preprocess_layer_plugs_in(tmp_path):
    from trainer_service.model import preprocess  # a broken import must fail, not skip

    images = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    model = build_resnet(**SMALL, preprocessing=preprocess.Preprocess(), input_dtype="uint8")
    expected = model.predict(images, verbose=0)
    model.save(tmp_path / "with_preprocess.keras")
    loaded = keras.models.load_model(tmp_path / "with_preprocess.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-6)


def test_logits_are_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_resnet(**SMALL)
        block = model.get_layer("level1_bottleneck1")
        assert block.compute_dtype == "float16"
        assert block.reduce.conv.compute_dtype == "float16"
        assert block.reduce.conv.kernel.dtype == "float32"
        assert model.get_layer("level1_bottleneck1").output.dtype == "float16"
        assert model.output.dtype == "float32"
        y = model(_images(2), training=False)
        assert keras.backend.standardize_dtype(y.dtype) == "float32"
    finally:
        keras.config.set_dtype_policy(previous)


JAX_SCRIPT = textwrap.dedent(
    """
    import json
    import keras, numpy as np
    from bench.model_cost import count_macs
    from trainer_service.model.resnet import build_resnet

    model = build_resnet(10, 4, (1,), input_shape=(8, 8, 3), weight_decay=1e-4)
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    loss = model.train_on_batch(x, np.arange(4) % 10)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "shape": list(y.shape),
        "finite": bool(np.isfinite(y).all()),
        "loss": float(loss),
        "params": model.count_params(),
        "macs": count_macs(model),
    }))
    """
)


# jax is pinned in the dev lock (and the trainer image's): its absence is a failure, not a skip.
def test_model_runs_on_the_jax_backend():
    # XLA:CPU compile time dominates (every new shape compiles); low optimisation keeps it short.
    xla_flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    tf_model = build_resnet(10, 4, (1,), input_shape=(8, 8, 3))
    assert result["backend"] == "jax"
    assert result["shape"] == [4, 10]
    assert result["finite"] and np.isfinite(result["loss"])
    assert result["params"] == tf_model.count_params()
    assert result["macs"] == count_macs(tf_model)
