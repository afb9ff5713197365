"""history.csv/json: rows per completed epoch, replaced (never duplicated) when redone."""

import csv

from datavolume.runs import RunFolder
from trainer_service.runs.history import (
    COLUMNS,
    append_epoch,
    read_history,
    truncate_history,
)


def row(epoch: int, loss: float) -> dict:
    return {"epoch": epoch, "step": 10 * epoch, "loss": loss, "val_accuracy": 0.1 * epoch}


def test_append_writes_json_and_csv(tmp_path):
    paths = RunFolder(tmp_path)
    append_epoch(paths, row(1, 2.0))
    append_epoch(paths, row(2, 1.5))
    assert [r["epoch"] for r in read_history(paths)] == [1, 2]
    with paths.history_csv.open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert [(r["epoch"], r["loss"], r["accuracy"]) for r in rows] == [
        ("1", "2.0", ""),
        ("2", "1.5", ""),
    ]


def test_a_redone_epoch_replaces_its_row_and_later_ones(tmp_path):
    paths = RunFolder(tmp_path)
    for epoch in (1, 2, 3):
        append_epoch(paths, row(epoch, 1.0))
    append_epoch(paths, row(2, 0.5))
    history = read_history(paths)
    assert [(r["epoch"], r["loss"]) for r in history] == [(1, 1.0), (2, 0.5)]


def test_truncate(tmp_path):
    paths = RunFolder(tmp_path)
    for epoch in (1, 2, 3):
        append_epoch(paths, row(epoch, 1.0))
    assert [r["epoch"] for r in truncate_history(paths, 1)] == [1]
    assert len(paths.history_csv.read_text().splitlines()) == 2
    assert truncate_history(RunFolder(tmp_path / "empty"), 3) == []


def test_history_png_shows_every_recorded_epoch_and_goes_with_the_rows(tmp_path):
    from PIL import Image

    paths = RunFolder(tmp_path)
    append_epoch(paths, {**row(1, 2.0), "accuracy": 0.2, "val_loss": 2.1, "top5_accuracy": 0.5})
    first = paths.history_png.read_bytes()
    append_epoch(paths, {**row(2, 1.5), "accuracy": 0.4, "val_loss": 1.8, "top5_accuracy": 0.7})
    second = paths.history_png.read_bytes()
    assert first != second  # redrawn with the new epoch
    with Image.open(paths.history_png) as image:
        assert image.format == "PNG" and image.size == (1000, 400)
        # not a blank canvas: the curves put many colours on it
        assert len(image.convert("RGB").getcolors(1_000_000)) > 20
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.csv",
        "history.json",
        "history.png",
    ]  # fmt: skip  (no temp file left)
    truncate_history(paths, 0)
    assert not paths.history_png.exists()  # no epochs, no plot
