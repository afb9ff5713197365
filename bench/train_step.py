"""Training-step benchmark on this machine's CPU, and whether the input pipeline keeps up.

    python -m bench.train_step [--scale 1.0] [--repeats 3] [--widths 32,64] [--train-batch-size 32]

The model and its compile are the trainer's own (``trainer_service.engine.train``: ``build_model``
— the ResNet with the ``Preprocess`` layer first, taking uint8 — and ``compile_model`` with
``resolve_runtime``: SGD with momentum and the LR schedule, sparse cross-entropy on logits,
top-1/top-5 metrics; on CPU float32, no XLA, one step per execution). ``model.fit`` runs
``warmup`` steps, then ``repeats`` consecutive windows of ``steps`` steps, each timed (in one
process per width and input source):

* **in-memory**: one fixed uint8 batch repeated: the step alone;
* **pipeline**: the trainer's own train pipeline over the prepared shards
  (``trainer_service.engine.data.input_pipelines``): the step fed as in a real run.

Then the same train pipeline alone (no model), one epoch from the shards and one cached, on the
same CPU cores: how many images/s it can deliver against how many the step consumes.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import (
    RunInfo,
    Stats,
    log,
    md_table,
    mib,
    ratio,
    run_child,
    usable_cores,
)
from bench.data import (
    DATASET_NAME,
    WorkData,
    describe,
    ensure_prepared,
    run_script,
)

SECTION = "train"
MEMORY, PIPELINE = "in-memory", "pipeline"
CLASSES = 200


def trainer_model(width: int, batch_size: int, steps_per_epoch: int, seed: int = 0):
    """(compiled model, config, runtime description) exactly as the trainer builds them."""
    import keras

    from trainer_service.engine.runtime import resolve_runtime
    from trainer_service.engine.train import build_model, compile_model
    from trainer_service.runs.config import TrainConfig

    config = TrainConfig(dataset=DATASET_NAME, width=width, batch_size=batch_size, seed=seed)
    runtime = resolve_runtime(config)
    keras.utils.set_random_seed(seed)
    with runtime.scope():
        model = build_model(config, CLASSES)
        compile_model(model, config, runtime, steps_per_epoch)
    return model, config, runtime.describe()


def child_step(
    width: int,
    batch_size: int,
    warmup: int,
    steps: int,
    windows: int,
    source: str,
    data_root: str,
) -> dict:
    """Time ``windows`` windows of ``steps`` training steps after ``warmup`` steps."""

    import keras
    import numpy as np
    import tensorflow as tf

    total = warmup + steps * windows
    if source == PIPELINE:
        from datavolume import DataRoot
        from trainer_service.engine.data import input_pipelines, load_dataset

        folder, metadata = load_dataset(DataRoot(data_root), DATASET_NAME)
        steps_per_epoch = metadata.split("train").num_records // batch_size
    else:
        steps_per_epoch = max(total, 1000)
    model, config, runtime = trainer_model(width, batch_size, steps_per_epoch)
    if source == PIPELINE:
        ds, _, _ = input_pipelines(config, folder, metadata, seed=0)
        ds = ds.repeat()
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (batch_size, 64, 64, 3), dtype=np.uint8)
        y = rng.integers(0, CLASSES, (batch_size,), dtype=np.int32)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()

    ends: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                float(logs["loss"])  # wait for the step's result
            ends.append(time.perf_counter())

    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=total, callbacks=[Timer()], verbose=0)
    if len(ends) != total:
        raise RuntimeError(f"expected {total} batch ends, got {len(ends)}")
    first = ends[warmup - 1] if warmup else start
    rates = []
    for i in range(windows):
        t0 = first if i == 0 else ends[warmup + i * steps - 1]
        t1 = ends[warmup + (i + 1) * steps - 1]
        rates.append(steps * batch_size / (t1 - t0))
    return {
        "rates": rates,
        "warmup_s": first - start,
        "params": int(model.count_params()),
        "runtime": runtime,
    }


def child_pipeline(data_root: str, batch_size: int, epochs: int = 2) -> dict:
    """The trainer's train pipeline alone: images/s per epoch (epoch 1 fills the cache)."""

    import tensorflow  # noqa: F401

    from datavolume import DataRoot
    from trainer_service.engine.data import input_pipelines, load_dataset
    from trainer_service.runs.config import TrainConfig

    folder, metadata = load_dataset(DataRoot(data_root), DATASET_NAME)
    config = TrainConfig(dataset=DATASET_NAME, batch_size=batch_size)
    ds, _, _ = input_pipelines(config, folder, metadata, seed=0)
    out = []
    for _ in range(epochs):
        start = time.perf_counter()
        images = 0
        for x, _y in ds:
            images += int(x.shape[0])
        out.append(images / (time.perf_counter() - start))
    return {"rates": out}


