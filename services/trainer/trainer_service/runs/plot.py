"""``history.png``: the run's curves, for people who open the run folder rather than TensorBoard.

Two panels over the epochs: loss (train and val) and accuracy (top-1 and top-5, train and val).
Rewritten atomically with the history, so it always shows every recorded epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datavolume.files import replacing

CURVES = {
    "loss": (("loss", "train"), ("val_loss", "val")),
    "accuracy": (
        ("accuracy", "train top-1"),
        ("val_accuracy", "val top-1"),
        ("top5_accuracy", "train top-5"),
        ("val_top5_accuracy", "val top-5"),
    ),
}


def plot_history(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Draw ``rows`` (history rows) into the PNG ``path`` (temp file, then rename)."""
    # A bare Figure renders with Agg: no pyplot, no display, no global backend state.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    for axes, (title, curves) in zip(figure.subplots(1, 2), CURVES.items(), strict=True):
        for key, label in curves:
            points = [(int(r["epoch"]), r[key]) for r in rows if r.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                axes.plot(xs, ys, marker="o", markersize=3, label=label)
        if axes.lines:  # a panel with no values yet gets no (empty) legend
            axes.legend(fontsize="small")
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    with replacing(path, ".png") as tmp:
        figure.savefig(tmp, format="png")
