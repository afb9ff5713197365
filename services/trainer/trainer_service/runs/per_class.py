"""Per-class results of a checkpoint on the val split: top-1 of every class, the classes it
confuses most, the confusion matrix (``confusion.csv``) and a chart of the worst classes
(``per_class.png``). Keras-free: numpy on the labels and the predicted classes."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datavolume.files import atomic_write_text, replacing

WORST = 20
PAIRS = 10


def confusion(labels: Sequence[int], predicted: Sequence[int], classes: int) -> np.ndarray:
    """``matrix[true, predicted]``: how many val images of class ``true`` got ``predicted``."""
    labels, predicted = np.asarray(labels, np.int64), np.asarray(predicted, np.int64)
    counts = np.bincount(labels * classes + predicted, minlength=classes * classes)
    return counts.reshape(classes, classes)


def report(matrix: np.ndarray, classes: list[dict[str, Any]]) -> dict[str, Any]:
    """Every class's top-1 and image count; the :data:`WORST` classes; the :data:`PAIRS`
    most frequent confusions (true -> predicted, as a count and a share of the true class)."""
    images = matrix.sum(axis=1)
    right = np.diag(matrix)
    top1 = np.divide(right, images, out=np.zeros(len(images), float), where=images > 0)

    def named(i: int) -> dict[str, Any]:
        return {"index": int(i), "wnid": classes[i]["wnid"], "words": classes[i]["words"]}

    per_class = [{**named(i), "top1": round(float(top1[i]), 6), "images": int(images[i])}
                 for i in range(len(classes))]  # fmt: skip
    scored = [row for row in per_class if row["images"]]
    worst = sorted(scored, key=lambda row: (row["top1"], row["index"]))[:WORST]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:PAIRS]
    pairs = []
    for flat in order:
        true, guess = divmod(int(flat), len(classes))
        if off[true, guess] == 0:
            break
        pairs.append({
            "true": named(true), "predicted": named(guess), "count": int(off[true, guess]),
            "share": round(float(off[true, guess] / images[true]), 6),
        })  # fmt: skip
    return {"per_class": per_class, "worst": worst, "confused_pairs": pairs}


def write_confusion_csv(path: Path, matrix: np.ndarray, classes: list[dict[str, Any]]) -> None:
    """Rows: the true class; columns: the predicted one; both named by wnid."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    wnids = [c["wnid"] for c in classes]
    writer.writerow(["true \\ predicted", *wnids])
    for wnid, row in zip(wnids, matrix.tolist(), strict=True):
        writer.writerow([wnid, *row])
    atomic_write_text(path, out.getvalue())


def plot_worst(path: Path, worst: list[dict[str, Any]]) -> None:
    """A bar chart of the worst classes' top-1 (PNG, temp file then rename)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 0.3 * max(len(worst), 4) + 1), dpi=100, layout="constrained")
    axes = figure.subplots()
    labels = [f"{row['wnid']} {row['words'][:30]}" for row in worst]
    axes.barh(range(len(worst)), [row["top1"] for row in worst])
    axes.set_yticks(range(len(worst)), labels, fontsize="small")
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("val top-1")
    axes.set_title(f"The {len(worst)} classes the model gets wrong most")
    axes.grid(axis="x", alpha=0.3)
    with replacing(path, ".png") as tmp:
        figure.savefig(tmp, format="png")
