"""What a model costs, measured on a real Keras model (the benchmarks' counterpart of the
closed-form ``trainer_service.model.architecture``): multiply-adds counted from the layers a
forward pass calls, activation sizes, and the peak memory of one training step.

    python -m bench.model_cost --width full [--batch-size 32]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import sys
import threading
from collections.abc import Iterator

import keras
import numpy as np


@contextlib.contextmanager
def _recording_leaf_calls(found: list[tuple[keras.layers.Layer, tuple]]) -> Iterator[None]:
    """While inside, every call of a layer without sublayers appends (layer, input shape)."""
    original = keras.layers.Layer.__call__

    def record(self, *args, **kwargs):
        if not self._layers and args:
            found.append((self, tuple(args[0].shape)))
        return original(self, *args, **kwargs)

    keras.layers.Layer.__call__ = record
    try:
        yield
    finally:
        keras.layers.Layer.__call__ = original


def leaf_layers(model: keras.Model) -> list[tuple[keras.layers.Layer, tuple]]:
    """(leaf layer, its input shape for one example) for every leaf layer a forward pass of one
    example calls, in call order (the blocks' sublayers included)."""
    found: list[tuple[keras.layers.Layer, tuple]] = []
    example = np.zeros((1, *model.input.shape[1:]), dtype=model.input.dtype)
    with _recording_leaf_calls(found):
        model(example, training=False)
    return found


def layer_macs(layer: keras.layers.Layer, input_shape: tuple) -> int:
    """Multiply-adds of one Conv2D or Dense for one example; 0 for any other layer."""
    if isinstance(layer, keras.layers.Conv2D):
        out = layer.compute_output_shape(input_shape)
        spatial = out[1:3] if layer.data_format == "channels_last" else out[2:4]
        # kernel: (k_h, k_w, C_in / groups, C_out)
        return math.prod(spatial) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):
        positions = math.prod(input_shape[1:-1])  # 1 for a (batch, features) input
        return positions * math.prod(layer.kernel.shape)
    return 0


def count_macs(model: keras.Model) -> int:
    """Convolution + dense multiply-adds per example at the model's input shape."""
    return sum(layer_macs(layer, shape) for layer, shape in leaf_layers(model))


def _maxrss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class _RssSampler:
    """Samples the current RSS (psutil) in a thread; ``peak`` is the highest value seen."""

    def __init__(self, interval_s: float = 0.002):
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return self._process.memory_info().rss

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self._interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _train_batch(batch_size: int, input_shape: tuple, classes: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, *input_shape), dtype=np.float32)
    y = rng.integers(0, classes, size=(batch_size,)).astype("int32")
    return x, y


def _accelerator_peak(model: keras.Model, x, y) -> tuple[int, str] | None:
    """Peak accelerator memory of one train step (after a warm-up step), or None on CPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            return None
        model.train_on_batch(x, y)  # warm-up: tracing, optimizer slots
        tf.config.experimental.reset_memory_stats("GPU:0")
        model.train_on_batch(x, y)
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        return int(peak), "tf.config.experimental.get_memory_info('GPU:0') peak, second step"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "cpu":
            return None
        model.train_on_batch(x, y)
        model.train_on_batch(x, y)
        stats = device.memory_stats() or {}
        if "peak_bytes_in_use" not in stats:
            return None
        return int(stats["peak_bytes_in_use"]), "jax device memory_stats peak_bytes_in_use"
    return None


def measure_train_step_memory(
    model: keras.Model, batch_size: int, classes: int, baseline_rss: int | None = None
) -> tuple[int, str]:
    """Peak memory of one SGD training step on random data -> (bytes, how it was measured).

    ``model`` is compiled (SGD, sparse categorical cross-entropy on logits) and trained on one
    random batch, so pass a throwaway model.

    On a GPU: the device allocator's peak during a second step (weights, optimizer state,
    activations and gradients). On CPU: the sampled peak RSS during the first step (it includes
    graph tracing) minus ``baseline_rss`` (RSS before the model was built; default: just before
    the step), or, without psutil, the growth of the process's peak RSS (``getrusage``).
    """
    input_shape = tuple(model.input.shape[1:])
    x, y = _train_batch(batch_size, input_shape, classes)
    if np.dtype(model.input.dtype) != np.float32:
        x = np.clip(x * 64 + 128, 0, 255).astype(model.input.dtype)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    accelerator = _accelerator_peak(model, x, y)
    if accelerator is not None:
        return accelerator
    try:
        sampler = _RssSampler()
    except ImportError:
        before = _maxrss_bytes()
        model.train_on_batch(x, y)
        return max(0, _maxrss_bytes() - before), "cpu getrusage ru_maxrss growth, first step"
    baseline = sampler.rss() if baseline_rss is None else baseline_rss
    with sampler:
        model.train_on_batch(x, y)
    what = "model build + first step" if baseline_rss is not None else "first step"
    return max(0, sampler.peak - baseline), f"cpu psutil sampled peak RSS delta, {what}"


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.model_cost``: the model's MACs (counted) and train-step memory."""
    from trainer_service.model.architecture import parse_levels, resolve_width
    from trainer_service.model.resnet import build_resnet

    parser = argparse.ArgumentParser(prog="python -m bench.model_cost", description=__doc__)
    parser.add_argument("--width", default="full")
    parser.add_argument("--levels", default="4,6,3,2")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    model = build_resnet(args.classes, resolve_width(args.width), parse_levels(args.levels))
    macs = count_macs(model)
    peak, method = measure_train_step_memory(model, args.batch_size, args.classes)
    print(json.dumps({"macs_per_image": macs, "peak_memory_bytes": peak, "memory_method": method}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
