"""How a job is shown while it is followed: one plain line per change (pipes, logs, CI), or live
Rich progress bars on a terminal (the prepare job's phase bar; a run's epoch and step bars with
its latest metrics, one line kept on screen per finished epoch)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

Job = dict[str, Any]
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_top5_accuracy")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"ETA {seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"ETA {seconds}s"


def metrics_text(row: dict[str, Any] | None) -> str:
    row = row or {}
    return "  ".join(
        f"{key}={row[key]:.3f}" for key in METRICS if isinstance(row.get(key), int | float)
    )


def prepare_line(job: Job) -> str:
    """``[dataset] running   phase=write  32/232 (13.8%)  40 images/s  ETA 32s``"""
    p = job.get("progress") or {}
    parts = [f"[dataset] {job['state']:<9} phase={job.get('phase') or 'starting':<10}"]
    if p.get("total"):
        parts.append(f"{p.get('done', 0)}/{p['total']} ({p.get('percent') or 0:5.1f}%)")
    if p.get("rate"):
        parts.append(f"{p['rate']:.0f} {p.get('unit') or 'items'}/s")
    if job["state"] == "running":
        parts.append(_eta(p.get("eta_s")))
    return "  ".join(part for part in parts if part)


def training_line(run: Job) -> str:
    """``[trainer] running  epoch 2/4  step 3/8  950 images/s  ETA 12s  loss=...``"""
    t = run.get("training") or {}
    parts = [f"[trainer] {run['state']:<9}"]
    if run["state"] == "queued" and run.get("queue_position"):
        parts.append(f"queue position {run['queue_position']}")
    if t.get("epoch"):
        parts.append(f"epoch {t['epoch']}/{t.get('epochs', '?')}")
    if t.get("steps_per_epoch"):
        parts.append(f"step {t.get('step') or 0}/{t['steps_per_epoch']}")
    if t.get("images_per_s"):
        parts.append(f"{t['images_per_s']:.0f} images/s")
    if run["state"] == "running":
        parts.append(_eta(t.get("eta_s")))
    parts.append(metrics_text(t.get("last_epoch")))
    return "  ".join(part for part in parts if part)


def epoch_line(row: dict[str, Any]) -> str:
    return f"epoch {row.get('epoch')}: {metrics_text(row)}"


def show_plain(jobs: Iterable[Job], console: Console) -> Job:
    """Print a line whenever what it shows changes; return the last job."""
    last_line, job = None, {}
    for job in jobs:
        line = (training_line if "training" in job else prepare_line)(job)
        if line != last_line:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
            last_line = line
    return job


def show_prepare_bars(jobs: Iterable[Job], console: Console) -> Job:
    job: Job = {}
    columns = (
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}  {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, transient=False) as bars:
        task = bars.add_task("starting", total=None, rate="", eta="")
        for job in jobs:
            p = job.get("progress") or {}
            rate = f"{p['rate']:.0f} {p.get('unit') or 'items'}/s" if p.get("rate") else ""
            bars.update(
                task,
                description=job.get("phase") or job["state"],
                total=p.get("total") or None,
                completed=p.get("done") or 0,
                rate=rate,
                eta=_eta(p.get("eta_s")) if job["state"] == "running" else "",
            )
    return job


def show_training_bars(
    jobs: Iterable[Job], console: Console, history: Callable[[], list[dict]] | None = None
) -> Job:
    """Epoch and step bars; a line per finished epoch stays above them. ``history`` (the run's
    rows) fills in epochs that ended between two polls."""
    run: Job = {}
    columns = (
        TextColumn("[bold]{task.description:<6}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[info]}"),
    )
    printed: set[int] = set()
    with Progress(*columns, console=console, transient=False) as bars:
        epochs = bars.add_task("epochs", total=1, info="")
        steps = bars.add_task("steps", total=1, info="")
        for run in jobs:
            t = run.get("training") or {}
            last = t.get("last_epoch") or {}
            if last.get("epoch") and last["epoch"] not in printed:
                rows = history() if history is not None else [last]
                for row in rows:
                    if row.get("epoch") not in printed:
                        printed.add(row.get("epoch"))
                        bars.console.print(epoch_line(row), markup=False, highlight=False)
            rate = f"{t['images_per_s']:.0f} images/s" if t.get("images_per_s") else ""
            eta = _eta(t.get("eta_s")) if run["state"] == "running" else run["state"]
            bars.update(
                epochs,
                total=t.get("epochs") or 1,
                completed=t.get("completed_epochs") or 0,
                info=f"{eta}  {metrics_text(last)}",
            )
            bars.update(
                steps, total=t.get("steps_per_epoch") or 1, completed=t.get("step") or 0, info=rate
            )
    return run


def show(
    jobs: Iterable[Job],
    console: Console,
    kind: str,
    history: Callable[[], list[dict]] | None = None,
) -> Job:
    """Follow ``jobs`` (a :meth:`ServiceClient.watch`) as bars on a terminal, else as lines.
    ``kind``: ``"jobs"`` (prepare) or ``"runs"``; ``history``: see :func:`show_training_bars`."""
    if not console.is_terminal:
        return show_plain(jobs, console)
    if kind == "runs":
        return show_training_bars(jobs, console, history)
    return show_prepare_bars(jobs, console)
