"""TrainingModel: MixUp and CutMix per image on uint8 batches, the mixed and smoothed loss
(soft targets that sum to 1), metrics on each image's own label, flip-averaged validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from trainer_service.engine.evaluate import metrics
from trainer_service.engine.objective import TrainingModel, smoothed_cross_entropy
from trainer_service.model.augment import flip_averaged, flip_averaging_model
from trainer_service.model.preprocess import Preprocess
from trainer_service.model.resnet import build_resnet

CLASSES = 5


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _batch(n=16, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return images, rng.integers(0, CLASSES, size=(n,)).astype("int32")


@pytest.fixture(scope="module")
def network():
    return build_resnet(CLASSES, 8, (1,), input_shape=(16, 16, 3), input_dtype="uint8",
                        weight_decay=1e-3, preprocessing=Preprocess(flip=False))  # fmt: skip


def _wrap(network, **kwargs):
    return TrainingModel(network, seed=kwargs.pop("seed", 1), **kwargs)


def test_mixup_blends_each_image_with_its_partner_by_its_own_weight(network):
    images, _ = _batch()
    mixed, lam = _wrap(network, mixup_alpha=0.4).mix(images)
    mixed, lam = _np(mixed), _np(lam)
    assert mixed.dtype == np.uint8 and mixed.shape == images.shape
    assert np.all((lam >= 0) & (lam <= 1)) and len(set(lam.round(6))) > 8  # one per image
    x, partner = images.astype("float64"), images[::-1].astype("float64")
    expected = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * partner
    assert np.abs(mixed - expected).max() <= 0.5 + 1e-3  # rounded to whole levels


def test_cutmix_pastes_a_box_and_weighs_by_the_pixels_left(network):
    images, _ = _batch(32)
    mixed, lam = _wrap(network, cutmix_alpha=1.0, cutmix_prob=1.0).mix(images)
    mixed, lam = _np(mixed), _np(lam)
    partner = images[::-1]
    for m, own, other, weight in zip(mixed, images, partner, lam, strict=True):
        from_partner = np.all(m == other, axis=-1) & ~np.all(m == own, axis=-1)
        assert np.all(np.all(m == own, axis=-1) | from_partner)  # every pixel from one of two
        rows, cols = np.nonzero(from_partner)
        if rows.size:  # the pasted region is one box
            box = from_partner[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            assert box.all()
        assert weight == pytest.approx(1 - from_partner.mean(), abs=1e-6)


def test_cutmix_probability_leaves_the_other_images_untouched(network):
    images, _ = _batch(200, size=8)
    mixed, lam = _wrap(network, cutmix_alpha=1.0, cutmix_prob=0.3).mix(images)
    mixed, lam = _np(mixed), _np(lam)
    untouched = np.all(mixed == images, axis=(1, 2, 3))
    assert 20 < (~untouched).sum() < 100  # about 30 % of 200 cut (a box may be empty)
    np.testing.assert_array_equal(lam[untouched], 1.0)  # left as they are (or an empty box)
    assert np.all(lam[~untouched] < 1)


def test_with_both_each_image_gets_one_or_the_other(network):
    images, _ = _batch(200, size=8)
    mixed, _ = _wrap(network, mixup_alpha=1.0, cutmix_alpha=1.0, cutmix_prob=0.5).mix(images)
    mixed = _np(mixed)
    partner = images[::-1]
    pure = np.all((mixed == images) | (mixed == partner), axis=(1, 2, 3))  # cut, not blended
    assert 50 < pure.sum() < 150


def test_mixing_repeats_with_the_seed_and_draws_anew_each_step(network):
    images, _ = _batch()
    a, b = _wrap(network, mixup_alpha=1.0, seed=7), _wrap(network, mixup_alpha=1.0, seed=7)
    first = _np(a.mix(images)[0])
    np.testing.assert_array_equal(_np(b.mix(images)[0]), first)
    assert not np.array_equal(_np(a.mix(images)[0]), first)


def _reference_loss(logits, labels, lam, smoothing):
    """Cross-entropy against explicit soft targets: lam * own + (1 - lam) * partner's one-hot,
    label-smoothed."""
    own = np.eye(CLASSES)[labels]
    targets = lam[:, None] * own + (1 - lam[:, None]) * own[::-1]
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)  # mixed labels sum to 1
    targets = (1 - smoothing) * targets + smoothing / CLASSES
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(np.mean(-(targets * log_probs).sum(axis=1)))


@pytest.mark.parametrize(("mixup", "smoothing"), [(0.0, 0.1), (0.4, 0.0), (0.4, 0.2)])
def test_the_training_loss_is_cross_entropy_with_soft_targets(network, mixup, smoothing):
    images, labels = _batch()
    model = _wrap(network, mixup_alpha=mixup, label_smoothing=smoothing)
    logits, lam = model(images, training=True)
    loss = float(model.compute_loss(images, labels, (logits, lam), training=True))
    l2 = sum(float(keras.ops.sum(extra)) for extra in model.losses)
    assert l2 > 0  # the network's L2 terms are part of it
    expected = _reference_loss(_np(logits).astype("float64"), labels, _np(lam), smoothing)
    assert loss - l2 == pytest.approx(expected, rel=1e-5)


def test_validation_neither_mixes_nor_smooths(network):
    images, labels = _batch()
    model = _wrap(network, mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.3)
    logits, lam = model(images, training=False)
    np.testing.assert_array_equal(_np(lam), 1.0)
    np.testing.assert_allclose(_np(logits), _np(network(images, training=False)), atol=1e-6)
    loss = float(model.compute_loss(images, labels, (logits, lam), training=False))
    l2 = sum(float(keras.ops.sum(extra)) for extra in model.losses)
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert loss - l2 == pytest.approx(float(plain), rel=1e-5)


def test_smoothed_cross_entropy_without_smoothing_is_the_sparse_one():
    logits = np.random.default_rng(1).standard_normal((6, CLASSES)).astype("float32")
    labels = np.arange(6) % CLASSES
    ours = _np(smoothed_cross_entropy(labels, logits, 0.0))
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    np.testing.assert_allclose(ours, _np(keras_ce(labels, logits)), rtol=1e-5)


def test_metrics_count_each_images_own_label(network):
    images, labels = _batch()
    model = _wrap(network, mixup_alpha=1.0)
    model.compile(optimizer="sgd", metrics=metrics())
    logits, lam = model(images, training=True)
    logs = model.compute_metrics(images, labels, (logits, lam))
    top1 = float(np.mean(_np(logits).argmax(axis=1) == labels))
    assert float(logs["accuracy"]) == pytest.approx(top1)


def test_flip_averaged_validation(network):
    images, _ = _batch()
    model = _wrap(network, tta_flip=True)
    logits, _ = model(images, training=False)
    mirror = images[:, :, ::-1]
    expected = (_np(network(images)) + _np(network(mirror))) / 2
    np.testing.assert_allclose(_np(logits), expected, atol=1e-5)
    np.testing.assert_allclose(_np(flip_averaged(network, images)), expected, atol=1e-5)
    np.testing.assert_allclose(_np(flip_averaging_model(network)(images)), expected, atol=1e-5)
    training_logits, _ = model(images, training=True)  # training sees the image as it is
    assert training_logits.shape == logits.shape


def test_fit_trains_the_networks_weights(network):
    images, labels = _batch(32)
    model = _wrap(network, mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.05), metrics=metrics())
    before = [_np(w).copy() for w in network.trainable_weights]
    history = model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "accuracy" in history.history
    after = [_np(w) for w in network.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


JAX_SCRIPT = textwrap.dedent(
    """
    import json
    import keras, numpy as np
    from trainer_service.engine.objective import TrainingModel
    from trainer_service.model.resnet import build_resnet
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=(16,)).astype("int32")
    from trainer_service.model.preprocess import Preprocess
    net = build_resnet(5, 8, (1,), input_shape=(16, 16, 3), input_dtype="uint8",
                       preprocessing=Preprocess())
    model = TrainingModel(net, mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1,
                          tta_flip=True, seed=1)
    model.compile(optimizer="sgd", jit_compile=True)
    history = model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    mixed, lam = model.mix(images)
    print(json.dumps({"backend": keras.backend.backend(), "loss": history.history["loss"][0],
                      "dtype": str(keras.ops.convert_to_numpy(mixed).dtype),
                      "lam_ok": bool(np.all((np.asarray(lam) >= 0) & (np.asarray(lam) <= 1))),
                      "val": model.evaluate(images, labels, verbose=0)}))
    """
)


# jax is pinned in the dev lock (and the trainer image's): its absence is a failure, not a skip.
def test_trains_on_the_jax_backend_under_xla():
    xla_flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and np.isfinite(result["loss"])
    assert result["dtype"] == "uint8" and result["lam_ok"]
    assert "Proceeding with `jit_compile=False`" not in done.stderr
