"""The run's artifacts load the way a user loads them: a fresh interpreter running the lines the
README shows (read from the README itself), nothing else: the Keras model and checkpoints, the
SavedModel with TensorFlow alone, the ONNX model with ONNX Runtime alone. The run trains with
crop augmentation, so every layer a saved model can hold is in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from datavolume.runs import RunFolder
from tests.conftest import REPO_ROOT
from tests.trainer.support import run_to_end, tiny_config
from trainer_service.runs import checkpoints

RUN_PATH = '"runs/<id>/'


def readme_loading_blocks() -> dict[str, str]:
    """The Python block of the README's "Using the trained model" section, in its three parts
    (each starts with its own import): keras, savedmodel, onnx."""
    section = (REPO_ROOT / "README.md").read_text().split("### Using the trained model", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "the README no longer shows how to load a model"
    parts = re.split(r"\n\n(?=import )", block[1].strip())
    assert len(parts) == 3 and all(RUN_PATH in part for part in parts), parts
    return dict(zip(("keras", "savedmodel", "onnx"), parts, strict=True))


#: Before each part: the images; after it: what it computed.
BEFORE = "import sys\nimport numpy as np\nimages = np.load(sys.argv[2])\n"
AFTER = (
    "\nimport json\n"
    "optimizer = getattr(model, 'optimizer', None) if 'model' in dir() else None\n"
    "optimizer = type(optimizer).__name__ if optimizer else None\n"
    "print(json.dumps({'logits': np.asarray(logits).tolist(), 'optimizer': optimizer}))\n"
)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, toy_dataset_dir):
    data_root = toy_dataset_dir.parent.parent
    paths = RunFolder(tmp_path_factory.mktemp("saved") / "run")
    config = tiny_config(epochs=1, crop_padding=2, export_savedmodel=True, export_onnx=True)
    run_to_end(config, paths.root, data_root)
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "images.npy"
    np.save(path, np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    return path


def run_readme_part(part: str, run_dir, images, file: str | None = None) -> dict:
    """The README's ``part`` in a fresh interpreter, on this run (or another file of it)."""
    code = readme_loading_blocks()[part].replace(RUN_PATH, f'"{run_dir}/')
    if file is not None:
        code = code.replace(f'"{run_dir}/model.keras"', f'"{file}"')
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-c", BEFORE + code + AFTER, "-", str(images)],
        env=env, capture_output=True, text=True, timeout=300, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_model_and_its_exports_load_and_agree(run_folder, images):
    keras = run_readme_part("keras", run_folder.root, images)
    assert np.array(keras["logits"]).shape == (2, 4) and keras["optimizer"] is None
    for part in ("savedmodel", "onnx"):
        exported = run_readme_part(part, run_folder.root, images)
        np.testing.assert_allclose(exported["logits"], keras["logits"], atol=1e-4, rtol=0)


def test_a_checkpoint_loads_with_its_optimizer(run_folder, images):
    (epoch_file,) = checkpoints.epoch_files(run_folder).values()
    out = run_readme_part("keras", run_folder.root, images, file=str(epoch_file))
    assert np.array(out["logits"]).shape == (2, 4) and out["optimizer"] == "SGD"
