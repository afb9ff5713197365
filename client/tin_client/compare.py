"""``tin compare``: runs side by side, from what the trainer serves (a client-side join).

One row per run: its id and name, every setting whose value differs between the runs, epochs,
best and last val top-1/top-5, training time and images/s; and, with ``--plot``, their val
top-1 curves on one chart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Request fields that are shown as their own columns or are not settings.
NOT_SETTINGS = ("name", "tags")
SCORES = ("val_accuracy", "val_top5_accuracy")


def differing_settings(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The request fields whose values are not the same in every run, in request order."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run["request"]))
    return [
        key for key in keys
        if key not in NOT_SETTINGS
        and len({json.dumps(run["request"].get(key), sort_keys=True) for run in runs}) > 1
    ]  # fmt: skip


def row(run: dict[str, Any], history: list[dict[str, Any]], settings: list[str]) -> dict:
    """The comparison row of one run."""
    last = history[-1] if history else {}
    best = max(history, key=lambda r: r.get("val_accuracy") or -1.0) if history else {}
    rates = [r["images_per_s"] for r in history if r.get("images_per_s")]
    training = run.get("training") or {}
    return {
        "id": run["id"],
        "name": run["request"].get("name") or "",
        **{key: run["request"].get(key) for key in settings},
        "state": run["state"],
        "epochs": f"{len(history)}/{training.get('epochs') or run['request'].get('epochs')}",
        "best_epoch": best.get("epoch"),
        **{f"best_{key}": best.get(key) for key in SCORES},
        **{f"last_{key}": last.get(key) for key in SCORES},
        "train_minutes": round(sum(r.get("epoch_time_s") or 0 for r in history) / 60, 2),
        "images_per_s": round(sum(rates) / len(rates), 1) if rates else None,
    }


def comparison(runs: Sequence[dict[str, Any]], histories: Sequence[list[dict]]) -> list[dict]:
    settings = differing_settings(runs)
    return [row(run, history, settings) for run, history in zip(runs, histories, strict=True)]


def plot_val_curves(
    path: Path, runs: Sequence[dict[str, Any]], histories: Sequence[list[dict]]
) -> None:
    """Every run's val top-1 per epoch on one chart (PNG)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 5), dpi=100, layout="constrained")
    axes = figure.subplots()
    for run, history in zip(runs, histories, strict=True):
        points = [(r["epoch"], r["val_accuracy"]) for r in history if r.get("val_accuracy")]
        if points:
            xs, ys = zip(*points, strict=True)
            label = run["id"] + (f" {run['request']['name']}" if run["request"].get("name") else "")
            axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("val top-1")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(fontsize="small")
    figure.savefig(path, format="png")
