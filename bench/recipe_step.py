"""What each training option costs the step, on this machine's CPU.

    python -m bench.recipe_step [--repeats 3] [--cost-width 32] [--cost-batch 32]

For every row of ``bench.recipe_variants.step_variants()`` (nothing; each augmentation or option
alone; the whole fast recipe) the trainer builds its model and training step exactly as a run
does (``trainer_service.engine.train.build_model`` and ``compile_model``: the network, or the
``TrainingModel`` around it when images are mixed, labels smoothed or validation flip-averaged)
and ``fit`` runs warm-up steps, then timed steps, on one in-memory uint8 batch; ``evaluate`` then
times the validation step (where the test-time flip costs). Each repeat is one child process
measuring every row, in an order rotated from repeat to repeat; the ratio is to ``none``.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import RunInfo, Stats, log, md_table, run_child, run_standalone
from bench.recipe_variants import step_variants

SECTION = "recipe-step"
NEEDS_DATA = False
CLASSES = 200


def _step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """When each train step's result was ready."""

        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step's result
            self.ends.append(time.perf_counter())

    return StepTimer


def child_rows(
    variants: dict[str, dict], width: int, batch: int, warmup: int, steps: int, eval_steps: int
) -> dict:
    """Train and validation images/s of each variant, in the given order."""
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer_service.engine.runtime import resolve_runtime
    from trainer_service.engine.train import build_model, compile_model
    from trainer_service.runs.config import TrainConfig

    StepTimer = _step_timer()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, (batch,), dtype=np.int32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    out = {}
    for name, fields in variants.items():
        keras.backend.clear_session()
        config = TrainConfig(
            **{
                "dataset": "bench",
                **fields,
                "width": width,
                "batch_size": batch,
                "epochs": 1,
                "warmup_epochs": 0.0,
            }
        )
        runtime = resolve_runtime(config)
        with runtime.scope():
            model = build_model(config, CLASSES)
            trained = compile_model(model, config, runtime, steps_per_epoch=warmup + steps)
        timer = StepTimer()
        trained.fit(data, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
        ends = timer.ends
        train_rate = steps * batch / (ends[-1] - ends[warmup - 1])
        trained.evaluate(data, steps=2, verbose=0)  # traces the validation step
        t0 = time.perf_counter()
        trained.evaluate(data, steps=eval_steps, verbose=0)
        out[name] = {"train": train_rate, "val": eval_steps * batch / (time.perf_counter() - t0)}
    return out


def measure(args, logs_dir) -> dict[str, dict[str, list[float]]]:
    variants = step_variants()
    names = list(variants)
    found: dict[str, dict[str, list[float]]] = {n: {"train": [], "val": []} for n in names}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        log(f"recipe step: repeat {r + 1}/{args.repeats}")
        run = run_child(
            "bench.recipe_step:child_rows",
            {
                "variants": {n: variants[n] for n in order},
                "width": args.cost_width,
                "batch": args.cost_batch,
                "warmup": 3,
                "steps": args.cost_steps,
                "eval_steps": args.cost_steps,
            },
            log_path=logs_dir / "recipe_step.log",
        )
        for name, rates in run.result.items():
            found[name]["train"].append(rates["train"])
            found[name]["val"].append(rates["val"])
    return found


def render(found: dict[str, dict[str, list[float]]], info: RunInfo, args) -> str:
    base_train = Stats.of(found["none"]["train"]).median
    base_val = Stats.of(found["none"]["val"]).median
    rows = []
    for name, rates in found.items():
        train, val = Stats.of(rates["train"]), Stats.of(rates["val"])
        rows.append(
            [
                name,
                train.fmt(",.1f"),
                f"{base_train / train.median:.2f}x",
                val.fmt(",.1f"),
                f"{base_val / val.median:.2f}x",
            ]
        )
    note = (
        f"Width {args.cost_width}, levels 4,6,3,2, batch {args.cost_batch}, one in-memory "
        f"uint8 batch; per row 3 warm-up steps then {args.cost_steps} timed steps, and "
        f"{args.cost_steps} timed validation steps; the runtime the trainer resolves on this "
        "CPU (float32, no XLA). Step time relative to `none` (the homework's recipe without "
        "its flip): above 1.00x costs time."
    )
    table = md_table(
        [
            "option",
            "train images/s",
            "train step time vs none",
            "validation images/s",
            "validation step time vs none",
        ],
        rows,
    )
    return f"{info.header(note)}\n\n{table}\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cost-width", type=int, default=32, help="model width (default: 32)")
    p.add_argument("--cost-batch", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--cost-steps", type=int, default=10, help="timed steps per row")


def run(data, args, info: RunInfo) -> str:
    """``bench.run_all``'s entry: measure, then the section's markdown."""
    logs = args.work_dir / "recipes" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return render(measure(args, logs), info, args)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
