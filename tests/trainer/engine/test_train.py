"""train(): real learning, the run folder it leaves, stop and resume, warm start, failures."""

from __future__ import annotations

import os
import re
import signal
import time

import keras
import numpy as np
import pytest

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from jobkit.errors import JobCancelled, JobFailed
from tests.trainer.support import (
    TOY_CLASSES,
    TOY_TEST_IMAGES,
    TOY_TRAIN_PER_CLASS,
    event_tags,
    tiny_config,
)
from trainer_service.engine import evaluate
from trainer_service.engine import train as engine
from trainer_service.runs import checkpoints
from trainer_service.runs.history import COLUMNS, append_epoch, read_history

TRAIN_IMAGES = TOY_CLASSES * TOY_TRAIN_PER_CLASS


class StopAfter(LocalContext):
    """Requests a stop once ``batches`` train batches were reported in total."""

    def __init__(self, batches: int):
        super().__init__()
        self.batches = batches
        self.seen = 0

    def progress(self, done, total=None):
        self.seen += 1
        if self.seen >= self.batches:
            self.request_stop()


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    assert keras.config.dtype_policy().name == "float32"  # train() restores it


def test_learns_the_toy_dataset_and_leaves_a_complete_run_folder(data_root, tmp_path):
    """4 classes (chance 0.25): val accuracy must end far above chance. The run is
    deterministic (seeded, batches in a fixed order), so its outcome is the same every time."""
    config = tiny_config(
        epochs=4,
        batch_size=8,
        learning_rate=0.02,
        schedule="cosine",
        keep_checkpoints=2,
        deterministic=True,
    )
    paths = RunFolder(tmp_path / "run")
    ctx = LocalContext()
    result = engine.train(config, paths.root, data_root, ctx)

    steps = TRAIN_IMAGES // 8
    history = read_history(paths)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["val_accuracy"] > 0.6
    assert result.evaluation["val_accuracy"] > 0.6
    assert [r["step"] for r in history] == [steps, 2 * steps, 3 * steps, 4 * steps]
    # the cosine schedule really drives the optimizer: rates fall epoch by epoch
    rates = [r["learning_rate"] for r in history]
    assert rates[0] == pytest.approx(0.02) and all(np.diff(rates) < 0)
    assert all(set(COLUMNS) <= set(r) for r in history)
    assert all(r["images_per_s"] > 0 and r["epoch_time_s"] > 0 for r in history)
    assert paths.history_csv.read_text().splitlines()[0] == ",".join(COLUMNS)

    assert result.runtime["dtype_policy"] == "float32" and not result.stopped
    assert list(checkpoints.epoch_files(paths)) == [3, 4]  # keep_checkpoints=2
    best = checkpoints.read_best(paths)
    assert best["val_accuracy"] == max(r["val_accuracy"] for r in history)
    assert result.evaluation["epoch"] == best["epoch"]
    assert checkpoints.read_latest(paths).epoch == 4
    assert paths.model.is_file() and paths.config.is_file() and paths.history_png.is_file()

    train_tags = event_tags(paths.tensorboard / "train")
    val_tags = event_tags(paths.tensorboard / "validation")
    assert train_tags["epoch_loss"] == [0, 1, 2, 3]
    assert train_tags["epoch_learning_rate"] == [0, 1, 2, 3]
    assert val_tags["epoch_accuracy"] == [0, 1, 2, 3]

    lines = paths.predictions.read_text().splitlines()
    assert len(lines) == TOY_TEST_IMAGES
    assert [line.split()[0] for line in lines] == [f"test_{i}.JPEG" for i in range(TOY_TEST_IMAGES)]
    assert all(re.fullmatch(r"test_\d+\.JPEG n\d{8}", line) for line in lines)
    assert ctx.latest_metrics["epoch"] == 4 and ctx.latest_metrics["images_per_s"] > 0


def test_a_deterministic_run_repeats_bit_for_bit(data_root, tmp_path):
    config = tiny_config(epochs=2, limit_train_steps=4, limit_val_steps=1, deterministic=True)
    runs = [RunFolder(tmp_path / name) for name in ("first", "second")]
    for paths in runs:
        engine.train(config, paths.root, data_root)
    models = [keras.models.load_model(paths.model) for paths in runs]
    assert engine.weights_digest(models[0]) == engine.weights_digest(models[1])
    losses = [[row["loss"] for row in read_history(paths)] for paths in runs]
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_a_stop_during_the_model_build_ends_the_run_at_once(data_root, tmp_path, monkeypatch):
    """SIGTERM while the model is built (code that never polls the stop flag) raises
    JobCancelled at once, as it does in a job's worker; nothing is trained or saved."""
    seen = []

    def outside(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, outside)
    built = engine.build_model

    def slow_build(config, classes):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # interrupted by the handler train() installs for the set-up
        return built(config, classes)

    monkeypatch.setattr(engine, "build_model", slow_build)
    paths = RunFolder(tmp_path / "run")
    started = time.monotonic()
    try:
        with pytest.raises(JobCancelled):
            engine.train(tiny_config(epochs=1), paths.root, data_root)
    finally:
        after = signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - started < 20
    assert seen == [] and after is outside  # train()'s handler took it, then was taken away
    assert checkpoints.read_latest(paths) is None and not paths.model.exists()


