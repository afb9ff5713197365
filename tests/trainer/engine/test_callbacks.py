"""The run's callbacks each keep their own state: in either order, a stop gives the same run."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from trainer_service.engine.callbacks import RunRecorder, StopOnRequest
from trainer_service.runs import checkpoints
from trainer_service.runs.config import Recording
from trainer_service.runs.history import read_history

STEPS = 4
RECORDING = Recording(epochs=3, batch_size=2, keep_checkpoints=5, tta_flip=False)


class StopAt(LocalContext):
    """A stop that arrives at the end of train batch ``batch`` (1-based, counted over the
    run), whatever the callbacks do: like a SIGTERM, it comes from outside them."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch, self.asked = batch, 0

    @property
    def should_stop(self) -> bool:
        self.asked += 1  # StopOnRequest asks once per batch end until it stops the run
        return self.asked >= self.batch


def fit(paths: RunFolder, ctx, order: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=1, name="top5_accuracy"),
        ],
    )
    callbacks = [
        StopOnRequest(lambda: ctx.should_stop, STEPS),
        RunRecorder(paths, ctx, RECORDING, steps_per_epoch=STEPS),
    ]
    x = np.random.default_rng(0).normal(size=(2 * STEPS, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model.fit(
        x,
        y,
        batch_size=2,
        epochs=3,
        validation_data=(x, y),
        callbacks=callbacks if order == "as listed" else callbacks[::-1],
        shuffle=False,
        verbose=0,
    )
    return model


@pytest.mark.parametrize(
    ("stop_after", "order"), list(itertools.product([6, 8], ["as listed", "reversed"]))
)
def test_a_stop_gives_the_same_run_folder_in_either_order(tmp_path, stop_after, order):
    paths = RunFolder(tmp_path / "run")
    paths.make()
    ctx = StopAt(stop_after)
    model = fit(paths, ctx, order)

    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    latest = checkpoints.read_latest(paths)
    rows = read_history(paths)
    if stop_after == 6:  # during epoch 2: a partial checkpoint, epoch 2 not recorded
        assert step == 6
        assert (latest.epoch, latest.partial, latest.step) == (1, True, 6)
        assert [r["epoch"] for r in rows] == [1]
    else:  # at the last batch of epoch 2: that epoch is complete, validated and recorded
        assert step == 2 * STEPS
        assert (latest.epoch, latest.partial) == (2, False)
        assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_loss"] is not None
    assert list(checkpoints.epoch_files(paths)) == [r["epoch"] for r in rows]
    assert ctx.latest_metrics["completed_epochs"] == len(rows)
