"""The run's artifacts load the way a user loads them: a fresh interpreter running the lines the
README shows (read from the README itself), nothing else; the loaded model then predicts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from tests.conftest import REPO_ROOT
from tests.trainer.support import tiny_config
from trainer_service.engine import train as engine
from trainer_service.runs import checkpoints

README_PATH = '"runs/<id>/model.keras"'


def readme_loading_lines() -> str:
    """The Python block of the README's "Using the trained model" section."""
    section = (REPO_ROOT / "README.md").read_text().split("### Using the trained model", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block and README_PATH in block[1], "the README no longer shows how to load a model"
    return block[1]


#: The README's lines, with the run's file for its path; then a prediction.
LOAD = readme_loading_lines().replace(README_PATH, "sys.argv[1]") + (
    "import json, numpy as np\n"
    "images = np.zeros((2, 64, 64, 3), dtype='uint8')\n"
    "optimizer = type(model.optimizer).__name__ if model.optimizer else None\n"
    "shape = list(model.predict(images, verbose=0).shape)\n"
    "print(json.dumps({'shape': shape, 'optimizer': optimizer}))\n"
)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, toy_dataset_dir):
    data_root = toy_dataset_dir.parent.parent
    paths = RunFolder(tmp_path_factory.mktemp("saved") / "run")
    engine.train(tiny_config(epochs=1), paths.root, data_root, LocalContext())
    return paths


def load_in_a_fresh_interpreter(path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + LOAD, str(path)],
        env=env, capture_output=True, text=True, timeout=300, cwd="/",
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
