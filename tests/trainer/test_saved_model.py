"""The run's artifacts load the way a user loads them: a fresh interpreter, ``keras`` and the one
import the README documents, nothing else; the loaded model then predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from jobkit.worker import LocalContext
from tests.trainer.support import tiny_config
from trainer_service.training import checkpoints, loop
from trainer_service.training.files import RunPaths

#: What the README shows, verbatim but for the path.
LOAD = textwrap.dedent(
    """
    import sys, json
    import keras
    import trainer_service.model  # registers the project's layers and learning-rate schedule
    model = keras.saving.load_model(sys.argv[1])
    import numpy as np
    images = np.zeros((2, 64, 64, 3), dtype="uint8")
    print(json.dumps({"shape": list(model.predict(images, verbose=0).shape),
                      "optimizer": type(model.optimizer).__name__ if model.optimizer else None}))
    """
)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, toy_dataset_dir):
    data_root = toy_dataset_dir.parent.parent
    paths = RunPaths(tmp_path_factory.mktemp("saved") / "run")
    loop.train(tiny_config(epochs=1), paths.root, data_root, LocalContext())
    return paths


def load_in_a_fresh_interpreter(path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path)], env=env, capture_output=True, text=True,
        timeout=300, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_exported_model_loads_with_one_import(run_folder):
    out = load_in_a_fresh_interpreter(run_folder.model)
    assert out["shape"] == [2, 4]


def test_a_checkpoint_loads_with_its_optimizer(run_folder):
    (epoch_file,) = checkpoints.epoch_files(run_folder).values()
    out = load_in_a_fresh_interpreter(epoch_file)
    assert out["shape"] == [2, 4] and out["optimizer"] == "SGD"
