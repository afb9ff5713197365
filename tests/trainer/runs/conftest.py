"""A tiny compiled model and a helper that records and checkpoints epochs as the callbacks do."""

import keras
import numpy as np
import pytest

from datavolume.runs import RunFolder
from trainer_service.runs import checkpoints
from trainer_service.runs.history import append_epoch


@pytest.fixture(scope="module")
def model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    return model


def run(paths: RunFolder, model, accuracies: list[float], keep: int, steps: int = 10) -> None:
    """Record and checkpoint one epoch per accuracy, as the callbacks do."""
    for epoch, accuracy in enumerate(accuracies, start=1):
        append_epoch(paths, {"epoch": epoch, "step": epoch * steps, "val_accuracy": accuracy})
        checkpoints.save_epoch(model, paths, epoch, epoch * steps, accuracy, keep=keep)
