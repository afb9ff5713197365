"""The product as users run it: the images as built, ``docker compose up`` with the CPU override,
then the HTTP flow the README documents. The tests run in file order and share one stack.

Run alone: ``./scripts/container-test.sh`` (``./scripts/test.sh`` runs it when an engine answers).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image

from datavolume import DataRoot
from shard_format.schema import METADATA_FILE
from tests.compose.stack import SERVICES, Stack
from trainer_service.runs.checkpoints import RUNS_DIR

pytestmark = pytest.mark.slow

DATASET = "syn-compose"
SYNTHETIC = {"kind": "synthetic", "classes": 4, "train_per_class": 48, "val_per_class": 8,
             "test_images": 8, "seed": 3}  # fmt: skip
RUN = {"dataset": DATASET, "width": "half", "levels": [1, 1, 1, 1], "batch_size": 32,
       "learning_rate": 0.02, "schedule": "constant", "seed": 1}  # fmt: skip
TOKEN = "compose-test-token"
#: Each image imports every module of the project's packages it ships (its lock alone must
#: provide what they import), and the trainer's backends.
IMAGE_PACKAGES = {
    "dataset": ["shard_format", "jobkit", "dataset_service"],
    "trainer": ["shard_format", "jobkit", "trainer_service", "jax", "tensorflow"],
}
FIRST_PARTY = ("shard_format", "jobkit", "dataset_service", "trainer_service")
IMPORT_ALL = f"""
import importlib, pkgutil, sys
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    if name in {FIRST_PARTY!r}:
        for module in pkgutil.walk_packages(package.__path__, name + "."):
            importlib.import_module(module.name)