def measure(
    data: WorkData,
    *,
    widths: tuple[int, ...],
    batch_size: int,
    warmup: int,
    steps: int,
    repeats: int,
) -> dict:
    ensure_prepared(data)
    logfile = data.logs_dir / "train_step.log"
    steps_out: dict[tuple[int, str], dict] = {}
    for width in widths:
        for source in (MEMORY, PIPELINE):
            log(f"train step: width {width}, {source}, {warmup}+{repeats}x{steps} steps")
            run = run_child(
                "bench.train_step:child_step",
                {
                    "width": width,
                    "batch_size": batch_size,
                    "warmup": warmup,
                    "steps": steps,
                    "windows": repeats,
                    "source": source,
                    "data_root": str(data.prepared_root),
                },
                log_path=logfile,
            )
            r = run.result
            r["peak_tree_rss"] = run.peak_tree_rss
            steps_out[(width, source)] = r
            log(f"  {Stats.of(r['rates']).fmt(',.1f')} images/s")
    pipeline = []
    for i in range(repeats):
        log(f"train pipeline alone, repeat {i + 1}/{repeats}")
        run = run_child(
            "bench.train_step:child_pipeline",
            {"data_root": str(data.prepared_root), "batch_size": batch_size},
            log_path=logfile,
        )
        pipeline.append(run.result["rates"])
    return {"steps": steps_out, "pipeline": pipeline}


def render(data: WorkData, results: dict, info: RunInfo, args: argparse.Namespace) -> str:
    steps_out, pipeline = results["steps"], results["pipeline"]
    any_run = next(iter(steps_out.values()))
    rt = any_run["runtime"]
    out = [
        info.header(
            f"Batch {args.train_batch_size}; per width and input source one process: "
            f"{args.warmup} warm-up steps (tracing), then {args.repeats} timed windows of "
            f"{args.steps} steps (the repeats). Runtime as the trainer resolves it here: "
            f"{rt['backend']} backend on {rt['device']}, policy {rt['dtype_policy']}, "
            f"jit_compile={rt['jit_compile']}, steps_per_execution={rt['steps_per_execution']}; "
            f"{usable_cores()} CPU cores. Pipeline data: the train split of the "
            f"{describe(data.spec)}."
        ),
        "",
    ]
    rows = []
    widths = sorted({w for w, _ in steps_out})
    for width in widths:
        mem = Stats.of(steps_out[(width, MEMORY)]["rates"])
        fed = Stats.of(steps_out[(width, PIPELINE)]["rates"])
        rows.append(
            [
                width,
                f"{steps_out[(width, MEMORY)]['params']:,}",
                f"{args.train_batch_size / mem.median:.3f}",
                mem.fmt(",.1f"),
                fed.fmt(",.1f"),
                ratio(fed.median, mem.median),
                f"{mib(steps_out[(width, PIPELINE)]['peak_tree_rss']):,.0f}",
            ]
        )
    out.append(
        md_table(
            [
                "width",
                "parameters",
                "s/step (median)",
                "images/s, in-memory batch",
                "images/s, fed by the train pipeline",
                "fed / in-memory",
                "peak RSS MiB (fed)",
            ],
            rows,
        )
    )
    first = Stats.of(r[0] for r in pipeline)
    cached = Stats.of(r[1] for r in pipeline) if all(len(r) > 1 for r in pipeline) else None
    out.append(
        "\n#### Does the input pipeline keep up?\n\n"
        f"The trainer's train pipeline alone (uint8 batches of {args.train_batch_size}, no model) "
        f"delivers **{first.fmt(',.0f')} images/s** in its first epoch (reading and decoding the "
        "shards)"
        + (f" and **{cached.fmt(',.0f')} images/s** from its cache" if cached else "")
        + f" on the {usable_cores()} CPU cores.\n"
    )
    out.append(info.header() + "\n")
    rows = []
    for width in widths:
        mem = Stats.of(steps_out[(width, MEMORY)]["rates"]).median
        rows.append(
            [
                width,
                f"{mem:,.1f}",
                f"{first.median:,.0f}",
                ratio(first.median, mem),
                "yes" if first.median >= mem else "**no**",
            ]
        )
    out.append(
        md_table(
            [
                "width",
                "step consumes images/s",
                "pipeline delivers images/s (epoch 1)",
                "pipeline / step",
                "keeps up",
            ],
            rows,
        )
    )
    out.append(
        '\nThe "fed / in-memory" column above is the same question asked inside training '
        "(the pipeline and the step share the cores): near 1.00x, the step never waits for data."
    )
    return "\n".join(out)


def parse_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be ints, got {text!r}") from None
    if not widths or any(w < 4 or w % 4 for w in widths):
        raise argparse.ArgumentTypeError(f"widths must be positive multiples of 4, got {text!r}")
    return widths


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training step")
    g.add_argument("--widths", type=parse_widths, default=(32, 64), help="default: 32,64")
    g.add_argument("--train-batch-size", type=int, default=32, help="default: %(default)s")
    g.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    g.add_argument("--steps", type=int, default=10, help="steps per timed window (default: 10)")


def run(data: WorkData, args: argparse.Namespace, info: RunInfo) -> str:
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1")
    images = data.spec.train_total
    if images // args.train_batch_size < 1:
        raise SystemExit(f"the train split ({images} images) is smaller than one batch")
    results = measure(
        data,
        widths=args.widths,
        batch_size=args.train_batch_size,
        warmup=args.warmup,
        steps=args.steps,
        repeats=args.repeats,
    )
    return render(data, results, info, args)


def main(argv: list[str] | None = None) -> int:
    return run_script("bench.train_step", __doc__, add_arguments, run, SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
