"""Sharding benchmark: the prepare job against a plain anchor, the writer against the old
homework's method, and how the job's time and peak memory grow with the dataset.

    python -m bench.sharding [--scale 1.0] [--repeats 3] [--fractions 0.1,0.25,0.5,1]

Each measurement runs in a fresh child process (peak memory per run):

1. **The whole prepare job** (``dataset_service.prepare.prepare``) from the zip, all splits,
   side by side with :mod:`bench.anchor` (``unzip`` + a plain 2-process TFRecord writer) on
   the same zip, on tmpfs (``/dev/shm``) and on the disk; the two alternate which goes first in
   every repeat and the ratio is reported per repeat. Per phase for both, and the job once more
   with ``image_folder: true`` (the archive also extracted as a reorganized tree).
2. **Train split, side by side** on the same extracted JPEG files (the page cache warm for
   both): the project's writer (``plan_split`` + ``write_shards``: JPEG bytes, one process per
   core) and :mod:`bench.homework_baseline` (``flow_from_directory`` + one float32 tensor per
   record, one process).
3. **Growth**: the prepare job on the first 10 %, 25 %, 50 % and 100 % of every split (the same
   images, packed into smaller zips): total time and peak memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

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
    ensure_fraction_zip,
    ensure_prepared,
    run_script,
    scratch_root,
)
from jobkit.context import LocalContext

SECTION = "sharding"
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
PHASES = ("start", "inspect", "extract", "validate", "reorganize", "plan", "write", "metadata")
ANCHOR_PHASES = ("unzip", "write")
PROJECT, HOMEWORK, ANCHOR, FOLDER = "project", "homework", "anchor", "project-image-folder"
TMPFS = Path("/dev/shm")

# --------------------------------------------------------------------------- child processes


class TimingReporter(LocalContext):
    """The job context outside a job (``jobkit.context.LocalContext``), also recording when
    every phase starts."""

    def __init__(self) -> None:
        import logging

        super().__init__(logging.getLogger("bench.sharding"))
        self.marks: list[tuple[str, float]] = [("start", time.perf_counter())]

    def _start_phase(self, name: str, total: int | None, unit: str, metrics: dict | None) -> None:
        self.marks.append((name, time.perf_counter()))
        super()._start_phase(name, total, unit, metrics)

    def durations(self, end: float) -> dict[str, float]:
        """Seconds per phase; ``start`` is the time before the first reported phase."""
        out: dict[str, float] = defaultdict(float)
        for (name, t0), (_, t1) in zip(self.marks, [*self.marks[1:], ("end", end)], strict=True):
            out[name] += t1 - t0
        return dict(out)


def child_prepare(
    data_root: str, zip_path: str, writer_processes: int = 0, image_folder: bool = False
) -> dict:
    """The whole prepare job from a zip placed in a fresh data root; per-phase seconds.

    Nothing is imported beforehand: the job's own imports (its writer processes' modules, TFDS
    for the metadata) count, as they do in the service's worker.
    """
    from dataset_service.models import PrepareRequest, ZipSource
    from dataset_service.prepare import prepare
    from dataset_service.settings import Settings

    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    local_zip = root / "source.zip"
    if not local_zip.exists():
        os.link(zip_path, local_zip)
    settings = Settings(data_root=root, writer_processes=writer_processes)
    request = PrepareRequest(
        name=DATASET_NAME,
        source=ZipSource(kind="zip", path="source.zip"),
        image_folder=image_folder,
    )
    reporter = TimingReporter()
    start = reporter.marks[0][1]
    metadata = prepare(request, settings, reporter=reporter)
    end = time.perf_counter()
    splits = {
        name: {
            "records": split.num_records,
            "shards": len(split.shards),
            "bytes": sum(s.num_bytes for s in split.shards),
        }
        for name, split in metadata.splits.items()
    }
    return {
        "seconds": end - start,
        "phases": reporter.durations(end),
        "splits": splits,
        "images": sum(s["records"] for s in splits.values()),
        # write_shards uses at most one process per shard (in-process for a single shard)
        "processes": min(
            settings.writer_processes or os.cpu_count() or 1,
            sum(s["shards"] for s in splits.values()),
        ),
    }


def child_project_train(tree: str, out_dir: str, processes: int = 0) -> dict:
    """The project's writer on the train split only (listing, planning and writing timed)."""
    from dataset_service.layout import validate
    from dataset_service.prepare import split_items
    from dataset_service.settings import Settings
    from dataset_service.writer import default_processes, plan_split, shard_count_for, write_shards
    from shard_format.schema import TRAIN

    processes = default_processes(processes)
    start = time.perf_counter()
    layout = dataclasses.replace(validate(Path(tree)), val=[], test=[])
    items = split_items(layout)[TRAIN]
    count = shard_count_for(sum(i.size for i in items), Settings().target_shard_bytes, len(items))
    tasks = plan_split(
        DATASET_NAME,
        TRAIN,
        items,
        source=layout.tree.ref,
        label=layout.tree.label,
        num_shards=count,
        seed=0,
        skip_bad=False,
    )
    results = write_shards(tasks, Path(out_dir), DATASET_NAME, processes=processes)
    seconds = time.perf_counter() - start
    return {
        "images": sum(r.num_records for r in results),
        "seconds": seconds,
        "bytes": sum(r.num_bytes for r in results),
        "shards": len(results),
        "processes": min(processes, len(results)),
    }


