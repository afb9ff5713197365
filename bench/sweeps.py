"""Learning benchmark of sweeps: what a sweep finds, and what its pruner saves, on the recipe
benchmark's shift set (``bench.recipe_data``: crops decide it; its shapes are asymmetric
left-right, so flips cost).

    python -m bench.sweeps                              # BENCHMARKS.md section 8 (~1 h on 2 cores)
    python -m bench.sweeps --sweep-trials 4 --sweep-epochs 3 --seeds 1 --output /tmp/B.md

Everything runs as users run it: a trainer service (a uvicorn process, two CPU slots: two trials
at a time) on the bench's data root, driven over HTTP with the project's client, and each trial
an ordinary run of its worker.

1. **Two sweeps of the same trials**, one with Optuna's median pruner, one without (``pruner:
   none``): TPE (seed 0, random for the first ``--startup-trials``) over the learning rate (log,
   0.01-0.3), ``crop_padding`` (0, 4, 8), ``flip``, ``label_smoothing`` (0-0.2) and
   ``zero_init_residual``, ``--sweep-trials`` trials of ``--sweep-epochs`` epochs each; the base
   of every trial is the recipe benchmark's ``none`` arm (the fast recipe's optimizer and
   schedule at the benchmark's budget, every augmentation and regularizer off: the space turns
   them on). For each: its best trial, its values, and the epochs its trials trained.
2. **The best found, against the recipes**: the pruned sweep's best values trained again with
   seeds 0..N-1 (trial runs used seed 0), beside the ``fast`` recipe and the best single-option
   arm of section 6 (crops alone), trained with the same seeds in this run: final val top-1.

Targets (the sweeps issue): the sweep's best at or above crops alone, for at most 60 % of the
epochs of the search without pruning.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench.common import RunInfo, command_line, log, md_table, run_child
from bench.recipe_data import RecipeDataSpec
from bench.recipe_variants import FEATURES, OFF
from bench.recipes import DATASET, ensure_set, scaled

SECTION = "sweeps"
NEEDS_DATA = False
#: The fields the sweeps search, and how.
SPACE = {
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "crop_padding": {"choices": [0, 4, 8]},
    "flip": {"choices": [True, False]},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "zero_init_residual": {"choices": [True, False]},
}
#: The arm of section 6 that did best alone on the shift set.
BEST_ALONE = "crop (padding 4)"
TARGET_EPOCH_SHARE = 0.6


def base_run(args) -> dict:
    """Every trial's body but the space: the ``none`` arm of ``bench.recipes``."""
    fields = {**scaled("fast", args.sweep_epochs, args.recipe_batch, args.recipe_lr), **OFF}
    for name in SPACE:
        fields.pop(name, None)
    return {**fields, "width": args.recipe_width, "levels": args.recipe_levels, "seed": 0,
            "export_savedmodel": False, "export_onnx": False, "keep_checkpoints": 1}  # fmt: skip


def sweep_body(args, name: str, pruner: str) -> dict:
    return {
        "name": name, "dataset": DATASET, "base": base_run(args), "space": SPACE,
        "metric": "val_top1", "sampler": "tpe", "seed": 0, "pruner": pruner,
        "startup_trials": args.startup_trials, "prune_after_epochs": args.prune_after_epochs,
        "max_trials": args.sweep_trials, "max_concurrent": 2,
    }  # fmt: skip


def run_sweeps(args, root: Path) -> dict[str, dict]:
    """Both sweeps, one after the other, through a trainer service on ``root``."""
    import os

    from scripts.run_local import compose_config, start_service, stop_service

    os.environ.update({"TRAINER_MAX_CONCURRENT_JOBS": "2", "TRAINER_SWEEP_POLL_S": "0.5"})
    service = start_service("trainer", compose_config(), root, log_dir=root / "sweep-logs")
    found = {}
    try:
        with service.client(timeout=120) as trainer:
            for pruner in ("median", "none"):
                name = f"bench-{pruner}-{time.strftime('%H%M%S')}"
                started = time.monotonic()
                log(f"sweeps: {name} ({args.sweep_trials} trials of {args.sweep_epochs} epochs)")
                trainer.sweep(**sweep_body(args, name, pruner))
                done = list(trainer.watch_sweep(name))[-1]
                if done["state"] != "succeeded":
                    raise RuntimeError(f"sweep {name} {done['state']}: {done.get('reason')}")
                found[pruner] = {**done, "minutes": (time.monotonic() - started) / 60}
    finally:
        stop_service(service)
    return found


def train_arm(root: Path, fields: dict, seed: int, logs: Path) -> dict:
    run_dir = root / "runs" / f"sweeps-{seed}-{time.time_ns()}"
    run = run_child(
        "bench.recipes:child_train",
        {"data_root": str(root), "run_dir": str(run_dir), "fields": {**fields, "seed": seed}},
        log_path=logs / "train.log",
    )
    return run.result


