"""The homework's residual-gradient question, checked with automatic differentiation.

For y = x + f(x) and a scalar loss e(y): de/dx = de/dy * (1 + df/dx), i.e. the vector-Jacobian
product through the block is de/dy (the identity path) plus the VJP of f. The homework's answer,
de/dy * df/dx, leaves out the identity term.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer_service.model.blocks import Bottleneck


def _vjp(fn, x: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    """upstream^T * d fn / dx, with the active Keras backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        return tape.gradient(y, xt, output_gradients=tf.constant(upstream)).numpy()
    if backend == "jax":
        import jax

        _, pullback = jax.vjp(fn, x)
        return np.asarray(pullback(upstream)[0])
    pytest.skip(f"no autodiff helper for the {backend} backend")


@pytest.fixture(scope="module")
def block_and_input():
    keras.utils.set_random_seed(1234)
    block = Bottleneck(8, name="grad_bottleneck")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 4, 4, 8)).astype("float32")
    block(x)
    # Fixed, non-trivial BatchNorm statistics so f is a fixed (inference-mode) function.
    for v in block.weights:
        if v.path.endswith(("gamma", "moving_variance")):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif v.path.endswith(("beta", "moving_mean")):
            v.assign(rng.uniform(-0.3, 0.3, v.shape).astype("float32"))
    return block, x


def test_residual_block_gradient_includes_the_identity(block_and_input):
    block, x = block_and_input
    upstream = np.random.default_rng(3).standard_normal(x.shape).astype("float32")  # de/dy

    def y(inp):
        return block(inp, training=False)

    def f(inp):
        return block.residual(inp, training=False)

    de_dx = _vjp(y, x, upstream)
    vjp_f = _vjp(f, x, upstream)  # de/dy * df/dx
    np.testing.assert_allclose(de_dx, upstream + vjp_f, rtol=1e-4, atol=1e-5)
    # The homework's de/dy * df/dx alone is off by exactly the identity term de/dy.
    assert not np.allclose(de_dx, vjp_f, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(de_dx - vjp_f, upstream, rtol=1e-4, atol=1e-5)


def test_residual_block_jacobian_is_identity_plus_jacobian_of_f(block_and_input):
    """Same statement with explicit Jacobians: dy/dx = I + df/dx (rows built from VJPs)."""
    block, x = block_and_input
    n = x.size
    eye = np.eye(n, dtype="float32")

    def jacobian(fn):
        return np.stack([_vjp(fn, x, eye[i].reshape(x.shape)).ravel() for i in range(n)])

    jac_y = jacobian(lambda inp: block(inp, training=False))
    jac_f = jacobian(lambda inp: block.residual(inp, training=False))
    np.testing.assert_allclose(jac_y, eye + jac_f, rtol=1e-4, atol=1e-5)
    assert np.abs(jac_f).max() > 1e-2  # f is not trivially zero
    assert np.abs(jac_y - jac_f).max() == pytest.approx(1.0, abs=1e-4)