def child_homework_train(train_dir: str, out_dir: str, batch_size: int = 128) -> dict:
    """The homework's method; its TensorFlow import is done before its clock starts."""
    import tensorflow  # noqa: F401

    from bench.homework_baseline import write_homework_shards

    return write_homework_shards(train_dir, out_dir, batch_size=batch_size)


# --------------------------------------------------------------------------- the benchmark


def _measure(data: WorkData, label: str, target: str, kwargs: dict, out: Path) -> dict:
    try:
        run = run_child(target, kwargs, log_path=data.logs_dir / "sharding.log")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    r = run.result
    r["peak_tree_rss"], r["peak_proc_rss"] = run.peak_tree_rss, run.peak_proc_rss
    log(
        f"  {label}: {r['images']} images in {r['seconds']:.1f} s "
        f"({r['images'] / r['seconds']:.0f}/s), peak {mib(run.peak_tree_rss):.0f} MiB"
    )
    return r


def _location_zip(data: WorkData, location: str) -> Path:
    """The archive copied to ``location`` (tmpfs or the disk), for both contenders to read."""
    base = TMPFS / f"tin-bench-{data.base.name}" if location == "tmpfs" else data.runs_dir
    target = base / "source" / data.zip_path.name
    if not target.is_file() or target.stat().st_size != data.zip_path.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data.zip_path, target)
    return target


def measure_anchor(data: WorkData, *, repeats: int, locations: tuple[str, ...]) -> dict:
    """The prepare job and the anchor, alternating, on each location; then with image_folder."""
    runs: dict[str, dict[str, list[dict]]] = {}
    for location in locations:
        archive = _location_zip(data, location)
        scratch = archive.parent.parent / "scratch"
        runs[location] = {PROJECT: [], ANCHOR: [], FOLDER: []}
        for r in range(repeats):
            order = [PROJECT, ANCHOR] if r % 2 == 0 else [ANCHOR, PROJECT]
            if location == "tmpfs":
                order.append(FOLDER)
            for method in order:
                shutil.rmtree(scratch, ignore_errors=True)
                log(f"sharding repeat {r + 1}/{repeats} on {location}: {method}")
                if method == ANCHOR:
                    target = "bench.anchor:child_anchor"
                    kwargs = {"zip_path": str(archive), "work_dir": str(scratch)}
                else:
                    target = "bench.sharding:child_prepare"
                    kwargs = {"data_root": str(scratch), "zip_path": str(archive)}
                    kwargs["image_folder"] = method == FOLDER
                runs[location][method].append(_measure(data, method, target, kwargs, scratch))
    return runs


def measure(
    data: WorkData,
    *,
    repeats: int,
    fractions: tuple[float, ...],
    batch_size: int,
    locations: tuple[str, ...],
) -> dict[str, Any]:
    ensure_prepared(data)
    anchor = measure_anchor(data, repeats=repeats, locations=locations)
    side: dict[str, list[dict]] = {PROJECT: [], HOMEWORK: []}
    for r in range(repeats):
        order = [PROJECT, HOMEWORK] if r % 2 == 0 else [HOMEWORK, PROJECT]
        for method in order:
            out = scratch_root(data, f"{method}-train")
            if method == PROJECT:
                target = "bench.sharding:child_project_train"
                kwargs = {"tree": str(data.tree), "out_dir": str(out)}
            else:
                target = "bench.sharding:child_homework_train"
                kwargs = {"train_dir": str(data.train_dir), "out_dir": str(out)}
                kwargs["batch_size"] = batch_size
            log(f"sharding repeat {r + 1}/{repeats}: {method} (train split)")
            side[method].append(_measure(data, method, target, kwargs, out))

    growth: dict[float, list[dict]] = {f: [] for f in fractions}
    for f in fractions:
        ensure_fraction_zip(data, f)
    for r in range(repeats):
        for f in fractions:
            root = scratch_root(data, f"prepare-{f:.2f}")
            log(f"sharding repeat {r + 1}/{repeats}: prepare job from the zip, {f:.0%}")
            kwargs = {"data_root": str(root), "zip_path": str(data.fraction_zip(f))}
            growth[f].append(
                _measure(data, f"prepare {f:.0%}", "bench.sharding:child_prepare", kwargs, root)
            )
    return {"anchor": anchor, "side": side, "growth": growth}