def measure(args) -> dict:
    root = ensure_set(args.work_dir, RecipeDataSpec(variant="shift"))
    sweeps = run_sweeps(args, root)
    best = sweeps["median"]["best"]
    common = {"width": args.recipe_width, "levels": args.recipe_levels, "dataset": DATASET,
              "export_savedmodel": False, "export_onnx": False, "keep_checkpoints": 1}  # fmt: skip
    fast = scaled("fast", args.recipe_epochs, args.recipe_batch, args.recipe_lr)
    arms = {
        "the sweep's best": {**base_run(args), **best["params"], "epochs": args.sweep_epochs},
        "fast": fast,
        BEST_ALONE: {**fast, **OFF, **FEATURES[BEST_ALONE]},
    }
    logs = args.work_dir / "recipes" / "logs"
    trained: dict[str, list[dict]] = {}
    for name, fields in arms.items():
        trained[name] = []
        for seed in range(args.seeds):
            log(f"sweeps: {name} / seed {seed}")
            trained[name].append(train_arm(root, {**fields, **common}, seed, logs))
    return {"sweeps": sweeps, "arms": trained}


def _pct(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values) * 100:.1f}" if len(values) > 1 else ""
    return f"{statistics.mean(values) * 100:.1f}{spread}"


def _values(params: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())  # fmt: skip


def render(found: dict, info: RunInfo, args) -> str:
    sweeps, arms = found["sweeps"], found["arms"]
    pruned, full = sweeps["median"], sweeps["none"]
    share = pruned["epochs"] / full["epochs"]
    rows = []
    for label, sweep in (("median pruner", pruned), ("no pruning", full)):
        states = [t["state"] for t in sweep["trials"]]
        rows.append([
            label, f"{sweep['best']['value'] * 100:.1f}", _values(sweep["best"]["params"]),
            f"{states.count('complete')} / {states.count('pruned')}", sweep["epochs"],
            f"{sweep['epochs'] / full['epochs']:.0%}", f"{sweep['minutes']:.0f}",
        ])  # fmt: skip
    sweep_table = md_table(
        ["search", "best trial's val top-1 % (seed 0)", "its values", "trials completed / pruned",
         "epochs trained", "of the unpruned search", "minutes"], rows)  # fmt: skip
    base = [r["final_val"] for r in arms[BEST_ALONE]]
    arm_rows = []
    for name, runs in arms.items():
        final = [r["final_val"] for r in runs]
        diffs = [(a - b) * 100 for a, b in zip(final, base, strict=True)]
        per_seed = ", ".join(f"{d:+.1f}" for d in diffs)
        versus = "-" if name == BEST_ALONE else f"{statistics.mean(diffs):+.1f} (seeds {per_seed})"
        arm_rows.append([name, _pct(final), ", ".join(f"{v * 100:.1f}" for v in final), versus,
                         f"{statistics.mean(r['seconds'] for r in runs):.0f}"])  # fmt: skip
    arm_table = md_table(["arm", "final val top-1 %", "per seed", f"vs {BEST_ALONE}, points",
                          "s per run"], arm_rows)  # fmt: skip
    best_mean = statistics.mean(r["final_val"] for r in arms["the sweep's best"])
    met = best_mean >= statistics.mean(base) and share <= TARGET_EPOCH_SHARE
    note = (
        f"Each search: {args.sweep_trials} trials of {args.sweep_epochs} epochs, TPE (seed 0; the "
        f"first {args.startup_trials} at random), two at a time on two CPU slots of one trainer "
        f"service; the median pruner from epoch {args.prune_after_epochs + 1} on, after "
        f"{args.startup_trials} completed trials. Space: {SPACE}. Base of every trial: the fast "
        f"recipe's optimizer and schedule, every augmentation off (section 6's `none`), width "
        f"{args.recipe_width}, levels {','.join(map(str, args.recipe_levels))}, batch "
        f"{args.recipe_batch}. The arms: seeds 0..{args.seeds - 1}, {args.recipe_epochs} epochs."
    )
    summary = (
        f"**The pruned sweep's best, trained again on {args.seeds} seeds: "
        f"{best_mean * 100:.1f} % final val top-1 against {statistics.mean(base) * 100:.1f} % for "
        f"crops alone, for {share:.0%} of the epochs of the same search without pruning "
        f"({pruned['epochs']} against {full['epochs']}). Targets (at or above crops alone, at "
        f"most {TARGET_EPOCH_SHARE:.0%} of the epochs): {'met' if met else 'NOT met'}.**"
    )
    return (
        f"{info.header(note, cells='repeats are seeds; cells: mean ± standard deviation')}\n\n"
        f"{summary}\n\n#### The two searches\n\n{sweep_table}\n\n"
        f"#### The best found, against the recipes (final val top-1 on the shift set)\n\n"
        f"{arm_table}\n"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    for flag, default, what in (
        ("--sweep-trials", 16, "trials per search"),
        ("--sweep-epochs", 30, "epochs per trial"),
        ("--startup-trials", 2, "random trials before TPE, completed trials before pruning"),
        ("--prune-after-epochs", 2, "epochs before the pruner may prune"),
    ):
        p.add_argument(flag, type=int, default=default, help=f"{what} (default: {default})")


def run(data, args, info: RunInfo) -> str:
    """``bench.run_all``'s entry: measure, then the section's markdown."""
    return render(measure(args), info, args)


def main(argv: list[str] | None = None) -> int:
    from bench.common import common_parser, replace_section
    from bench.recipes import add_arguments as recipe_arguments

    p = common_parser(__doc__)
    recipe_arguments(p)
    add_arguments(p)
    args = p.parse_args(argv)
    info = RunInfo.now(command_line("bench.sweeps", argv), args.seeds)
    body = run(None, args, info)
    replace_section(args.output, SECTION, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
