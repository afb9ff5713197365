"""Checkpoints of a run: saving after each epoch, retention, best, and the index a resume reads.

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
who want the stopped weights. (:mod:`.resume` reads this index back.)

Imports neither TensorFlow nor Keras: the model is saved through its own ``save`` method.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datavolume.files import atomic_copy, atomic_write_json, read_json, replacing
from datavolume.layout import RUNS_DIR
from datavolume.runs import CHECKPOINT_SUFFIX, RunFolder
from trainer_service.runs.history import read_history

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


def atomic_save_model(model, path: Path) -> None:
    """``model.save`` (a ``.keras`` zip with the optimizer state) under a temp name, then rename.

    A reader (or a resume after SIGKILL) never sees half a checkpoint.
    """
    with replacing(path, CHECKPOINT_SUFFIX) as tmp:  # Keras insists on the .keras suffix
        model.save(tmp)


def read_latest(run: RunFolder) -> Latest | None:
    raw = read_json(run.latest)
    return None if raw is None else Latest(**raw)


def write_latest(run: RunFolder, latest: Latest) -> None:
    latest.saved_at = latest.saved_at or time.time()
    atomic_write_json(run.latest, asdict(latest))


def read_best(run: RunFolder) -> dict[str, Any] | None:
    """``{"epoch", "val_accuracy", "step"}`` of ``best.keras``, or None."""
    return read_json(run.best_json)


def epoch_files(run: RunFolder) -> dict[int, Path]:
    """Epoch checkpoints on disk: completed epochs -> file, ascending."""
    found = {}
    if run.checkpoints.is_dir():
        for path in run.checkpoints.iterdir():
            m = _EPOCH_FILE.match(path.name)
            if m:
                found[int(m[1])] = path
    return dict(sorted(found.items()))


def prune(run: RunFolder, keep: int) -> list[Path]:
    """Delete all epoch checkpoints but the newest ``keep`` (and the predictor's exports of
    them); returns the deleted checkpoints."""
    files = list(epoch_files(run).values())
    doomed = files[:-keep] if keep > 0 else files
    for path in doomed:
        path.unlink(missing_ok=True)
        run.serving_export(path).unlink(missing_ok=True)
    return doomed


def save_epoch(
    model,
    run: RunFolder,
    epoch: int,
    step: int,
    val_accuracy: float | None,
    *,
    keep: int,
    steps_per_epoch: int | None = None,
) -> Path:
    """Steps 2-5 of the module docstring for the completed ``epoch`` (1-based)."""
    path = run.epoch_checkpoint(epoch)
    atomic_save_model(model, path)
    best = read_best(run)
    if val_accuracy is not None and (
        best is None or best.get("val_accuracy") is None or val_accuracy > best["val_accuracy"]
    ):
        atomic_copy(path, run.best)
        atomic_write_json(
            run.best_json, {"epoch": epoch, "val_accuracy": val_accuracy, "step": step}
        )
    write_latest(
        run, Latest(epoch=epoch, step=step, file=path.name, steps_per_epoch=steps_per_epoch)
    )
    run.partial.unlink(missing_ok=True)
    prune(run, keep)
    return path


def save_partial(
    model, run: RunFolder, epoch: int, step: int, *, steps_per_epoch: int | None = None
) -> Path:
    """Save a run stopped during epoch ``epoch + 1`` (``epoch`` completed) as partial.keras."""
    atomic_save_model(model, run.partial)
    write_latest(
        run,
        Latest(
            epoch=epoch,
            step=step,
            file=run.partial.name,
            partial=True,
            steps_per_epoch=steps_per_epoch,
        ),
    )
    return run.partial


def list_checkpoints(run: RunFolder) -> list[dict[str, Any]]:
    """The checkpoint files of a run, for the API: epoch ones ascending, then best, partial."""
    latest = read_latest(run)
    best = read_best(run)
    accuracy = {int(r["epoch"]): r.get("val_accuracy") for r in read_history(run)}
    items = []

    def add(path: Path, kind: str, epoch: int | None, val_accuracy=None):
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        items.append(
            {
                "file": path.name,
                "path": f"{RUNS_DIR}/{run.root.name}/{run.checkpoints.name}/{path.name}",
                "kind": kind,
                "epoch": epoch,
                "val_accuracy": val_accuracy,
                "size_bytes": stat.st_size,
                "modified_at": stat.st_mtime,
                "latest": latest is not None and latest.file == path.name,
            }
        )

    for epoch, path in epoch_files(run).items():
        add(path, "epoch", epoch, accuracy.get(epoch))
    if best is not None:
        add(run.best, "best", best.get("epoch"), best.get("val_accuracy"))
    if latest is not None and latest.partial:
        add(run.partial, "partial", latest.epoch, None)
    return items


#: The name of a run's final model (``model.keras``) where a checkpoint name is asked for.
FINAL = "final"
_NAMES = r"best|latest|\d{1,9}|epoch-\d{4,9}\.keras"
#: What a client may name as a checkpoint: "latest", "best", an epoch number or an epoch
#: checkpoint's file name (at most 9 digits: no epoch count comes near, and Python's int()
#: refuses very long digit strings with an error of its own); :func:`resolve` finds it.
CHECKPOINT_NAME_PATTERN = rf"^({_NAMES})$"
#: The same, or "final" for the run's model.keras (:func:`resolve_model`).
MODEL_NAME_PATTERN = rf"^({FINAL}|{_NAMES})$"


class NoSuchCheckpoint(FileNotFoundError):
    """The run has no checkpoint (or final model) of that name, or not yet; the message says
    which, for a person."""


def resolve_model(run: RunFolder, name: str) -> Path:
    """Like :func:`resolve`, and "final" names the run's ``model.keras``."""
    if name == FINAL:
        if not run.model.is_file():
            raise NoSuchCheckpoint(f"run {run.root.name} has no final model yet")
        return run.model
    return resolve(run, name)