def _processes(n: int, what: str = "") -> str:
    return f"{n} {what}process{'' if n == 1 else 'es'}"


def _rate(runs: list[dict]) -> Stats:
    return Stats.of(r["images"] / r["seconds"] for r in runs)


def _per_image(runs: list[dict]) -> Stats:
    return Stats.of(r["bytes"] / r["images"] for r in runs)


def _mem(runs: list[dict], key: str) -> Stats:
    return Stats.of(mib(r[key]) for r in runs)


#: The memory columns of every table, and their cells.
MEM_HEADERS = ("peak RSS, all processes (MiB)", "peak RSS, largest process (MiB)")


def _mem_cells(runs: list[dict]) -> list[str]:
    return [_mem(runs, "peak_tree_rss").fmt(",.0f"), _mem(runs, "peak_proc_rss").fmt(",.0f")]


def _seconds(runs: list[dict]) -> Stats:
    return Stats.of(r["seconds"] for r in runs)


def render_anchor(anchor: dict[str, dict[str, list[dict]]], info: RunInfo) -> list[str]:
    out = ["\n#### The prepare job against the anchor, from the zip, all splits\n"]
    out.append(info.header() + "\n")
    labels = {
        PROJECT: "project: `prepare` (zip read in place)",
        ANCHOR: "anchor: `unzip` + plain writer (`bench/anchor.py`)",
        FOLDER: "project with `image_folder: true` (also extracts the reorganized tree)",
    }
    rows = []
    for location, runs in anchor.items():
        for method, label in labels.items():
            if runs.get(method):
                rows.append(
                    [
                        location,
                        label,
                        f"{runs[method][0]['images']:,}",
                        _seconds(runs[method]).fmt(".2f"),
                        _rate(runs[method]).fmt(",.0f"),
                        *_mem_cells(runs[method]),
                    ]
                )
    out.append(
        md_table(
            [
                "data on",
                "method",
                "images",
                "seconds",
                "images/s",
                *MEM_HEADERS,
            ],
            rows,
        )
    )
    lines = []
    for location, runs in anchor.items():
        per_run = [
            p["seconds"] / a["seconds"] for p, a in zip(runs[PROJECT], runs[ANCHOR], strict=True)
        ]
        worst = max(per_run)
        lines.append(
            f"- {location}: project / anchor per repeat "
            + ", ".join(f"{x:.2f}" for x in per_run)
            + f" (worst **{worst:.2f}**); project median **{_seconds(runs[PROJECT]).median:.2f} s**"
        )
    out.append("\nRatio of the wall times, each repeat on its own (lower is faster):\n")
    out.append("\n".join(lines) + "\n")

    for location, runs in anchor.items():
        out.append(f"\nPer phase on {location} (seconds):\n")
        rows = []
        total = _seconds(runs[PROJECT]).median
        for phase in PHASES:
            values = Stats.of(r["phases"].get(phase, 0.0) for r in runs[PROJECT])
            if values.max > 0:
                share = values.median / total if total else 0.0
                rows.append(["project", phase, values.fmt(".2f"), f"{share:.0%}"])
        total = _seconds(runs[ANCHOR]).median
        for phase in ANCHOR_PHASES:
            values = Stats.of(r["phases"][phase] for r in runs[ANCHOR])
            rows.append(["anchor", phase, values.fmt(".2f"), f"{values.median / total:.0%}"])
        out.append(md_table(["method", "phase", "seconds", "share (medians)"], rows))
    project = next(iter(anchor.values()))[PROJECT][0]
    rows = [
        [split, f"{v['records']:,}", v["shards"], f"{v['bytes'] / max(v['records'], 1):,.0f}"]
        for split, v in project["splits"].items()
    ]
    out.append("\nWhat the project wrote:\n")
    out.append(md_table(["split", "records", "shards", "bytes on disk per image"], rows))
    out.append(
        f"\nBoth read the same zip from the same place and write their shards beside it, each in "
        f"a fresh process whose imports count; the project uses "
        f"{_processes(project['processes'], 'writer ')} on {usable_cores()} cores, the anchor "
        "2. The project reads the members in place (nothing extracted), checks the archive "
        "(names, links, sizes) and decodes every image fully; `start` is starting the writer "
        "processes, `inspect` the zip's MD5 (in a thread) beside "
        "reading and checking its central directory, `plan` listing and shuffling, `metadata` "
        "the TFDS and shard_format files. The anchor checks only each JPEG's component count."
    )
    return out


