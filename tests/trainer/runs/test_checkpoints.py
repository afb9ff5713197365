"""Checkpoints: saved each epoch, the last N kept plus the best, latest.json, partial."""

import os

import keras
import numpy as np
import pytest

from datavolume.runs import RunFolder
from tests.trainer.runs.conftest import run
from trainer_service.runs import checkpoints


def test_retention_keeps_last_n_and_the_best(tmp_path, model):
    paths = RunFolder(tmp_path)
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
    paths = RunFolder(tmp_path)
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
    paths = RunFolder(tmp_path)
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
    paths = RunFolder(tmp_path / "runs" / "abc123")
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


def test_pruning_an_epoch_checkpoint_removes_the_predictors_export_of_it(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.5], keep=2)
    export = paths.serving_export(paths.epoch_checkpoint(1))
    export.parent.mkdir()
    export.write_bytes(b"onnx")
    paths.serving_export(paths.best).write_bytes(b"onnx")
    run(paths, model, [0.5, 0.6, 0.7], keep=2)
    assert list(checkpoints.epoch_files(paths)) == [2, 3]
    assert sorted(p.name for p in paths.serving.iterdir()) == ["best.onnx"]


def test_a_model_file_version_changes_with_each_replacement(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.5], keep=2)
    first = checkpoints.ModelFile.of(paths.best)
    assert first == checkpoints.ModelFile.of(paths.best)
    assert (first.name, first.size) == ("best.keras", paths.best.stat().st_size)
    run(paths, model, [0.5, 0.9], keep=2)  # epoch 2 is the new best: best.keras replaced
    assert checkpoints.ModelFile.of(paths.best) != first
    with pytest.raises(FileNotFoundError):
        checkpoints.ModelFile.of(paths.partial)


def test_the_epoch_of_each_kind_of_model_file(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.5, 0.9, 0.7], keep=5)
    epoch = checkpoints.checkpoint_epoch
    version = checkpoints.ModelFile.of
    assert epoch(paths, paths.epoch_checkpoint(3), version(paths.epoch_checkpoint(3))) == 3
    assert epoch(paths, paths.best, version(paths.best)) == 2
    # best.keras replaced, best.json not yet rewritten: the index cannot say
    best = version(paths.best)
    older = best.mtime_ns - 10**9
    os.utime(paths.best_json, ns=(older, older))
    assert epoch(paths, paths.best, best) is None
    # a version that is no longer the file's: neither
    assert epoch(paths, paths.best, checkpoints.ModelFile("best.keras", 1, 1)) is None
    checkpoints.save_partial(model, paths, 3, 35)
    assert epoch(paths, paths.partial, version(paths.partial)) == 3
    model.save(paths.model)
    assert epoch(paths, paths.model, version(paths.model)) is None
