"""Checkpoints: saved each epoch, the last N kept plus the best, latest.json, partial, rewind."""

import json

import keras
import numpy as np
import pytest

from trainer_service.training import checkpoints
from trainer_service.training.files import RunPaths
from trainer_service.training.history import append_epoch, read_history


@pytest.fixture(scope="module")
def model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    return model


def run(paths: RunPaths, model, accuracies: list[float], keep: int, steps: int = 10) -> None:
    """Record and checkpoint one epoch per accuracy, as the callbacks do."""
    for epoch, accuracy in enumerate(accuracies, start=1):
        append_epoch(paths, {"epoch": epoch, "step": epoch * steps, "val_accuracy": accuracy})
        checkpoints.save_epoch(model, paths, epoch, epoch * steps, accuracy, keep=keep)


def test_retention_keeps_last_n_and_the_best(tmp_path, model):
    paths = RunPaths(tmp_path)
    run(paths, model, [0.2, 0.9, 0.5, 0.6, 0.7, 0.8], keep=3)
    assert list(checkpoints.epoch_files(paths)) == [4, 5, 6]
    assert checkpoints.read_best(paths) == {"epoch": 2, "val_accuracy": 0.9, "step": 20}
    assert paths.best.is_file()
    latest = checkpoints.read_latest(paths)
    assert (latest.epoch, latest.step, latest.file, latest.partial) == (
        6,
        60,
        "epoch-0006.keras",
        False,
    )
    # no temp files left behind by the atomic writes
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == [
        "best.json",
        "best.keras",
        "epoch-0004.keras",
        "epoch-0005.keras",
        "epoch-0006.keras",
        "latest.json",
    ]


def test_a_checkpoint_holds_weights_and_optimizer_state(tmp_path, model):
    paths = RunPaths(tmp_path)
    run(paths, model, [0.5], keep=2)
    clone = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    clone.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    clone.optimizer.build(clone.trainable_variables)
    clone.load_weights(paths.epoch_checkpoint(1))
    for a, b in zip(model.get_weights(), clone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(clone.optimizer.iterations) == int(model.optimizer.iterations) == 1
    for a, b in zip(model.optimizer.variables, clone.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_partial_checkpoint_then_next_epoch_replaces_it(tmp_path, model):
    paths = RunPaths(tmp_path)
    run(paths, model, [0.5], keep=2)
    checkpoints.save_partial(model, paths, 1, 14, steps_per_epoch=10)
    latest = checkpoints.read_latest(paths)
    assert (latest.epoch, latest.step, latest.file, latest.partial) == (
        1,
        14,
        "partial.keras",
        True,
    )
    kinds = [(c["kind"], c["epoch"], c["latest"]) for c in checkpoints.list_checkpoints(paths)]
    assert kinds == [("epoch", 1, False), ("best", 1, False), ("partial", 1, True)]
    checkpoints.save_epoch(model, paths, 2, 20, 0.4, keep=2)
    assert not paths.partial.exists()
    assert checkpoints.read_latest(paths).file == "epoch-0002.keras"


def test_list_and_resolve(tmp_path, model):
    paths = RunPaths(tmp_path / "runs" / "abc123")
    run(paths, model, [0.3, 0.4], keep=5)
    listed = checkpoints.list_checkpoints(paths)
    assert [(c["file"], c["kind"], c["val_accuracy"]) for c in listed] == [
        ("epoch-0001.keras", "epoch", 0.3),
        ("epoch-0002.keras", "epoch", 0.4),
        ("best.keras", "best", 0.4),
    ]
    assert listed[1]["latest"] and listed[1]["path"] == "runs/abc123/checkpoints/epoch-0002.keras"
    assert checkpoints.resolve(paths, "latest") == paths.epoch_checkpoint(2)
    assert checkpoints.resolve(paths, "best") == paths.best
    assert checkpoints.resolve(paths, "1") == paths.epoch_checkpoint(1)
    assert checkpoints.resolve(paths, "epoch-0001.keras") == paths.epoch_checkpoint(1)
    for bad in ("7", "../x.keras", "config.json"):
        with pytest.raises(FileNotFoundError):
            checkpoints.resolve(paths, bad)


def test_rewind_discards_later_epochs(tmp_path, model):
    paths = RunPaths(tmp_path)
    run(paths, model, [0.3, 0.5, 0.9, 0.4], keep=5)
    latest = checkpoints.rewind(paths, 2)
    assert (latest.epoch, latest.step, latest.file) == (2, 20, "epoch-0002.keras")
    assert list(checkpoints.epoch_files(paths)) == [1, 2]
    assert [r["epoch"] for r in read_history(paths)] == [1, 2]
    # best came from epoch 3, which is gone: the best remaining epoch takes its place
    assert checkpoints.read_best(paths) == {"epoch": 2, "val_accuracy": 0.5, "step": 20}
    assert json.loads(paths.latest.read_text())["epoch"] == 2
    with pytest.raises(FileNotFoundError):
        checkpoints.rewind(paths, 3)
