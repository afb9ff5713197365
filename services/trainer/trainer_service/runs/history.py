"""The per-epoch history of a run: the same rows in ``history.csv`` and ``history.json``.

A row is written when an epoch completes, before its checkpoint, and both files are rewritten
atomically from the rows. A resume truncates the rows to the epochs its checkpoint has, so an
epoch that was recorded but not checkpointed (killed in between) is recorded once, when redone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from datavolume.files import atomic_write_json, atomic_write_text, read_json
from datavolume.runs import RunFolder
from trainer_service.runs.plot import plot_history

#: Columns of history.csv, in order (``epoch`` is the 1-based number of the completed epoch).
COLUMNS = (
    "epoch",
    "step",
    "loss",
    "accuracy",
    "top5_accuracy",
    "val_loss",
    "val_accuracy",
    "val_top5_accuracy",
    "learning_rate",
    "epoch_time_s",
    "images_per_s",
    "tta_flip",  # whether the val columns average each image's logits with its mirror's
)


def read_history(run: RunFolder) -> list[dict[str, Any]]:
    """The rows recorded so far (empty if none)."""
    rows = read_json(run.history_json)
    return list(rows) if rows else []


def write_history(run: RunFolder, rows: list[Mapping[str, Any]]) -> None:
    """Rewrite history.json, then history.csv and history.png, from ``rows`` (the API serves
    the JSON)."""
    rows = [dict(r) for r in rows]
    atomic_write_json(run.history_json, rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    atomic_write_text(run.history_csv, out.getvalue())
    if rows:
        plot_history(rows, run.history_png)
    else:
        run.history_png.unlink(missing_ok=True)


def truncate_history(run: RunFolder, epochs: int) -> list[dict[str, Any]]:
    """Keep only rows of epochs ``<= epochs``; returns the rows kept."""
    rows = [r for r in read_history(run) if int(r["epoch"]) <= epochs]
    write_history(run, rows)
    return rows


def append_epoch(run: RunFolder, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Record ``row`` (its ``epoch`` replaces that epoch and any later one); returns all rows."""
    epoch = int(row["epoch"])
    rows = [r for r in read_history(run) if int(r["epoch"]) < epoch]
    rows.append({k: row.get(k) for k in COLUMNS})
    write_history(run, rows)
    return rows
