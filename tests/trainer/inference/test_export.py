"""The SavedModel and ONNX exports of a run, whichever backend trained it, load with their own
runtimes in fresh processes (``tf.saved_model.load``, ``onnxruntime``) and give the logits the
run's Keras model gives on the same images; the run's model card describes what was trained.

Each backend trains a tiny run in a process of its own (with crop augmentation, moving-average
weights and flip-averaged evaluation, so every saved layer and wrapper is exported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datavolume.runs import RunFolder
from tests.conftest import REPO_ROOT

#: max |logit difference| accepted between Keras and an export (float32; 3e-7 measured)
TOLERANCE = 1e-4
BACKENDS = ["tensorflow", "jax"]

TRAIN = """
import json, sys
from pathlib import Path
from tests.trainer.support import run_to_end, tiny_config
config = tiny_config(epochs=1, crop_padding=2, use_ema=True, ema_momentum=0.9, tta_flip=True,
                     export_savedmodel=True, export_onnx=True)
result = run_to_end(config, Path(sys.argv[1]), Path(sys.argv[2]))
print(json.dumps({k: result[k] for k in ("savedmodel", "onnx", "model_card")}))
"""

KERAS_LOGITS = """
import json, sys
import numpy as np
from trainer_service.model.saved import load_for_inference
images = np.load(sys.argv[2])
model = load_for_inference(sys.argv[1], use_ema=True, tta_flip=True)
np.save(sys.argv[3], np.asarray(model.predict(images, verbose=0)))
"""

EXPORT_SERVING = """
import sys
from trainer_service.inference.export import main
sys.exit(main(["--run-dir", sys.argv[1], "--checkpoint", "best", "--serving", "--json"]))
"""

SAVEDMODEL_LOGITS = """
import sys
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
np.save(sys.argv[3], model.serve(tf.constant(np.load(sys.argv[2]))).numpy())
"""

ONNX_LOGITS = """
import sys
import numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
(inputs,) = session.get_inputs()
np.save(sys.argv[3], session.run(None, {inputs.name: np.load(sys.argv[2])})[0])
"""


def python(code: str, *args, backend: str = "tensorflow") -> str:
    """Run ``code`` in a fresh interpreter (repo root on the path) and return its last line."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": path}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@pytest.fixture(scope="module", params=BACKENDS)
def trained(request, toy_root: Path) -> tuple[str, RunFolder, dict]:
    run = RunFolder(toy_root / "runs" / f"export-{request.param}")
    answer = json.loads(python(TRAIN, run.root, toy_root, backend=request.param))
    return request.param, run, answer


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "images.npy"
    rng = np.random.default_rng(7)
    np.save(path, rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8))
    return path


def logits(code: str, model: Path, images: Path, out: Path, backend: str = "tensorflow"):
    python(code, model, images, out, backend=backend)
    return np.load(out)


def test_both_exports_are_written_and_listed(trained):
    _, run, answer = trained
    assert answer == {"savedmodel": "savedmodel", "onnx": "model.onnx",
                      "model_card": "model_card.json"}  # fmt: skip
    assert (run.savedmodel / "saved_model.pb").is_file() and run.onnx.stat().st_size > 0
    assert not run.savedmodel_temp.exists() and not list(run.root.glob(".*.tmp*"))


def test_each_export_gives_the_keras_logits_in_a_fresh_process(trained, images, tmp_path):
    backend, run, _ = trained
    keras_logits = logits(KERAS_LOGITS, run.model, images, tmp_path / "k.npy", backend)
    assert keras_logits.shape == (6, 4) and np.isfinite(keras_logits).all()
    assert np.ptp(keras_logits, axis=0).max() > 1e-3  # the images get different logits
    for code, path in ((SAVEDMODEL_LOGITS, run.savedmodel), (ONNX_LOGITS, run.onnx)):
        exported = logits(code, path, images, tmp_path / f"{path.name}.npy")
        np.testing.assert_allclose(exported, keras_logits, atol=TOLERANCE, rtol=0)


def test_the_model_card_describes_the_run(trained):
    backend, run, _ = trained
    card = json.loads(run.card_json.read_text())
    assert card["run_id"] == run.root.name
    assert card["model"]["parameters"] > 0 and card["model"]["levels"] == [1]
    assert card["dataset"]["name"] == "toy" and card["dataset"]["num_classes"] == 4
    assert [c["index"] for c in card["dataset"]["classes"]] == [0, 1, 2, 3]
    assert len(card["dataset"]["metadata_sha256"]) == 64
    assert card["training"]["use_ema"] is True and card["training"]["crop_padding"] == 2
    history = json.loads(run.history_json.read_text())
    assert card["results"]["final"]["val_accuracy"] == history[-1]["val_accuracy"]
    assert card["results"]["best"]["epoch"] == 1
    assert card["results"]["evaluation"]["tta_flip"] is True
    assert card["exports"] == {"keras": "model.keras", "savedmodel": "savedmodel",
                               "onnx": "model.onnx"}  # fmt: skip
    assert card["software"]["keras_backend"] == backend and card["software"]["keras"]
    markdown = run.card_markdown.read_text()
    assert f"# Model card: run {run.root.name}" in markdown
    assert f"{card['results']['final']['val_accuracy']:.2%}" in markdown
    for c in card["dataset"]["classes"]:
        assert f"| {c['index']} | {c['wnid']} |" in markdown


@pytest.mark.parametrize("trained", ["jax"], indirect=True)
def test_the_predictors_export_of_a_checkpoint_gives_its_keras_logits(trained, images, tmp_path):
    # A checkpoint (optimizer state and moving averages inside), exported for the predictor, as
    # on a predict request's first use of it; on JAX here: the TensorFlow-trained run's is
    # tests/trainer/inference/test_classify.py's.
    backend, run, _ = trained
    from trainer_service.inference.models import RuntimeOptions, open_session, tagged_version
    from trainer_service.runs.checkpoints import ModelFile

    answer = json.loads(python(EXPORT_SERVING, run.root))
    assert answer == {"checkpoint": "best.keras", "serving": "serving/best.onnx"}
    session = open_session(run.serving_export(run.best), RuntimeOptions(threads=1))
    tags = session.get_modelmeta().custom_metadata_map
    assert tagged_version(tags) == ModelFile.of(run.best)
    assert (tags["epoch"], tags["use_ema"], tags["tta_flip"]) == ("1", "true", "true")
    keras_logits = logits(KERAS_LOGITS, run.best, images, tmp_path / "k.npy", backend)
    served = session.run(None, {"images": np.load(images)})[0]
    np.testing.assert_allclose(served, keras_logits, atol=TOLERANCE, rtol=0)
