"""Where a run continues from: the one place a resume is decided.

A run whose folder has a checkpoint always resumes (a retried or restarted job never starts
over). The epoch checkpoints, ``best`` and ``latest.json`` are written by the protocol of
:mod:`.checkpoints`; this module reads them back, in the order a resume happens:

1. **Choose** (the resume route, optional): :func:`rewind` makes a chosen checkpoint ("best",
   "latest", ``N`` or ``epoch-000N.keras``) the one a resume starts from. Later epoch
   checkpoints, the partial one and later history rows are dropped; ``best`` is recomputed
   among the epochs kept.
2. **Plan** (the worker, at the start of ``train()``): :func:`start_point` says which epoch to
   continue after and which weights to load, and truncates the history to that epoch (an epoch
   recorded but not checkpointed, killed in between, is redone and recorded once).
   A run stopped in the middle of epoch ``E + 1`` redoes that epoch exactly: from the state it
   began with (``epoch-E``'s checkpoint; the fresh, seeded model when ``E`` is 0), not from
   ``partial.keras``, so no batch is trained twice and the step counter equals an
   uninterrupted run's.
3. **Load** (the engine): the freshly built, compiled model loads ``StartPoint.weights``
   (weights and optimizer state, ``iterations`` included, hence the learning-rate schedule
   position); ``None`` means the fresh model.

Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from datavolume.files import atomic_copy, atomic_write_json
from datavolume.runs import RunFolder
from trainer_service.runs.checkpoints import (
    Latest,
    epoch_files,
    read_best,
    read_latest,
    write_latest,
)
from trainer_service.runs.history import truncate_history

_EPOCH_FILE = re.compile(r"^epoch-(\d{4,9})\.keras$")


class CannotResume(FileNotFoundError):
    """The checkpoint asked for (or the one a resume needs) does not exist."""


@dataclass(frozen=True)
class StartPoint:
    """Where ``train()`` continues: after ``epoch`` completed epochs, from ``weights``."""

    epoch: int
    weights: Path | None  # None: the freshly built (seeded) model
    partial: bool  # the run was stopped in the middle of epoch ``epoch + 1``
    steps_per_epoch: int | None  # when the checkpoint was saved (a re-prepared dataset differs)


def start_point(run: RunFolder) -> StartPoint | None:
    """Step 2: where a run with a checkpoint continues (None: a new run). Truncates its history
    to the epochs the checkpoint holds. Raises :class:`CannotResume` if a file it needs is gone.
    """
    latest = read_latest(run)
    truncate_history(run, latest.epoch if latest else 0)
    if latest is None:
        return None
    if latest.partial:
        weights = epoch_files(run).get(latest.epoch)
        if weights is None and latest.epoch > 0:
            raise CannotResume(f"the checkpoint of epoch {latest.epoch} is missing")
    else:
        weights = run.checkpoints / latest.file
        if not weights.is_file():
            raise CannotResume(f"the checkpoint {latest.file} that latest.json names is missing")
    return StartPoint(latest.epoch, weights, latest.partial, latest.steps_per_epoch)


def rewind(run: RunFolder, name: str) -> None:
    """Step 1: make checkpoint ``name`` the one a resume starts from (the run is not running).

    Raises :class:`CannotResume` naming what is missing.
    """
    if name == "latest":
        return
    if name == "best":
        best = read_best(run)
        if best is None or not run.best.is_file():
            raise CannotResume("the run has no best checkpoint")
        epoch = int(best["epoch"])
        if not run.epoch_checkpoint(epoch).is_file():  # pruned: best.keras is that epoch
            atomic_copy(run.best, run.epoch_checkpoint(epoch))
    elif name.isdigit() and len(name) <= 9:
        epoch = int(name)
    elif m := _EPOCH_FILE.match(name):
        epoch = int(m[1])
    else:
        raise CannotResume(f"not a checkpoint name: {name!r}")
    rewind_to_epoch(run, epoch)


def rewind_to_epoch(run: RunFolder, epoch: int) -> Latest:
    """Make the epoch-``epoch`` checkpoint the latest: later epoch checkpoints and a partial one
    are deleted, the history is truncated to ``epoch`` rows and, if best.keras came from a later
    epoch, the best of the remaining epoch checkpoints takes its place."""
    files = epoch_files(run)
    if epoch not in files:
        raise CannotResume(f"run {run.root.name} has no checkpoint for epoch {epoch}")
    previous = read_latest(run)
    for later, path in files.items():
        if later > epoch:
            path.unlink(missing_ok=True)
    run.partial.unlink(missing_ok=True)
    rows = truncate_history(run, epoch)
    best = read_best(run)
    if best is not None and best.get("epoch", 0) > epoch:
        kept = [r for r in rows if int(r["epoch"]) in files]
        if kept:
            choice = max(kept, key=lambda r: r.get("val_accuracy") or 0.0)
            chosen = int(choice["epoch"])
            atomic_copy(files[chosen], run.best)
            atomic_write_json(
                run.best_json,
                {
                    "epoch": chosen,
                    "val_accuracy": choice.get("val_accuracy"),
                    "step": choice["step"],
                },
            )
        else:
            run.best.unlink(missing_ok=True)
            run.best_json.unlink(missing_ok=True)
    step = next((int(r["step"]) for r in rows if int(r["epoch"]) == epoch), 0)
    latest = Latest(
        epoch=epoch,
        step=step,
        file=files[epoch].name,
        steps_per_epoch=previous.steps_per_epoch if previous else None,
    )
    write_latest(run, latest)
    return latest