def render(data: WorkData, results: dict[str, Any], info: RunInfo, batch_size: int) -> str:
    side, growth = results["side"], results["growth"]
    project, homework = side[PROJECT], side[HOMEWORK]
    procs = project[0]["processes"]
    out = [f"_Data: {describe(data.spec)}._"]
    out.extend(render_anchor(results["anchor"], info))

    out.append("\n#### Train split: the project's writer vs the homework's method\n")
    out.append(info.header() + "\n")
    rows = []
    for label, runs in (
        (f"project: JPEG bytes, `write_shards`, {_processes(procs)}", project),
        ("homework: float32 tensors, `flow_from_directory`, 1 process", homework),
    ):
        rows.append(
            [
                label,
                f"{runs[0]['images']:,}",
                Stats.of(r["seconds"] for r in runs).fmt(".1f"),
                _rate(runs).fmt(",.0f"),
                _per_image(runs).fmt(",.0f"),
                Stats.of(mib(r["bytes"]) for r in runs).fmt(",.1f"),
                *_mem_cells(runs),
            ]
        )
    out.append(
        md_table(
            [
                "method",
                "images",
                "seconds",
                "images/s",
                "bytes/image",
                "shards MiB",
                *MEM_HEADERS,
            ],
            rows,
        )
    )
    speed = ratio(_rate(project).median, _rate(homework).median)
    size = ratio(_per_image(homework).median, _per_image(project).median)
    out.append(
        f"\nRatio (medians): the project writes **{speed}** the images/s of the homework's "
        f"method; the homework's records take **{size}** the bytes per image.\n\n"
        "What was timed, for both: listing the train folder, reading, processing and writing "
        "every train image once, from the same extracted files (warm page cache). The "
        "homework's TensorFlow import is left out of its time; the project's time includes "
        "starting its writer processes and re-encoding the few greyscale/CMYK/PNG files; its "
        "records keep the JPEG bytes, label, wnid and file name, and it shuffles the file list "
        "across shards. The homework's method (see `bench/homework_baseline.py`) reads train "
        "only (val is not in one folder per class as shipped), bakes one random horizontal "
        f"flip and the standardization into the stored float32 tensors (batch {batch_size}), "
        "and numbers the classes in alphabetical wnid order."
    )

    lo, hi = min(growth), max(growth)
    out.append(f"\n#### Growth: the prepare job on {lo:.0%} to {hi:.0%} of every split\n")
    out.append(info.header() + "\n")
    rows = []
    for f, runs in growth.items():
        rows.append(
            [
                f"{f:.0%}",
                f"{runs[0]['images']:,}",
                Stats.of(r["seconds"] for r in runs).fmt(".1f"),
                _rate(runs).fmt(",.0f"),
                *_mem_cells(runs),
            ]
        )
    out.append(
        md_table(
            [
                "fraction",
                "images",
                "seconds",
                "images/s",
                *MEM_HEADERS,
            ],
            rows,
        )
    )
    t_ratio = ratio(
        Stats.of(r["seconds"] for r in growth[hi]).median,
        Stats.of(r["seconds"] for r in growth[lo]).median,
    )
    m_ratio = ratio(
        _mem(growth[hi], "peak_tree_rss").median, _mem(growth[lo], "peak_tree_rss").median
    )
    grown = growth[hi][0]["images"] / growth[lo][0]["images"]
    out.append(
        f"\nFrom {lo:.0%} to {hi:.0%} of the data ({grown:.1f}x the images): "
        f"time **{t_ratio}**, peak memory of all processes **{m_ratio}** (medians). "
        "Peak RSS is sampled every 20 ms and summed over the job's processes (shared pages "
        "counted in each); the largest-process column is the kernel's exact peak."
    )
    return "\n".join(out)


# --------------------------------------------------------------------------- command line


def parse_fractions(text: str) -> tuple[float, ...]:
    values = sorted({float(v) for v in text.split(",") if v.strip()})
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1], got {text!r}")
    return tuple(values)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sharding")
    g.add_argument(
        "--fractions",
        type=parse_fractions,
        default=DEFAULT_FRACTIONS,
        help="growth series, fractions of every split (default: 0.1,0.25,0.5,1)",
    )
    g.add_argument(
        "--homework-batch-size",
        type=int,
        default=128,
        help="the homework's flow_from_directory batch size (default: 128)",
    )
    g.add_argument(
        "--locations",
        type=lambda t: tuple(x for x in t.split(",") if x),
        default=("tmpfs", "disk"),
        help="where the prepare job and the anchor read and write (default: tmpfs,disk)",
    )


def run(data: WorkData, args: argparse.Namespace, info: RunInfo) -> str:
    results = measure(
        data,
        repeats=args.repeats,
        fractions=args.fractions,
        batch_size=args.homework_batch_size,
        locations=args.locations,
    )
    return render(data, results, info, args.homework_batch_size)


def main(argv: list[str] | None = None) -> int:
    return run_script("bench.sharding", __doc__, add_arguments, run, SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
