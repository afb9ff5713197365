"""Learning benchmark of the training recipes: val top-1 on synthetic sets where augmentation
decides the outcome, every arm over several seeds.

    python -m bench.recipes                        # BENCHMARKS.md section 6 (about 1 h on 2 cores)
    python -m bench.recipes --seeds 1 --recipe-epochs 3 --output /tmp/B.md   # a quick try
    python -m bench.recipes --archive tiny-imagenet-200.zip --data-root /data  # the real archive

The sets (``bench.recipe_data``), written in the archive's layout and turned into shards by the
project's own ``prepare``: ``shift`` (centred objects in a small train split, objects moved and
resized in val: crops should decide it) and ``mirror`` (classes in mirror pairs: the flip should
decide it). Every training is the trainer's own ``train()``, in a child process.

Arms, each trained with seeds 0..N-1 (the seed draws the initial weights, the shuffles and every
augmentation; the data are the same for every arm):

1. the recipes, ``homework`` and ``fast``, each with all its values but for the budget this machine
   allows: the epochs, the batch, the model and the peak learning rate are the benchmark's, the
   same for every arm, and the epoch-counted schedule points (decay epochs, warm-up) scale with
   the epochs. (The recipes' own rates are tuned for 100,000 images, tens of thousands of steps;
   scaled to a few hundred steps on 400 images by the linear rule, neither trains at all here.)
2. the fast recipe with one of its parts off (its flips, its label smoothing, its zero-initialised
   residual branches): what each part adds to the whole on the shift set;
3. each option alone: the fast recipe's optimizer and schedule with every augmentation and
   regularizer off (``none``), then each option of ``bench.recipe_variants.FEATURES`` alone;
4. the flip on the mirror set: the homework recipe as it is, and with its flip off.

With ``--archive`` it prepares the real ``tiny-imagenet-200.zip`` and trains each recipe exactly as
it is (the full model, every value), then prints their val top-1/top-5 and time: the measurement
of section 6's expectations, on a GPU host.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.common import RunInfo, command_line, common_parser, log, md_table, run_child
from bench.recipe_data import RecipeDataSpec, write_tree
from bench.recipe_variants import FEATURES, OFF

SECTION = "recipes"
NEEDS_DATA = False
DATASET = "recipes"
TABLES = ("recipes", "parts", "options", "flip")


# ---------------------------------------------------------------------------- arms


def scaled(recipe: str, epochs: int, batch: int, learning_rate: float) -> dict:
    """The recipe's values at this benchmark's budget (see the module docstring)."""
    from trainer_service.runs.config import recipe_values

    values = recipe_values(recipe)
    k = epochs / values["epochs"]
    decay = sorted({max(1, round(e * k)) for e in values["decay_epochs"]})
    return {
        **values,
        "recipe": recipe,
        "epochs": epochs,
        "batch_size": batch,
        "learning_rate": learning_rate,
        "decay_epochs": decay,
        "warmup_epochs": values["warmup_epochs"] * k,
    }


#: The parts of the fast recipe beyond its crops and optimizer, each as the fields that turn it off.
FAST_PARTS = {
    "flip and test-time flip": ("flip", "tta_flip"),
    "label smoothing": ("label_smoothing",),
    "zero-init residual": ("zero_init_residual",),
}


def arms(epochs: int, batch: int, learning_rate: float) -> dict[str, dict[str, dict]]:
    """Table -> arm -> the run's fields (the set is in ``"set"``)."""
    homework = scaled("homework", epochs, batch, learning_rate)
    fast = scaled("fast", epochs, batch, learning_rate)
    none = {**fast, **OFF}
    return {
        "recipes": {"homework": {**homework, "set": "shift"}, "fast": {**fast, "set": "shift"}},
        "parts": {
            f"fast, {part} off": {**fast, **{k: OFF[k] for k in keys}, "set": "shift"}
            for part, keys in FAST_PARTS.items()
        },
        "options": {
            "none": {**none, "set": "shift"},
            **{name: {**none, **fields, "set": "shift"} for name, fields in FEATURES.items()},
        },
        "flip": {
            "homework (flip on)": {**homework, "set": "mirror"},
            "homework, flip off": {**homework, "flip": False, "set": "mirror"},
        },
    }


# ---------------------------------------------------------------------------- data and runs


def ensure_set(work_dir: Path, spec: RecipeDataSpec) -> Path:
    """A data root with the set prepared as dataset ``recipes`` (made once, then reused)."""
    from datavolume.datasets import DatasetUnavailable, open_dataset
    from datavolume.layout import DataRoot

    root = work_dir / "recipes" / spec.name
    try:
        open_dataset(DataRoot(root), DATASET)
        return root
    except DatasetUnavailable:
        pass
    source = root / "raw" / "source"
    if not (source / "tiny-imagenet-200").is_dir():
        write_tree(source, spec)
    run_child(
        "bench.recipes:child_prepare",
        {"data_root": str(root), "source": {"kind": "folder", "path": "raw/source"}},
        log_path=work_dir / "recipes" / "logs" / "prepare.log",
    )
    return root


