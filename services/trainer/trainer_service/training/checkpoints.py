"""Checkpoints of a run: saving after each epoch, retention, best, what a resume starts from.

Every checkpoint is a full ``.keras`` model (architecture, weights, optimizer state including
``iterations``, hence the learning-rate schedule position). After epoch ``E`` completes:

1. its history row is recorded (see :mod:`.history`);
2. ``checkpoints/epoch-000E.keras`` is saved (temp file + rename);
3. if its val accuracy beats ``best.json``, it is copied to ``best.keras`` and best.json updated;
4. ``latest.json`` is pointed at it: from now on a resume starts after epoch ``E``;
5. epoch checkpoints beyond the last ``keep`` are deleted (``best.keras`` is a copy, kept).

A SIGKILL at any point leaves a consistent state: ``latest.json`` names a complete file and a
resume truncates the history to its epoch, so no epoch is recorded twice.

When a run is stopped (cancel, shutdown) in the middle of epoch ``E + 1``, the current state is
saved as ``partial.keras`` and ``latest.json`` says ``{"epoch": E, "partial": true}``. A resume
redoes epoch ``E + 1`` from its first batch and from the state it began with (``epoch-E``'s
checkpoint, or the fresh seeded model for ``E = 0``): no batch is trained twice, and the step
counter and the schedule are exactly an uninterrupted run's. ``partial.keras`` stays for people
who want the stopped weights.

Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobkit.files import atomic_write_json
from trainer_service.training.files import (
    CHECKPOINT_SUFFIX,
    RUNS_DIR,
    RunPaths,
    atomic_copy,
    atomic_save_model,
    read_json,
)
from trainer_service.training.history import read_history, truncate_history

_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})\.keras$")


@dataclass
class Latest:
    """What a resume starts from (``checkpoints/latest.json``)."""

    epoch: int  # completed epochs in the checkpoint
    step: int  # optimizer.iterations when it was saved
    file: str  # file name inside checkpoints/
    partial: bool = False  # saved in the middle of epoch ``epoch + 1``
    steps_per_epoch: int | None = None
    saved_at: float = 0.0


def read_latest(paths: RunPaths) -> Latest | None:
    raw = read_json(paths.latest)
    return None if raw is None else Latest(**raw)


def write_latest(paths: RunPaths, latest: Latest) -> None:
    latest.saved_at = latest.saved_at or time.time()
    atomic_write_json(paths.latest, asdict(latest))


def read_best(paths: RunPaths) -> dict[str, Any] | None:
    """``{"epoch", "val_accuracy", "step"}`` of ``best.keras``, or None."""
    return read_json(paths.best_json)


def epoch_files(paths: RunPaths) -> dict[int, Path]:
    """Epoch checkpoints on disk: completed epochs -> file, ascending."""
    found = {}
    if paths.checkpoints.is_dir():
        for path in paths.checkpoints.iterdir():
            m = _EPOCH_FILE.match(path.name)
            if m:
                found[int(m[1])] = path
    return dict(sorted(found.items()))


def prune(paths: RunPaths, keep: int) -> list[Path]:
    """Delete all epoch checkpoints but the newest ``keep``; returns the deleted files."""
    files = list(epoch_files(paths).values())
    doomed = files[:-keep] if keep > 0 else files
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def save_epoch(
    model,
    paths: RunPaths,
    epoch: int,
    step: int,
    val_accuracy: float | None,
    *,
    keep: int,
    steps_per_epoch: int | None = None,
) -> Path:
    """Steps 2-5 of the module docstring for the completed ``epoch`` (1-based)."""
    path = paths.epoch_checkpoint(epoch)
    atomic_save_model(model, path)
    best = read_best(paths)
    if val_accuracy is not None and (
        best is None or best.get("val_accuracy") is None or val_accuracy > best["val_accuracy"]
    ):
        atomic_copy(path, paths.best)
        atomic_write_json(
            paths.best_json, {"epoch": epoch, "val_accuracy": val_accuracy, "step": step}
        )
    write_latest(
        paths, Latest(epoch=epoch, step=step, file=path.name, steps_per_epoch=steps_per_epoch)
    )
    paths.partial.unlink(missing_ok=True)
    prune(paths, keep)
    return path


def save_partial(
    model, paths: RunPaths, epoch: int, step: int, *, steps_per_epoch: int | None = None
) -> Path:
    """Save a run stopped during epoch ``epoch + 1`` (``epoch`` completed) as partial.keras."""
    atomic_save_model(model, paths.partial)
    write_latest(
        paths,
        Latest(
            epoch=epoch,
            step=step,
            file=paths.partial.name,
            partial=True,
            steps_per_epoch=steps_per_epoch,
        ),
    )
    return paths.partial


def list_checkpoints(paths: RunPaths) -> list[dict[str, Any]]:
    """The checkpoint files of a run, for the API: epoch ones ascending, then best, partial."""
    latest = read_latest(paths)
    best = read_best(paths)
    accuracy = {int(r["epoch"]): r.get("val_accuracy") for r in read_history(paths)}
    items = []

    def add(path: Path, kind: str, epoch: int | None, val_accuracy=None):
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        items.append(
            {
                "file": path.name,
                "path": f"{RUNS_DIR}/{paths.root.name}/{paths.checkpoints.name}/{path.name}",
                "kind": kind,
                "epoch": epoch,
                "val_accuracy": val_accuracy,
                "size_bytes": stat.st_size,
                "modified_at": stat.st_mtime,
                "latest": latest is not None and latest.file == path.name,
            }
        )

    for epoch, path in epoch_files(paths).items():
        add(path, "epoch", epoch, accuracy.get(epoch))
    if best is not None:
        add(paths.best, "best", best.get("epoch"), best.get("val_accuracy"))
    if latest is not None and latest.partial:
        add(paths.partial, "partial", latest.epoch, None)
    return items


def resolve(paths: RunPaths, name: str) -> Path:
    """A checkpoint of the run by name: "best", "latest", "epoch-0003.keras" or "3".

    Raises FileNotFoundError (with a readable message) if there is no such file.
    """
    if name == "latest":
        latest = read_latest(paths)
        if latest is None:
            raise FileNotFoundError(f"run {paths.root.name} has no checkpoint yet")
        path = paths.checkpoints / latest.file
    elif name == "best":
        path = paths.best
    elif name.isdigit():
        path = paths.epoch_checkpoint(int(name))
    elif name.endswith(CHECKPOINT_SUFFIX) and "/" not in name and not name.startswith("."):
        path = paths.checkpoints / name
    else:
        raise FileNotFoundError(f"not a checkpoint name: {name!r}")
    if not path.is_file():
        raise FileNotFoundError(f"run {paths.root.name} has no checkpoint {path.name}")
    return path


def rewind(paths: RunPaths, epoch: int) -> Latest:
    """Make the epoch-``epoch`` checkpoint the one a resume starts from (run not running).

    Later epoch checkpoints and a partial one are deleted, the history is truncated to
    ``epoch`` rows and, if best.keras came from a later epoch, the best of the remaining epoch
    checkpoints takes its place. Raises FileNotFoundError if the checkpoint is gone.
    """
    files = epoch_files(paths)
    if epoch not in files:
        raise FileNotFoundError(f"run {paths.root.name} has no checkpoint for epoch {epoch}")
    previous = read_latest(paths)
    for later, path in files.items():
        if later > epoch:
            path.unlink(missing_ok=True)
    paths.partial.unlink(missing_ok=True)
    rows = truncate_history(paths, epoch)
    best = read_best(paths)
    if best is not None and best.get("epoch", 0) > epoch:
        kept = [r for r in rows if int(r["epoch"]) in files]
        if kept:
            choice = max(kept, key=lambda r: r.get("val_accuracy") or 0.0)
            chosen = int(choice["epoch"])
            atomic_copy(files[chosen], paths.best)
            atomic_write_json(
                paths.best_json,
                {
                    "epoch": chosen,
                    "val_accuracy": choice.get("val_accuracy"),
                    "step": choice["step"],
                },
            )
        else:
            paths.best.unlink(missing_ok=True)
            paths.best_json.unlink(missing_ok=True)
    step = next((int(r["step"]) for r in rows if int(r["epoch"]) == epoch), 0)
    latest = Latest(
        epoch=epoch,
        step=step,
        file=files[epoch].name,
        steps_per_epoch=previous.steps_per_epoch if previous else None,
    )
    write_latest(paths, latest)
    return latest
