"""What a run saved loads back: with Keras and one project import (in a fresh interpreter), files
saved before the model's classes moved included; ``model.keras`` is an inference model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

from tests.conftest import REPO_ROOT
from tests.trainer.support import tiny_config
from trainer_service.engine.runtime import resolve_runtime
from trainer_service.engine.train import build_model, compile_model
from trainer_service.model.augment import Mirror, flip_averaging_model
from trainer_service.model.saved import inference_copy, load_for_inference, load_model

#: A model.keras written before ``Preprocess`` moved out of the shard format library (it names
#: ``shard_format>Preprocess``) with its optimizer and ``EpochSchedule``, and its logits then.
BEFORE = Path(__file__).parent / "data" / "resnet-saved-before-the-model-moved"

#: Plain Keras and the one import the README shows, in an interpreter of its own.
LOAD = """
import json, sys
import keras
import numpy as np
import trainer_service.model.saved  # registers the project's classes with Keras
model = keras.saving.load_model(sys.argv[1])
images = np.load(sys.argv[2])["images"]
optimizer = getattr(model, "optimizer", None)  # a model never compiled has none
print(json.dumps({"logits": model.predict(images, verbose=0).tolist(),
                  "optimizer": type(optimizer).__name__ if optimizer else None,
                  "layers": [type(layer).__name__ for layer in model.layers]}))
"""


def load_in_a_fresh_interpreter(path: Path, images: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path), str(images)],
        env=env, capture_output=True, text=True, timeout=300, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_file_saved_before_the_move_loads_and_predicts_as_it_did():
    expected = np.load(f"{BEFORE}.npz")["logits"]
    loaded = load_in_a_fresh_interpreter(BEFORE.with_suffix(".keras"), Path(f"{BEFORE}.npz"))
    assert "Preprocess" in loaded["layers"] and "Augment" in loaded["layers"]
    assert loaded["optimizer"] == "SGD"  # its EpochSchedule deserialized too
    np.testing.assert_allclose(loaded["logits"], expected, atol=1e-5)


def _trained_model():
    config = tiny_config(crop_padding=2, use_ema=True, ema_momentum=0.5)
    model = build_model(config, 4)
    compile_model(model, config, resolve_runtime(config), 2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    model.fit(images, np.arange(4), batch_size=2, epochs=1, verbose=0)
    return model, images


def test_the_final_model_has_no_optimizer_and_loads_with_keras_and_one_import(tmp_path):
    model, images = _trained_model()
    copy = inference_copy(model)
    assert getattr(copy, "optimizer", None) is None and model.optimizer is not None
    np.testing.assert_array_equal(copy.predict(images, verbose=0), model.predict(images, verbose=0))
    copy.save(tmp_path / "model.keras")
    np.savez(tmp_path / "images.npz", images=images)
    loaded = load_in_a_fresh_interpreter(tmp_path / "model.keras", tmp_path / "images.npz")
    assert loaded["optimizer"] is None
    np.testing.assert_allclose(loaded["logits"], model.predict(images, verbose=0), atol=1e-5)


def test_a_checkpoint_is_scored_with_its_moving_averages_and_flips(tmp_path):
    model, images = _trained_model()
    model.save(tmp_path / "epoch.keras")  # a checkpoint: the raw weights and the optimizer
    scored = load_for_inference(tmp_path / "epoch.keras", use_ema=True, tta_flip=True)
    model.optimizer.finalize_variable_values(model.trainable_variables)
    mirrored = images[:, :, ::-1]
    expected = (model.predict(images, verbose=0) + model.predict(mirrored, verbose=0)) / 2
    np.testing.assert_allclose(scored.predict(images, verbose=0), expected, atol=1e-5)


def test_the_flip_averaged_model_saves_and_loads(tmp_path):
    model, images = _trained_model()
    averaged = flip_averaging_model(inference_copy(model))
    assert any(isinstance(layer, Mirror) for layer in averaged.layers)
    averaged.save(tmp_path / "averaged.keras")
    loaded = load_model(tmp_path / "averaged.keras")
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), averaged.predict(images, verbose=0), atol=1e-6
    )
    assert keras.config.dtype_policy().name == "float32"