def child_prepare(data_root: str, source: dict) -> dict:
    """The project's own prepare of ``source`` into dataset ``recipes``."""
    from dataset_service.models import PrepareRequest
    from dataset_service.prepare import prepare
    from dataset_service.settings import Settings

    metadata = prepare(
        PrepareRequest(name=DATASET, source=source), Settings(data_root=Path(data_root))
    )
    return {split: info.num_records for split, info in metadata.splits.items()}


def child_train(data_root: str, run_dir: str, fields: dict) -> dict:
    """One training, as the trainer's worker runs it; the scores of its run folder."""
    import os

    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # before TensorFlow, as the worker does
    from jobkit.context import LocalContext
    from trainer_service.engine.train import train
    from trainer_service.runs.config import TrainConfig

    started = time.perf_counter()
    result = train(TrainConfig(**fields), Path(run_dir), Path(data_root), LocalContext())
    history = result.history[-1]
    return {
        "final_val": history["val_accuracy"],
        "final_val_top5": history["val_top5_accuracy"],
        "best_val": result.best["val_accuracy"],
        "final_train": history["accuracy"],
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------- the benchmark


def measure(args) -> dict[str, dict[str, list[dict]]]:
    base = {"width": args.recipe_width, "levels": args.recipe_levels, "export_savedmodel": False,
            "export_onnx": False, "keep_checkpoints": 1, "dataset": DATASET}  # fmt: skip
    sets = {
        variant: ensure_set(args.work_dir, RecipeDataSpec(variant=variant))
        for variant in ("shift", "mirror")
    }
    logs = args.work_dir / "recipes" / "logs"
    found: dict[str, dict[str, list[dict]]] = {}
    for table, table_arms in arms(args.recipe_epochs, args.recipe_batch, args.recipe_lr).items():
        if table not in args.tables:
            continue
        found[table] = {}
        for name, fields in table_arms.items():
            root = sets[fields["set"]]
            found[table][name] = []
            for seed in range(args.seeds):
                run_fields = {**{k: v for k, v in fields.items() if k != "set"}, **base,
                              "seed": seed}  # fmt: skip
                run_dir = root / "runs" / f"{table}-{len(found[table])}-s{seed}-{time.time_ns()}"
                log(f"recipes: {table} / {name} / seed {seed}")
                run = run_child(
                    "bench.recipes:child_train",
                    {"data_root": str(root), "run_dir": str(run_dir), "fields": run_fields},
                    log_path=logs / "train.log",
                )
                found[table][name].append(run.result)
    return found


def _pct(values: list[float]) -> str:
    mean = statistics.mean(values)
    spread = f" ± {statistics.stdev(values) * 100:.1f}" if len(values) > 1 else ""
    return f"{mean * 100:.1f}{spread}"


def _seeds(values: list[float]) -> str:
    return ", ".join(f"{v * 100:.1f}" for v in values)


def render_table(results: dict[str, list[dict]], base: str) -> tuple[str, dict[str, float]]:
    """The table of one group of arms, and each arm's mean margin over ``base`` (points)."""
    reference = [r["final_val"] for r in results[base]]
    rows, margins = [], {}
    for name, runs in results.items():
        final = [r["final_val"] for r in runs]
        diffs = [a - b for a, b in zip(final, reference, strict=True)]
        margins[name] = statistics.mean(diffs) * 100
        versus = "-" if name == base else (
            f"{margins[name]:+.1f} (seeds {', '.join(f'{d * 100:+.1f}' for d in diffs)})"
        )  # fmt: skip
        rows.append([
            name, _pct(final), _seeds(final), versus, _pct([r["best_val"] for r in runs]),
            _pct([r["final_train"] for r in runs]),
            f"{statistics.mean(r['seconds'] for r in runs):.0f}",
        ])  # fmt: skip
    headers = ["arm", "final val top-1 %", "per seed", f"vs {base}, points", "best val top-1 %",
               "final train top-1 %", "s per run"]  # fmt: skip
    return md_table(headers, rows), margins


def render(found, info: RunInfo, args) -> str:
    shift, mirror = RecipeDataSpec(variant="shift"), RecipeDataSpec(variant="mirror")
    note = (
        f"Budget of every run: {args.recipe_epochs} epochs, batch {args.recipe_batch}, width "
        f"{args.recipe_width}, levels {','.join(map(str, args.recipe_levels))}; seeds "
        f"0..{args.seeds - 1}, paired across arms (the same seed, the same data). shift set: "
        f"{asdict(shift)}; mirror set: {asdict(mirror)}. Chance: "
        f"{100 / shift.classes:.0f} %."
    )
    if set(found) != set(TABLES):
        raise ValueError(f"the section needs every table, measured {sorted(found)}")
    recipes, recipe_margins = render_table(found["recipes"], "homework")
    parts, _ = render_table({"fast": found["recipes"]["fast"], **found["parts"]}, "fast")
    options, _ = render_table(found["options"], "none")
    flip, flip_margins = render_table(found["flip"], "homework (flip on)")
    fast_runs = [r["final_val"] for r in found["recipes"]["fast"]]
    home_runs = [r["final_val"] for r in found["recipes"]["homework"]]
    worst = min(a - b for a, b in zip(fast_runs, home_runs, strict=True)) * 100
    summary = (
        f"**fast - homework on the shift set: {recipe_margins['fast']:+.1f} points of final val "
        f"top-1 (mean over {args.seeds} seeds; the smallest per-seed margin {worst:+.1f}).** "
        f"Turning the flip off on the mirror set: "
        f"{flip_margins['homework, flip off']:+.1f} points."
    )
    return (
        f"{info.header(note, cells='repeats are seeds; cells: mean ± standard deviation')}\n\n"
        f"{summary}\n\n"
        f"#### The recipes on the shift set\n\n{recipes}\n\n"
        f"#### The fast recipe with one part off, on the shift set (the fast runs above)\n\n"
        f"{parts}\n\n"
        f"#### Each option alone on the shift set (the fast recipe's optimizer and schedule)\n\n"
        f"{options}\n\n"
        f"#### The flip on the mirror set\n\n{flip}\n"
    )


# ---------------------------------------------------------------------------- the real archive


def real_archive(args) -> int:
    """Prepare the real archive and train each recipe as it is; print the table."""
    from datavolume.layout import DataRoot
    from trainer_service.runs.recipes import RECIPES

    root = DataRoot(args.data_root)
    archive = Path(args.archive).resolve()
    relative = root.relative(archive)
    if relative == str(archive):
        raise SystemExit(f"--archive must lie inside --data-root {root.path}")
    log(f"preparing {relative} (the project's prepare; MD5 checked)")
    run_child(
        "bench.recipes:child_prepare",
        {"data_root": str(root.path), "source": {"kind": "zip", "path": relative}},
        log_path=root.path / "bench-logs" / "prepare.log",
    )
    rows = []
    for name in RECIPES:
        log(f"training the {name} recipe as it is")
        run = run_child(
            "bench.recipes:child_train",
            {
                "data_root": str(root.path),
                "run_dir": str(root.path / "runs" / f"recipe{name}{time.time_ns()}"),
                "fields": {"dataset": DATASET, "recipe": name},
            },
            log_path=root.path / "bench-logs" / f"{name}.log",
        )
        r = run.result
        rows.append([name, f"{r['final_val'] * 100:.1f}", f"{r['final_val_top5'] * 100:.1f}",
                     f"{r['best_val'] * 100:.1f}", f"{r['seconds'] / 60:.1f}"])  # fmt: skip
    headers = ["recipe", "final val top-1 %", "final val top-5 %", "best val top-1 %", "minutes"]
    print(md_table(headers, rows))
    return 0


# ---------------------------------------------------------------------------- entry points


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (default: 3)")
    p.add_argument(
        "--tables",
        type=lambda text: tuple(t for t in text.split(",") if t),
        default=TABLES,
        help=f"a subset of {','.join(TABLES)} (the section needs all; a subset prints a summary)",
    )
    p.add_argument("--recipe-epochs", type=int, default=30, help="epochs per run (default: 30)")
    p.add_argument("--recipe-batch", type=int, default=32, help="batch (default: 32)")
    p.add_argument(
        "--recipe-lr", type=float, default=0.05, help="peak learning rate of every arm (0.05)"
    )
    p.add_argument("--recipe-width", type=int, default=16, help="model width (default: 16)")
    p.add_argument(
        "--recipe-levels",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 1, 1],
        help="bottlenecks per level (default: 1,1,1)",
    )


def run(data, args, info: RunInfo) -> str:
    """``bench.run_all``'s entry: measure, then the section's markdown."""
    return render(measure(args), info, args)


def main(argv: list[str] | None = None) -> int:
    from bench.common import replace_section

    p = common_parser(__doc__)
    add_arguments(p)
    p.add_argument("--archive", type=Path, help="the real tiny-imagenet-200.zip (see above)")
    p.add_argument("--data-root", type=Path, help="with --archive: the data root it lies in")
    args = p.parse_args(argv)
    if args.archive:
        if not args.data_root:
            p.error("--archive needs --data-root")
        return real_archive(args)
    info = RunInfo.now(command_line("bench.recipes", argv), args.seeds)
    if set(args.tables) != set(TABLES):
        for table, results in measure(args).items():
            print(f"#### {table}\n\n{render_table(results, next(iter(results)))[0]}\n")
        return 0
    body = run(None, args, info)
    replace_section(args.output, SECTION, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