print("imported", *sys.argv[1:])
"""


def test_stack_comes_up_healthy(stack: Stack):
    states = {c["Service"]: (c["State"], c.get("Health")) for c in stack.containers()}
    assert states == {name: ("running", "healthy") for name in SERVICES}
    print(f"timings: {stack.timings}")


@pytest.mark.parametrize("service", ["dataset", "trainer", "tensorboard"])
def test_containers_run_as_the_unprivileged_user(stack: Stack, service):
    assert stack.exec(service, "id", "-u").strip() == "10001"


@pytest.mark.parametrize("service", IMAGE_PACKAGES)
def test_every_module_imports_in_its_image(stack: Stack, service):
    packages = IMAGE_PACKAGES[service]
    out = stack.exec(service, "python", "-c", IMPORT_ALL, *packages)
    assert out.split()[-len(packages) - 1 :] == ["imported", *packages], out


def test_prepare_a_dataset(stack: Stack):
    with stack.dataset() as dataset:
        job = dataset.wait(dataset.prepare(DATASET, SYNTHETIC)["id"], timeout=900)
        assert job["state"] == "succeeded", job
        assert dataset.dataset(DATASET)["splits"]["train"]["num_records"] == 4 * 48


def test_train_stop_the_trainer_mid_run_then_resume(stack: Stack):
    """One 2-epoch run (each run on XLA:CPU spends most of its time compiling): stopped with
    ``docker compose stop trainer`` after its first epoch, resumed after a restart."""
    with stack.trainer() as trainer:
        run_id = trainer.train(**RUN, epochs=2)["id"]
        deadline = time.monotonic() + 600
        while True:
            run = trainer.get(run_id)
            assert run["state"] in ("queued", "running"), run
            if run["training"]["completed_epochs"] >= 1:
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.5)

    stack.timed("stop_trainer_s", "stop", "trainer")
    stack.up()  # starts the stopped trainer again and waits for it to be healthy
    with stack.trainer() as trainer:
        run = trainer.get(run_id)
        assert run["state"] in ("interrupted", "cancelled"), run
        assert run["training"]["completed_epochs"] < 2
        assert run["checkpoints"], "the stopped run left no checkpoint"

        assert trainer.resume(run_id)["state"] in ("queued", "running")
        run = trainer.wait(run_id, timeout=900)
        assert run["state"] == "succeeded", run
        # The image's default: Keras on JAX (here on the CPU).
        assert run["result"]["runtime"]["backend"] == "jax"
        assert [row["epoch"] for row in trainer.history(run_id)] == [1, 2]  # each epoch once
        checkpoints = trainer.checkpoints(run_id)
        assert {c["epoch"] for c in checkpoints if c["kind"] == "epoch"} == {1, 2}


#: In the trainer image: the run's model.keras with Keras on JAX (as it trained) and its
#: SavedModel with TensorFlow, on the same images; both sets of logits as JSON.
IMAGE_LOGITS = """
import json, sys
import numpy as np
import tensorflow as tf
from trainer_service.model.saved import load_for_inference
images = np.random.default_rng(5).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
keras_logits = load_for_inference(sys.argv[1] + "/model.keras").predict(images, verbose=0)
served = tf.saved_model.load(sys.argv[1] + "/savedmodel")
served_logits = served.serve(tf.constant(images)).numpy()
print(json.dumps({"keras": keras_logits.tolist(), "savedmodel": served_logits.tolist()}))
"""


def test_the_run_classifies_an_image_and_its_exports_load(stack: Stack, tmp_path: Path):
    import numpy as np
    import onnxruntime

    with stack.trainer() as trainer:
        (run,) = trainer.list()
        run_dir = f"/data/{run['run_dir']}"
        assert run["exports"] == {"keras": f"{run['run_dir']}/model.keras",
                                  "savedmodel": f"{run['run_dir']}/savedmodel",
                                  "onnx": f"{run['run_dir']}/model.onnx"}  # fmt: skip
        assert run["model_card"] == f"{run['run_dir']}/MODEL.md"
        png = tmp_path / "cat.png"
        Image.fromarray(np.full((90, 120, 3), 200, np.uint8)).save(png)
        answer = trainer.predict(run["id"], [("cat.png", png.read_bytes())])
        again = trainer.predict(run["id"], [("cat.png", png.read_bytes())])  # warm
        best = next(c for c in trainer.checkpoints(run["id"]) if c["kind"] == "best")
    (item,) = answer["items"]
    assert item["image"] == "cat.png" and item["error"] is None and len(item["top"]) == 4
    assert (answer["checkpoint"], answer["epoch"]) == ("best.keras", best["epoch"])
    assert again == answer
    # served by the predictor process from the checkpoint's ONNX export, made in the container
    stack.exec("trainer", "test", "-s", f"{run_dir}/serving/best.onnx")
    commands = stack.exec("trainer", "python", "-c", "import psutil; print([p.cmdline() for p "
                          "in psutil.process_iter()])")  # fmt: skip
    assert "trainer_service.inference.server" in commands

    out = stack.exec("trainer", "env", "KERAS_BACKEND=jax", "TF_CPP_MIN_LOG_LEVEL=2",
                     "python", "-c", IMAGE_LOGITS, run_dir)  # fmt: skip
    logits = json.loads(out.strip().splitlines()[-1])
    keras_logits = np.array(logits["keras"], np.float32)
    np.testing.assert_allclose(logits["savedmodel"], keras_logits, atol=1e-4, rtol=0)
    stack.compose("cp", f"trainer:{run_dir}/model.onnx", str(tmp_path / "model.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    images = np.random.default_rng(5).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    onnx_logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(onnx_logits, keras_logits, atol=1e-4, rtol=0)
    assert "# Model card: run" in stack.exec("trainer", "cat", f"{run_dir}/MODEL.md")


def test_the_run_shows_in_tensorboard_and_its_files_are_readable(stack: Stack):
    with stack.trainer() as trainer:
        (run,) = trainer.list()
    # TensorBoard (its own image, the volume read-only) lists the run's event folders.
    deadline = time.monotonic() + 90
    with stack.client("tensorboard") as tensorboard:
        while True:
            runs = tensorboard.get("/data/runs").raise_for_status().json()
            if any(name.startswith(run["id"]) for name in runs):
                break
            assert time.monotonic() < deadline, f"TensorBoard lists {runs}, not {run['id']}"
            time.sleep(2)

    # Its settings and best scores are in the HParams dashboard (the plugin's own HTTP API).
    with stack.client("tensorboard") as tensorboard:
        while True:
            experiment = (
                tensorboard.post("/data/plugin/hparams/experiment", json={"experimentName": ""})
                .raise_for_status()
                .json()
            )
            hparams = {h["name"]: h for h in experiment.get("hparamInfos", [])}
            if "learning_rate" in hparams:
                break
            assert time.monotonic() < deadline, experiment
            time.sleep(2)
    assert {"recipe", "width", "batch_size", "flip"} <= set(hparams)
    metrics = {m["name"]["tag"] for m in experiment.get("metricInfos", [])}
    assert {"best_val_accuracy", "best_val_top5_accuracy", "epoch_accuracy"} <= metrics, metrics

    # Everything on the volume is readable by another uid (here: nobody, in another container).
    unreadable = stack.exec(
        "tensorboard",
        "find", "/data", "(", "-type", "f", "!", "-perm", "-o=r", ")",
        "-o", "(", "-type", "d", "!", "-perm", "-o=rx", ")",
        user="65534",
    )  # fmt: skip
    assert unreadable.strip() == ""
    metadata = DataRoot(Path("/data")).dataset(DATASET) / METADATA_FILE
    assert DATASET in stack.exec("tensorboard", "cat", str(metadata), user="65534")
    run_dir = f"/data/{RUNS_DIR}/{run['id']}"
    for name in ("model.keras", "history.png", "history.csv"):
        stack.exec("tensorboard", "test", "-r", f"{run_dir}/{name}", user="65534")


def test_a_tiny_sweep_through_the_stack(stack: Stack):
    """Two trials of one epoch, chosen by Optuna in the trainer container, each an ordinary
    run; its study (a journal on the volume) and its plot served."""
    base = {key: value for key, value in RUN.items() if key not in ("dataset", "learning_rate")}
    sweep = {"name": "stack", "dataset": DATASET, "base": {**base, "epochs": 1},
             "space": {"learning_rate": {"choices": [0.01, 0.02]}}, "sampler": "grid",
             "pruner": "none", "max_trials": 2}  # fmt: skip
    with stack.trainer() as trainer:
        trainer.sweep(**sweep)
        done = list(trainer.watch_sweep("stack", timeout=900))[-1]
        assert done["state"] == "succeeded" and done["counts"]["complete"] == 2, done
        assert {t["params"]["learning_rate"] for t in done["trials"]} == {0.01, 0.02}
        assert trainer.sweep_plot("stack").startswith(b"\x89PNG")
        trials = trainer.list(tag="sweep:stack")
    assert {r["state"] for r in trials} == {"succeeded"} and len(trials) == 2
    assert stack.exec("trainer", "test", "-s", "/data/sweeps/stack/study.journal") == ""


def test_down_then_up_keeps_datasets_and_runs(stack: Stack):
    with stack.trainer() as trainer:
        before = {r["id"]: r["state"] for r in trainer.list()}
    stack.compose("down", "--timeout", "60")
    stack.up()
    with stack.dataset() as dataset:
        assert DATASET in [d["name"] for d in dataset.datasets()]
    with stack.trainer() as trainer:
        after = {r["id"]: r["state"] for r in trainer.list()}
    assert after == before and set(after.values()) == {"succeeded"}


def test_a_run_killed_with_the_trainer_resumes_by_itself(stack: Stack):
    """``max_restarts``: ``docker compose kill trainer`` (SIGKILL: service and worker gone
    mid-run), then ``up -d``; the service finds the run it was training and resumes it from its
    checkpoint, with no call from anyone, and every epoch is recorded once."""
    with stack.trainer() as trainer:
        run_id = trainer.train(**RUN, epochs=2, max_restarts=1)["id"]
        deadline = time.monotonic() + 600
        while trainer.get(run_id)["training"]["completed_epochs"] < 1:
            assert time.monotonic() < deadline, trainer.get(run_id)
            time.sleep(0.5)
    stack.compose("kill", "trainer")
    stack.up()
    with stack.trainer() as trainer:
        run = trainer.wait(run_id, timeout=900)
        assert run["state"] == "succeeded", run
        assert run["restarts"] == 1 and run["restart_causes"][0].startswith("interrupted: ")
        assert [row["epoch"] for row in trainer.history(run_id)] == [1, 2]


def test_api_token_is_required_once_set(stack: Stack):
    stack.env["API_TOKEN"] = TOKEN
    stack.up()  # recreates both services with the token in their environment
    for service, path in (("dataset", "/v1/jobs"), ("trainer", "/v1/runs")):
        with stack.client(service) as anonymous:
            response = anonymous.get(path)
            assert response.status_code == 401
            assert response.headers["content-type"].startswith("application/problem+json")
            assert anonymous.get("/healthz").status_code == 200
        with stack.client(service, TOKEN) as client:
            assert client.get(path).status_code == 200
