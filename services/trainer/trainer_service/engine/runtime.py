"""Where and how a run computes: accelerators, precision policy, XLA, distribution strategy.

``"auto"`` settings resolve here, once per run: on a GPU, mixed bfloat16, XLA and 8 batches per
compiled call; on CPU, float32, no XLA (JAX always compiles) and 1 batch per call.

Data parallelism: the JAX backend trains under ``keras.distribution.DataParallel`` over every
local device of its platform whenever there are several (GPUs; on CPU only when XLA is told to
make several, ``--xla_force_host_platform_device_count``); the TensorFlow backend under
``tf.distribute.MirroredStrategy`` with several GPUs. The batch size is the global batch, split
evenly across the devices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras

from trainer_service.runs.config import Compute

GPU_STEPS_PER_EXECUTION = 8
_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16", "off": "float32"}


def gpu_count() -> int:
    """GPUs (logical devices) the Keras backend sees."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(1 for d in jax.devices() if d.platform != "cpu")
    return 0


@dataclass
class Runtime:
    """The resolved settings of a run (``strategy`` is a tf.distribute strategy or None)."""

    backend: str
    gpus: int
    dtype_policy: str
    jit_compile: bool
    steps_per_execution: int
    strategy: Any = None
    #: the JAX backend's ``keras.distribution.DataParallel``, or None
    distribution: Any = None

    @property
    def replicas(self) -> int:
        if self.distribution is not None:
            return len(self.distribution.device_mesh.devices)
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def device(self) -> str:
        return f"{self.gpus} GPU(s)" if self.gpus else "CPU"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "replicas": self.replicas,
            "data_parallel": self.distribution is not None or self.strategy is not None,
            "dtype_policy": self.dtype_policy,
            "jit_compile": self.jit_compile,
            "steps_per_execution": self.steps_per_execution,
        }

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build and compile the model inside this: the precision policy and the strategy."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.dtype_policy)
        try:
            if self.strategy is not None:
                with self.strategy.scope():
                    yield
            else:
                yield
        finally:
            keras.config.set_dtype_policy(previous)


def default_strategy(gpus: int):
    """MirroredStrategy over all GPUs on the TensorFlow backend when there are several."""
    if gpus < 2 or keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def data_parallel(batch_size: int):
    """On the JAX backend with several local devices: a ``DataParallel`` over all of them, set
    as Keras's distribution for the rest of the process (one run per worker process), so that
    ``fit`` shards each global batch across the devices. None otherwise."""
    if keras.backend.backend() != "jax":
        return None
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return None
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size {batch_size} does not split evenly across {len(devices)} devices; "
            f"use a multiple of {len(devices)}"
        )
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return distribution


def hide_gpus_from_tensorflow() -> None:
    """On the JAX backend TensorFlow serves the input pipeline only: it must see no GPU, or it
    would reserve memory on the run's GPU beside JAX. Called before TensorFlow's first op; the
    images' CPU-only TensorFlow sees none anyway."""
    import tensorflow as tf

    # RuntimeError: its devices are set up already (a process that ran TensorFlow before).
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")


def resolve_runtime(config: Compute, strategy=None, gpus: int | None = None) -> Runtime:
    """Resolve the run's "auto" values for this machine; ``strategy`` overrides the default."""
    backend = keras.backend.backend()
    if backend == "jax":
        hide_gpus_from_tensorflow()
    gpus = gpu_count() if gpus is None else gpus
    if config.mixed_precision == "auto":
        policy = "mixed_bfloat16" if gpus else "float32"
    else:
        policy = _POLICIES[config.mixed_precision]
    if config.jit_compile == "auto":
        jit = bool(gpus) or backend == "jax"
    else:
        jit = bool(config.jit_compile)
    if config.steps_per_execution == "auto":
        spe = GPU_STEPS_PER_EXECUTION if gpus else 1
    else:
        spe = int(config.steps_per_execution)
    if strategy is None:
        strategy = default_strategy(gpus)
    return Runtime(backend, gpus, policy, jit, spe, strategy, data_parallel(config.batch_size))