def resolve(run: RunFolder, name: str) -> Path:
    """A checkpoint of the run by name: "best", "latest", "epoch-0003.keras" or "3".

    Raises :class:`NoSuchCheckpoint` (with a readable message) if there is no such file.
    """
    if name == "latest":
        latest = read_latest(run)
        if latest is None:
            raise NoSuchCheckpoint(f"run {run.root.name} has no checkpoint yet")
        path = run.checkpoints / latest.file
    elif name == "best":
        path = run.best
    elif name.isdigit():
        path = run.epoch_checkpoint(int(name))
    elif name.endswith(CHECKPOINT_SUFFIX) and "/" not in name and not name.startswith("."):
        path = run.checkpoints / name
    else:
        raise NoSuchCheckpoint(f"not a checkpoint name: {name!r}")
    if not path.is_file():
        raise NoSuchCheckpoint(f"run {run.root.name} has no checkpoint {path.name}")
    return path


@dataclass(frozen=True)
class ModelFile:
    """A model file as it is now: what a copy made from it (the predictor's export) is keyed
    by. Every checkpoint is written under a temporary name and renamed, so a new version always
    has a new modification time (nanoseconds) and the same name never hides a stale copy."""

    name: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> ModelFile:
        """``path``'s identity now (``FileNotFoundError`` once it is gone)."""
        stat = Path(path).stat()
        return cls(Path(path).name, stat.st_size, stat.st_mtime_ns)


def checkpoint_epoch(run: RunFolder, path: Path, version: ModelFile) -> int | None:
    """Completed epochs in ``version`` of the model file ``path``: an epoch checkpoint's from
    its name, ``best.keras``'s from ``best.json`` (written just after it: read only when it is
    not older than that version and ``best.keras`` did not change meanwhile), ``partial.keras``'s
    from ``latest.json``; None for the final model or when the index cannot say."""
    if match := _EPOCH_FILE.match(path.name):
        return int(match[1])
    if path == run.best:
        try:
            written = run.best_json.stat().st_mtime_ns
            best = read_best(run)
            if written < version.mtime_ns or ModelFile.of(path) != version:
                return None
        except (OSError, ValueError):
            return None
        return best.get("epoch") if isinstance(best, dict) else None
    if path == run.partial:
        latest = read_latest(run)
        return latest.epoch if latest is not None and latest.partial else None
    return None
