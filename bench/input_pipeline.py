"""Input-pipeline benchmark: images/s delivered (decoded, augmented, batched) on the CPU cores.

    python -m bench.input_pipeline [--scale 1.0] [--repeats 3] [--pipeline-epochs 3]

Side by side on the train split (the same images), each run in a fresh child process:

* **project**: ``shard_format.pipeline.build_split(..., "train", training=True,
  preprocess="host", cache=True)`` over the prepared shards: interleaved reads, JPEG decode,
  cache of the decoded uint8 images, shuffle, batch, then the flip and per-image
  standardization on the host (``preprocess_batch``), prefetch;
* **keras**: ``keras.utils.image_dataset_from_directory(train_dir, image_size=(64, 64),
  shuffle=True)`` over the JPEG files, ``.cache()``, then the same ``preprocess_batch`` (flip +
  per-image standardization) mapped in parallel, prefetch: how a Keras user would do it;
* the project's pipeline as the trainer uses it (``preprocess="device"``): uint8 batches, the
  augmentation left to the model's ``Preprocess`` layer;
* **keras-device**: ``image_dataset_from_directory`` + ``.cache()`` + prefetch, the augmentation
  left to the model too (Keras's advice for accelerators): the trainer's counterpart.

Every epoch is iterated to the end in Python; epoch 1 (reading and decoding the files, filling
the cache) and the cached epochs 2..N are reported separately.
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
from bench.data import WorkData, describe, ensure_prepared, run_script

SECTION = "input"
PROJECT_HOST, KERAS, PROJECT_DEVICE, KERAS_DEVICE = (
    "project",
    "keras",
    "project-device",
    "keras-device",
)
METHODS = (PROJECT_HOST, KERAS, PROJECT_DEVICE, KERAS_DEVICE)


def _iterate(ds, epochs: int) -> list[dict]:
    out = []
    for _ in range(epochs):
        start = time.perf_counter()
        images = 0
        for x, _y in ds:
            images += int(x.shape[0])
        out.append({"seconds": time.perf_counter() - start, "images": images})
    return out


def child_project(
    dataset_dir: str, batch_size: int, epochs: int, preprocess: str = "host", seed: int = 0
) -> dict:
    """The project's training pipeline over the train shards."""
    from pathlib import Path

    import tensorflow as tf  # imported before the clock, as in every child

    from bench.host_preprocess import flip_generator, preprocess_batch
    from shard_format.pipeline import build_split

    start = time.perf_counter()
    ds, _ = build_split(
        Path(dataset_dir),
        "train",
        batch_size=batch_size,
        training=True,
        cache=True,
        seed=seed,
        drop_remainder=False,
    )
    if preprocess == "host":
        generator = flip_generator(seed)
        ds = ds.map(
            lambda x, y: (preprocess_batch(x, True, generator), y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=False,
        ).prefetch(tf.data.AUTOTUNE)
    setup = time.perf_counter() - start
    return {"setup_s": setup, "epochs": _iterate(ds, epochs)}


def child_keras(
    train_dir: str, batch_size: int, epochs: int, preprocess: str = "host", seed: int = 0
) -> dict:
    """``image_dataset_from_directory`` + cache (+ the same flip and standardization, on the
    host; with ``preprocess="device"`` they are left to the model)."""
    import keras
    import tensorflow as tf

    from bench.host_preprocess import flip_generator, preprocess_batch

    start = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(
        train_dir,
        labels="inferred",
        label_mode="int",
        image_size=(64, 64),
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        verbose=False,
    )
    ds = ds.cache()
    if preprocess == "host":
        generator = flip_generator(seed)
        ds = ds.map(
            lambda x, y: (preprocess_batch(x, True, generator), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.prefetch(tf.data.AUTOTUNE)
    setup = time.perf_counter() - start
    return {"setup_s": setup, "epochs": _iterate(ds, epochs)}


def pipeline_run(
    data: WorkData, method: str, *, batch_size: int, epochs: int, log_name: str
) -> dict:
    preprocess = "device" if method in (PROJECT_DEVICE, KERAS_DEVICE) else "host"
    kwargs = {"batch_size": batch_size, "epochs": epochs, "preprocess": preprocess}
    if method in (KERAS, KERAS_DEVICE):
        target = "bench.input_pipeline:child_keras"
        kwargs["train_dir"] = str(data.train_dir)
    else:
        target = "bench.input_pipeline:child_project"
        kwargs["dataset_dir"] = str(data.dataset_dir)
    run = run_child(target, kwargs, log_path=data.logs_dir / log_name)
    r = run.result
    r["peak_tree_rss"], r["peak_proc_rss"] = run.peak_tree_rss, run.peak_proc_rss
    return r


def first_rate(r: dict) -> float:
    e = r["epochs"][0]
    return e["images"] / e["seconds"]


def cached_rate(r: dict) -> float:
    """Images/s over epochs 2..N together (NaN with a single epoch)."""
    rest = r["epochs"][1:]
    if not rest:
        return float("nan")
    return sum(e["images"] for e in rest) / sum(e["seconds"] for e in rest)


def measure(data: WorkData, *, repeats: int, batch_size: int, epochs: int) -> dict[str, list]:
    ensure_prepared(data)
    runs: dict[str, list] = {m: [] for m in METHODS}
    for r in range(repeats):
        order = METHODS if r % 2 == 0 else (KERAS, PROJECT_HOST, KERAS_DEVICE, PROJECT_DEVICE)
        for method in order:
            log(f"input pipeline repeat {r + 1}/{repeats}: {method}")
            result = pipeline_run(
                data, method, batch_size=batch_size, epochs=epochs, log_name="input.log"
            )
            runs[method].append(result)
            log(
                f"  {method}: epoch 1 {first_rate(result):,.0f}/s, "
                f"cached {cached_rate(result):,.0f}/s, peak {mib(result['peak_tree_rss']):,.0f} MiB"
            )
    return runs


def render(
    data: WorkData, runs: dict[str, list], info: RunInfo, batch_size: int, epochs: int
) -> str:
    images = runs[PROJECT_HOST][0]["epochs"][0]["images"]
    out = [
        info.header(
            f"Data: the train split of the {describe(data.spec)} ({images:,} images); batch "
            f"{batch_size}; {epochs} epochs per run (1 first + {epochs - 1} cached); "
            f"{usable_cores()} CPU cores; images/s = images delivered / wall time of the epoch."
        ),
        "",
    ]
    labels = {
        PROJECT_HOST: 'project: shards → `build_split(preprocess="host")`',
        KERAS: "keras: JPEG files → `image_dataset_from_directory` + `.cache()` + same map",
        PROJECT_DEVICE: "project as the trainer feeds it: uint8, augmentation in the model",
        KERAS_DEVICE: "keras: `image_dataset_from_directory` + `.cache()`, augmentation in "
        "the model",
    }
    rows = []
    for method in METHODS:
        rs = runs[method]
        cached = [cached_rate(r) for r in rs]
        rows.append(
            [
                labels[method],
                Stats.of(r["setup_s"] for r in rs).fmt(".2f"),
                Stats.of(first_rate(r) for r in rs).fmt(",.0f"),
                Stats.of(cached).fmt(",.0f") if cached[0] == cached[0] else "-",
                Stats.of(mib(r["peak_tree_rss"]) for r in rs).fmt(",.0f"),
            ]
        )
    out.append(
        md_table(
            ["pipeline", "setup s", "epoch 1 images/s", "cached epochs images/s", "peak RSS MiB"],
            rows,
        )
    )

    def med(method: str, fn) -> float:
        return Stats.of(fn(r) for r in runs[method]).median

    lines = []
    for label, ours, theirs in (
        ("augmentation on the host (the same `preprocess_batch`)", PROJECT_HOST, KERAS),
        ("augmentation in the model, as the trainer runs it", PROJECT_DEVICE, KERAS_DEVICE),
    ):
        first = ratio(med(ours, first_rate), med(theirs, first_rate))
        cached = ratio(med(ours, cached_rate), med(theirs, cached_rate))
        lines.append(f"- {label}: epoch 1 **{first}**, cached epochs **{cached}**")
    out.append(
        "\nRatio project / keras, the same images and the same augmentation (medians):\n\n"
        + "\n".join(lines)
        + "\n\n"
        "Both shuffle and use `tf.data.AUTOTUNE` parallelism. `setup` is building the "
        "dataset (Keras lists the class folders and files; the project reads its metadata). "
        "The project caches the decoded uint8 images and reshuffles them every epoch; the Keras "
        "pipeline caches its float32 batches (4x the memory, and the batches' composition fixed "
        "after epoch 1: only the flips are redrawn), as `.cache()` after "
        "`image_dataset_from_directory` does. The augmentation is the same function "
        "(`bench.host_preprocess.preprocess_batch`) in both."
    )
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input pipeline")
    g.add_argument("--pipeline-batch-size", type=int, default=128, help="batch size (default: 128)")
    g.add_argument(
        "--pipeline-epochs",
        type=int,
        default=3,
        help="epochs per run: the first, then cached ones (default: 3)",
    )


def run(data: WorkData, args: argparse.Namespace, info: RunInfo) -> str:
    if args.pipeline_epochs < 2:
        raise SystemExit("--pipeline-epochs must be >= 2 (the first and at least one cached)")
    runs = measure(
        data,
        repeats=args.repeats,
        batch_size=args.pipeline_batch_size,
        epochs=args.pipeline_epochs,
    )
    return render(data, runs, info, args.pipeline_batch_size, args.pipeline_epochs)


def main(argv: list[str] | None = None) -> int:
    return run_script("bench.input_pipeline", __doc__, add_arguments, run, SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
