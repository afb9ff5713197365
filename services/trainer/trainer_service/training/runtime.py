"""Where and how a run computes: accelerators, precision policy, XLA, distribution strategy.

``"auto"`` settings resolve here, once per run: on a GPU, mixed bfloat16, XLA and 8 batches per
compiled call; on CPU, float32, no XLA (JAX always compiles) and 1 batch per call. With more than
one GPU the TensorFlow backend trains under ``tf.distribute.MirroredStrategy`` (the JAX backend
under ``keras.distribution.DataParallel``); the batch size is then the global batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras

from trainer_service.training.config import TrainConfig

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

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def device(self) -> str:
        return f"{self.gpus} GPU(s)" if self.gpus else "CPU"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "replicas": self.replicas,
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
    if gpus < 2:
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy()
    if backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return None


def resolve_runtime(config: TrainConfig, strategy=None, gpus: int | None = None) -> Runtime:
    """Resolve the config's "auto" values for this machine; ``strategy`` overrides the default."""
    backend = keras.backend.backend()
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
    return Runtime(backend, gpus, policy, jit, spe, strategy)