def test_stop_mid_epoch_saves_a_partial_checkpoint_and_resume_redoes_that_epoch_exactly(
    data_root, tmp_path
):
    config = tiny_config(epochs=2, limit_train_steps=4, limit_val_steps=1)
    paths = RunFolder(tmp_path / "run")
    # the stop is requested at batch 2 of epoch 2 and seen at the next batch
    result = engine.train(config, paths.root, data_root, StopAfter(6))

    assert result.stopped and result.epochs_completed == 1
    latest = checkpoints.read_latest(paths)
    assert (latest.epoch, latest.partial, latest.step) == (1, True, 7)
    assert [r["epoch"] for r in read_history(paths)] == [1]
    assert not paths.predictions.exists()
    # as if the worker had died after recording epoch 2 but before its checkpoint
    append_epoch(paths, {"epoch": 2, "step": 8, "loss": 123.0})
    epoch_one = keras.models.load_model(checkpoints.epoch_files(paths)[1], compile=False)
    partial = keras.models.load_model(paths.partial, compile=False)
    assert engine.weights_digest(partial) != engine.weights_digest(epoch_one)

    resumed = engine.train(config, paths.root, data_root)

    start = resumed.resumed_from
    assert (start["epoch"], start["partial"]) == (1, True)
    assert start["file"] == checkpoints.epoch_files(paths)[1].name
    assert start["step"] == 4  # the start of epoch 2, as the weights are
    # Epoch 2 is redone from the state it began with: its batches 1-2 are not trained twice.
    assert start["weights_sha256"] == engine.weights_digest(epoch_one)
    history = read_history(paths)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["loss"] != 123.0
    assert [r["step"] for r in history] == [4, 8]
    assert not resumed.stopped and paths.predictions.is_file()
    assert not paths.partial.exists()
    # The optimizer took exactly the steps of an uninterrupted run: 2 epochs x 4 batches.
    final = keras.models.load_model(checkpoints.epoch_files(paths)[2])
    assert int(keras.ops.convert_to_numpy(final.optimizer.iterations)) == 2 * 4


def test_warm_start_from_a_chosen_checkpoint(data_root, tmp_path):
    source = engine.build_model(tiny_config(), TOY_CLASSES)
    source.compile(optimizer="adam", loss=evaluate.loss())
    path = data_root / "runs" / "elsewhere" / "chosen.keras"
    path.parent.mkdir(parents=True)
    source.save(path)
    relative = str(path.relative_to(data_root))

    config = tiny_config(epochs=1, limit_train_steps=2, limit_val_steps=1, init_checkpoint=relative)
    paths = RunFolder(tmp_path / "run")
    result = engine.train(config, paths.root, data_root)
    assert result.init == {
        "init_checkpoint": relative,
        "weights_sha256": engine.weights_digest(source),
    }
    assert result.resumed_from is None
    assert [r["step"] for r in read_history(paths)] == [2]  # epoch 1 with a fresh optimizer


def test_init_checkpoint_of_another_shape_is_invalid_input(data_root, tmp_path):
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save(data_root / "other.keras")
    config = tiny_config(epochs=1, init_checkpoint="other.keras")
    with pytest.raises(JobFailed) as info:
        engine.train(config, tmp_path / "run", data_root)
    assert info.value.type == "invalid_input" and "other.keras" in info.value.message


def test_unknown_dataset_is_invalid_input(data_root, tmp_path):
    with pytest.raises(JobFailed) as info:
        engine.train(tiny_config(dataset="nope"), tmp_path / "run", data_root)
    assert info.value.type == "invalid_input" and "nope" in info.value.message


def test_out_of_memory_is_reported_as_such(data_root, tmp_path, monkeypatch):
    import tensorflow as tf

    def fit(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(keras.Model, "fit", fit)
    with pytest.raises(JobFailed) as info:
        engine.train(tiny_config(batch_size=16), tmp_path / "run", data_root)
    assert info.value.type == "out_of_memory"
    assert "out of memory" in info.value.message and "batch_size 16" in info.value.message


def test_a_corrupt_shard_fails_the_run_naming_it_and_the_fix(data_root, tmp_path):
    """A copy of the toy dataset with one train shard's bytes damaged (its size kept)."""
    import shutil

    from datavolume import DataRoot
    from shard_format.metadata import load_metadata
    from tests.trainer.support import TOY

    link = DataRoot(data_root).dataset(TOY)
    copy = tmp_path / "copy"
    shutil.copytree(link.resolve(), copy)
    link.unlink()
    link.symlink_to(copy, target_is_directory=True)
    shard = load_metadata(copy).splits["train"].shards[0].file_name
    data = bytearray((copy / shard).read_bytes())
    data[40:240] = b"\xff" * 200  # inside the first record: its CRC no longer matches
    (copy / shard).write_bytes(bytes(data))
    run = RunFolder(tmp_path / "run")
    with pytest.raises(JobFailed) as failed:
        engine.train(tiny_config(epochs=1), run.root, data_root, LocalContext())
    assert failed.value.type == "data_error"
    assert shard in failed.value.message and "re-prepare the dataset" in failed.value.message
    assert "Traceback" not in failed.value.message and str(tmp_path) not in failed.value.message


def test_temporaries_of_a_killed_write_are_removed_and_checkpoints_kept(data_root, tmp_path):
    run = RunFolder(tmp_path / "run")
    engine.train(tiny_config(epochs=1), run.root, data_root, LocalContext())
    kept = sorted(p.name for p in run.checkpoints.iterdir())
    leftovers = [run.checkpoints / ".epoch-0002.0123456789ab.tmp.keras",
                 run.root / ".history.0123456789ab.tmp"]  # fmt: skip
    for path in leftovers:
        path.write_bytes(b"half a file")
    (run.root / ".savedmodel.tmp").mkdir()
    engine.train(tiny_config(epochs=2), run.root, data_root, LocalContext())  # resumes
    assert not any(path.exists() for path in leftovers)
    assert not (run.root / ".savedmodel.tmp").exists()
    assert set(kept) <= {p.name for p in run.checkpoints.iterdir()}
