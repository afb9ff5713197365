"""Training-step throughput of the project's ResNet on a GPU, Keras 3 on the JAX backend.

    KERAS_BACKEND=jax python bench/gpu_step.py                 # the default plan, prints a table
    KERAS_BACKEND=jax python bench/gpu_step.py --plan quick    # one small case (smoke test, CPU)

The GPU machine has JAX but no TensorFlow, so this measures the model and the training step
alone, with the data already in memory (what the decoded-uint8 cache gives the trainer):

- ``trainer``: the trainer's own step: ``trainer_service.engine.train.build_model`` (uint8
  input, ``Preprocess`` layer standardizing and flipping on the device) compiled by
  ``compile_model`` (SGD momentum + the epoch schedule, L2 weight decay, sparse cross-entropy,
  top-1 and top-5 metrics), mixed bfloat16, XLA, ``steps_per_execution`` as resolved for a GPU,
  driven by ``model.fit`` on in-memory uint8 arrays;
- ``plain``: the anchor, a plain ``jax.jit`` step around ``model.stateless_call`` and the same
  optimizer's ``stateless_apply`` on bfloat16 inputs already on the device, no metrics;
- ``data-parallel``: the trainer's step under ``keras.distribution.DataParallel`` over every local
  device (what a run does with several; the global batch is split across them). With one device
  it measures what the distribution path costs;
- ``recipe:<option>``: the trainer's step with one training option of
  ``bench.recipe_variants.step_variants()`` (each augmentation alone, or the whole fast recipe):
  ``--plan recipe`` runs them all at the fast recipe's batch, 512.

The last column is the pure step time of 72 epochs of 100,000 images at the measured rate.
On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=2 ... --plan quick`` is a dry run
of every variant on 2 virtual devices.

Images/s is measured over whole ``fit`` calls after a warm-up call that compiles; TFLOP/s counts
3 x 2 x the forward multiply-adds per image (forward + backward ~ 3 forward passes).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path[:0] = [
    str(Path(__file__).resolve().parent.parent / p)
    for p in (".", "shared/shard_format", "shared/datavolume", "shared/jobkit", "services/trainer")
]

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench.model_cost import count_macs, leaf_layers  # noqa: E402
from bench.recipe_variants import step_variants  # noqa: E402
from trainer_service.engine.runtime import resolve_runtime  # noqa: E402
from trainer_service.engine.train import build_model, compile_model  # noqa: E402
from trainer_service.model.resnet import build_resnet  # noqa: E402
from trainer_service.runs.config import TrainConfig  # noqa: E402

CLASSES = 200
# (variant, width, batch, steps_per_execution or None for the trainer's "auto"), most important
# first: the run writes each row as soon as it is measured, so a time-out keeps the rows before.
PLANS = {
    "default": [
        ("trainer", 64, 128, None),
        ("plain", 64, 256, None),
        ("trainer", 64, 256, None),
        ("trainer", 64, 1024, None),
        ("trainer", 32, 256, None),
        ("trainer", 32, 128, None),
        ("trainer", 64, 128, 1),
        ("plain", 64, 1024, None),
    ],
    # Where the default batch loses time: the plain step at the same batch.
    "small-batch": [("plain", 64, 128, None), ("plain", 32, 128, None)],
    "quick": [
        ("trainer", 8, 4, None),
        ("plain", 8, 4, None),
        ("data-parallel", 8, 4, None),
        ("recipe:fast recipe (all of its options)", 8, 4, None),
    ],
    # The fast recipe's step at its batch, then each option alone (bench.recipe_variants; the
    # CPU's rows are BENCHMARKS.md section 6): what each costs the step on the card.
    "recipe": [(f"recipe:{name}", 64, 512, None) for name in step_variants()],
}
EPOCHS, TRAIN_IMAGES = 72, 100_000  # the homework's recipe, for the last column


def data_parallel_case(width, batch, spe, levels, steps, repeats):
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        return trainer_case(width, batch, spe, levels, steps, repeats)
    finally:
        keras.distribution.set_distribution(None)


def trainer_case(width, batch, spe, levels, steps, repeats, options=None):
    config = TrainConfig(
        **{
            "dataset": "bench",
            **(options or {}),
            "width": width,
            "levels": levels,
            "batch_size": batch,
            "epochs": 1,
            "warmup_epochs": 0.0,
            "mixed_precision": "bfloat16",
            "jit_compile": True,
            "steps_per_execution": "auto" if spe is None else spe,
        }
    )
    runtime = resolve_runtime(config)  # with several devices, sets a DataParallel as a run does
    with runtime.scope():
        network = build_model(config, CLASSES)
        model = compile_model(network, config, runtime, steps_per_epoch=steps)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch * steps, 64, 64, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, size=(batch * steps,), dtype=np.int32)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # compiles
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        times.append(time.perf_counter() - t0)
    assert np.isfinite(history.history["loss"][-1]), "loss is not finite"
    keras.distribution.set_distribution(None)
    return network, times, compile_s, runtime.steps_per_execution, batch * steps


def plain_case(width, batch, spe, levels, steps, repeats):
    import jax

    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_resnet(CLASSES, width, levels)
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def compute_loss(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, logits), non_trainable

    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

    @jax.jit
    def step(state, x, y):
        trainable, non_trainable, opt_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), loss

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    rng = np.random.default_rng(0)
    batches = [
        (
            jax.device_put(rng.standard_normal((batch, 64, 64, 3), dtype=np.float32)).astype(
                "bfloat16"
            ),
            jax.device_put(rng.integers(0, CLASSES, size=(batch,), dtype=np.int32)),
        )
        for _ in range(4)
    ]
    t0 = time.perf_counter()
    state, loss = step(state, *batches[0])
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            state, loss = step(state, *batches[i % len(batches)])
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    keras.config.set_dtype_policy("float32")
    assert np.isfinite(float(loss)), "loss is not finite"
    return model, times, compile_s, 1, batch * steps


def activation_bytes_per_image(model) -> int:
    """A floor on bf16 activation traffic of one training step, per image.

    Every leaf layer (conv, BatchNorm, ReLU) reads its input and writes an output of about the
    same size in the forward pass; the backward pass reads both again and writes a gradient of
    each: about 3 x (in + out) elements, 2 bytes each. Fused kernels can beat this only by
    keeping a tensor on chip, which 64x64 maps of 64+ channels per image do not fit.
    """
    elements = 0
    for _layer, shape in leaf_layers(model):
        size = 1
        for d in shape[1:]:
            size *= int(d)
        elements += 2 * size  # its input, and an output of about that size
    return 3 * 2 * elements


def copy_bandwidth_tb_s(gib: float = 2.0, repeats: int = 10) -> float:
    """Device copy bandwidth (bytes read + written per second): the memory ceiling measured."""
    import jax
    import jax.numpy as jnp

    n = int(gib * 2**30) // 4
    x = jax.random.uniform(jax.random.key(0), (n,), dtype=jnp.float32)
    copy = jax.jit(lambda a: a * 1.0001)
    copy(x).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(repeats):
        y = copy(x)
    y.block_until_ready()
    return 2 * 4 * n * repeats / (time.perf_counter() - t0) / 1e12


def device_name() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}: {getattr(d, 'device_kind', d)}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--plan", choices=sorted(PLANS), default="default")
    p.add_argument("--levels", default="4,6,3,2")
    p.add_argument("--steps", type=int, default=64, help="steps per timed call (multiple of 8)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    args = p.parse_args(argv)
    levels = [int(r) for r in args.levels.split(",")]
    print(
        f"# {device_name()}; keras {keras.__version__} ({keras.backend.backend()}); "
        f"python {platform.python_version()}; levels {levels}; {args.steps} steps x "
        f"{args.repeats} repeats",
        flush=True,
    )
    if args.plan != "quick":
        print(
            f"# device copy bandwidth (read + write): {copy_bandwidth_tb_s():.2f} TB/s", flush=True
        )
    header = (
        "| variant | width | batch | steps/exec | compile s | images/s median (min..max) "
        "| TFLOP/s | act. MB/image | act. TB/s | 72 epochs s |"
    )
    print(header + "\n" + "|---" * 10 + "|", flush=True)
    cases = {"trainer": trainer_case, "plain": plain_case, "data-parallel": data_parallel_case}
    variants = step_variants()
    for variant, width, batch, spe in PLANS[args.plan]:
        if variant.startswith("recipe:"):
            options = variants[variant.removeprefix("recipe:")]
            case = functools.partial(trainer_case, options=options)
        else:
            case = cases[variant]
        try:
            model, times, compile_s, spe_used, images = case(
                width, batch, spe, levels, args.steps, args.repeats
            )
        except Exception as exc:  # report and go on with the next case
            print(f"| {variant} | {width} | {batch} | - | - | failed: {exc!r:.120} |" + " - |" * 4)
            continue
        rates = sorted(images / t for t in times)
        macs = count_macs(model)
        median = rates[len(rates) // 2]
        tflops = 6 * macs * median / 1e12
        traffic = activation_bytes_per_image(model)
        row = {
            "variant": variant, "width": width, "batch": batch, "steps_per_execution": spe_used,
            "compile_s": compile_s, "images_per_s": rates, "tflops": tflops,
            "macs_per_image": macs, "activation_bytes_per_image": traffic,
            "activation_tb_per_s": traffic * median / 1e12,
            "devices": len(keras.distribution.list_devices()) if variant == "data-parallel" else 1,
            "epochs_72_s": EPOCHS * TRAIN_IMAGES / median,
        }  # fmt: skip
        print(f"| {variant} | {width} | {batch} | {spe_used} | {compile_s:.0f} | "
              f"{rates[len(rates) // 2]:,.0f} ({rates[0]:,.0f}..{rates[-1]:,.0f}) | "
              f"{tflops:.1f} | {traffic / 1e6:.1f} | {traffic * median / 1e12:.2f} | "
              f"{row['epochs_72_s']:,.0f} |",
              flush=True)  # fmt: skip
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
        keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    sys.exit(main())
