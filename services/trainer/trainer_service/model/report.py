"""Size and cost report of the bottleneck ResNet: parameters, multiply-adds, train-step memory.

:func:`model_report` returns a JSON-ready dict (the trainer service serves the same dict over
HTTP); ``resnet-report`` (:func:`main`) prints it as a small table or as JSON.

Multiply-adds are counted analytically by walking the leaf layers with their input shapes:
``H_out * W_out * k_h * k_w * C_in * C_out`` per Conv2D and ``in * out`` per Dense (BatchNorm,
ReLU, the residual additions and the pooling are not counted). FLOPs are ``2 * MACs``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import threading
from collections.abc import Iterator, Sequence

import keras
import numpy as np

from trainer_service.model.resnet import (
    DEFAULT_CLASSES,
    DEFAULT_LEVELS,
    INPUT_SHAPE,
    WIDTHS,
    build_resnet,
    parse_levels,
    resolve_width,
)

REPORT_KEYS = (
    "backend",
    "filters",
    "levels",
    "classes",
    "input_shape",
    "batch_size",
    "trainable_params",
    "non_trainable_params",
    "total_params",
    "macs_per_image",
    "gmacs_per_image",
    "gflops_per_image_forward",
    "peak_memory_bytes",
    "memory_method",
)


def iter_leaf_layers(model: keras.Model) -> Iterator[tuple[keras.layers.Layer, tuple]]:
    """Yield (leaf layer, its input shape) for every leaf layer of a built functional model.

    Blocks that expose ``leaf_input_shapes`` (the ResNet blocks) are expanded; nested functional
    models are walked recursively; every other layer is a leaf.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = tuple(layer.input.shape)
        if hasattr(layer, "leaf_input_shapes"):
            yield from layer.leaf_input_shapes(shape)
        elif isinstance(layer, keras.Sequential) or type(layer).__name__ == "Functional":
            yield from iter_leaf_layers(layer)
        else:
            yield layer, shape


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
    return sum(layer_macs(layer, shape) for layer, shape in iter_leaf_layers(model))


def count_params(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts; BatchNorm moving stats are non-trainable."""
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    non_trainable = sum(math.prod(v.shape) for v in model.non_trainable_weights)
    return int(trainable), int(non_trainable)


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


def model_report(
    filters: int | str = WIDTHS["full"],
    levels: Sequence[int] = DEFAULT_LEVELS,
    classes: int = DEFAULT_CLASSES,
    batch_size: int = 32,
    measure_memory: bool = True,
    *,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
) -> dict:
    """Build a fresh model and report its size and cost as a JSON-ready dict (keys:
    :data:`REPORT_KEYS`). ``filters`` may be a preset name (``"full"``, ``"half"``).

    With ``measure_memory=False`` nothing is trained, ``peak_memory_bytes`` is None and
    ``memory_method`` is ``"not measured"``.
    """
    filters = resolve_width(filters)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    baseline_rss = None
    if measure_memory:
        try:
            import psutil

            baseline_rss = psutil.Process().memory_info().rss
        except ImportError:
            pass
    model = build_resnet(classes, filters, levels, input_shape=input_shape)
    trainable, non_trainable = count_params(model)
    macs = count_macs(model)
    peak, method = None, "not measured"
    if measure_memory:
        peak, method = measure_train_step_memory(model, batch_size, classes, baseline_rss)
    return {
        "backend": keras.backend.backend(),
        "filters": filters,
        "levels": list(levels),
        "classes": classes,
        "input_shape": list(input_shape),
        "batch_size": batch_size,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
        "total_params": trainable + non_trainable,
        "macs_per_image": macs,
        "gmacs_per_image": macs / 1e9,
        "gflops_per_image_forward": 2 * macs / 1e9,
        "peak_memory_bytes": peak,
        "memory_method": method,
    }


def format_report(report: dict) -> str:
    """The report as a small text table."""
    levels = ",".join(str(r) for r in report["levels"])
    shape = "x".join(str(d) for d in report["input_shape"])
    if report["peak_memory_bytes"] is None:
        memory = "not measured"
    else:
        memory = f"{report['peak_memory_bytes'] / 2**20:,.1f} MiB"
    rows = [
        ("width (filters)", str(report["filters"])),
        ("levels", levels),
        ("classes", str(report["classes"])),
        ("input", f"{shape} ({report['backend']} backend)"),
        ("trainable params", f"{report['trainable_params']:,}"),
        ("non-trainable params", f"{report['non_trainable_params']:,}"),
        ("total params", f"{report['total_params']:,}"),
        ("MACs / image", f"{report['gmacs_per_image']:.4f} G"),
        ("GFLOPs / image (forward)", f"{report['gflops_per_image_forward']:.4f}"),
        (f"peak train-step memory (batch {report['batch_size']})", memory),
        ("memory method", report["memory_method"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``resnet-report --width full|half|N --levels 4,6,3,2 [--json]``."""
    parser = argparse.ArgumentParser(
        prog="resnet-report",
        description="Parameters, multiply-adds and train-step memory of the bottleneck ResNet.",
    )
    parser.add_argument(
        "--width", default="full", help="full (64), half (32) or a positive multiple of 4"
    )
    parser.add_argument(
        "--levels",
        default=",".join(str(r) for r in DEFAULT_LEVELS),
        help="Bottleneck repeats per level, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--classes", type=int, default=DEFAULT_CLASSES)
    parser.add_argument("--batch-size", type=int, default=32, help="for the memory measurement")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the one-step memory measurement"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = model_report(
            filters=resolve_width(args.width),
            levels=parse_levels(args.levels),
            classes=args.classes,
            batch_size=args.batch_size,
            measure_memory=not args.no_memory,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
