"""How "auto" resolves: float32, no XLA, 1 step per call on CPU; bf16, XLA, 8 on a GPU."""

import keras

from tests.trainer.support import tiny_config
from trainer_service.engine.runtime import default_strategy, gpu_count, resolve_runtime


def test_cpu_defaults():
    runtime = resolve_runtime(tiny_config(), gpus=0)
    assert (runtime.dtype_policy, runtime.jit_compile, runtime.steps_per_execution) == (
        "float32",
        keras.backend.backend() == "jax",
        1,
    )
    assert runtime.strategy is None and runtime.replicas == 1 and runtime.device == "CPU"


def test_gpu_defaults():
    runtime = resolve_runtime(tiny_config(), gpus=1)
    assert (runtime.dtype_policy, runtime.jit_compile, runtime.steps_per_execution) == (
        "mixed_bfloat16",
        True,
        8,
    )


def test_explicit_settings_win():
    config = tiny_config(mixed_precision="float16", jit_compile=False, steps_per_execution=4)
    runtime = resolve_runtime(config, gpus=1)
    assert (runtime.dtype_policy, runtime.jit_compile, runtime.steps_per_execution) == (
        "mixed_float16",
        False,
        4,
    )
    assert resolve_runtime(tiny_config(mixed_precision="bfloat16"), gpus=0).dtype_policy == (
        "mixed_bfloat16"
    )


def test_one_device_needs_no_strategy():
    assert default_strategy(0) is None and default_strategy(1) is None
    assert gpu_count() == 0  # the test machines have no GPU


def test_scope_restores_the_policy():
    runtime = resolve_runtime(tiny_config(mixed_precision="bfloat16"), gpus=0)
    with runtime.scope():
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
