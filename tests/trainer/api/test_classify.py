"""``POST /v1/runs/{id}/predict`` and ``tin predict`` against the real services (uvicorn
processes, as ``scripts/run_local.py`` starts them): images of any kind classified by a run's
checkpoint, a non-image answered among them, the limits as 4xx problems, a run still training
left undisturbed, and the API process never loading Keras, TensorFlow or JAX."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from scripts.run_local import Service, running_services
from tests.trainer.support import wait_for
from tests.utils.api_fuzz import heavy_libraries

TOKEN = "predict-test-token"
DATASET = "predict-syn"
CLASSES = 4
RUN = {"width": 8, "levels": [1], "batch_size": 16, "learning_rate": 0.05,
       "export_savedmodel": False, "export_onnx": False}  # fmt: skip


def encode(image: Image.Image, format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format)
    return out.getvalue()


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    """Both services on a fresh data root, a prepared synthetic dataset and a finished run.
    A predict request that finds the slot busy is refused at once (``PREDICT_WAIT_S=0``)."""
    root = tmp_path_factory.mktemp("predict") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINER_PREDICT_WAIT_S", "0")
        with running_services(root, TOKEN) as services:
            with services["dataset"].client() as dataset:
                source = {"kind": "synthetic", "classes": CLASSES, "train_per_class": 24,
                          "val_per_class": 6, "test_images": 4}  # fmt: skip
                job = dataset.wait(dataset.prepare(DATASET, source)["id"], timeout=300)
                assert job["state"] == "succeeded", job
                classes = dataset.dataset(DATASET)["metadata"]["classes"]
            with services["trainer"].client() as trainer:
                run = trainer.wait(trainer.train(DATASET, epochs=2, **RUN)["id"], timeout=300)
                assert run["state"] == "succeeded", run
            yield {"services": services, "root": root, "run": run, "classes": classes}


def post(service: Service, run_id: str, files: list[tuple[str, bytes]], **params):
    return httpx.post(
        f"{service.url}/v1/runs/{run_id}/predict",
        files=[("images", (name, data, "application/octet-stream")) for name, data in files],
        params=params,
        headers=service.headers,
        timeout=300,
    )


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


def test_images_of_every_kind_are_classified_and_a_non_image_answered(stack):
    trainer, run = stack["services"]["trainer"], stack["run"]
    files = [
        ("photo.jpg", encode(picture(640, 480, 1), "JPEG")),
        ("grey.png", encode(picture(64, 64, 2).convert("L"), "PNG")),
        ("notes.txt", b"not a picture"),
        ("print.jpg", encode(picture(100, 300, 3).convert("CMYK"), "JPEG")),
        ("../../etc/clip.png", encode(picture(50, 50, 4).convert("RGBA"), "PNG")),
    ]
    response = post(trainer, run["id"], files)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["run"] == run["id"] and answer["checkpoint"] == "best.keras"
    assert answer["tta_flip"] is False
    names = [item["image"] for item in answer["items"]]
    assert names == ["photo.jpg", "grey.png", "notes.txt", "print.jpg", "clip.png"]
    bad = answer["items"][2]
    assert bad["top"] is None and bad["error"] == "not an image (no format Pillow reads)"
    by_index = {c["index"]: c for c in stack["classes"]}
    for item in answer["items"][:2] + answer["items"][3:]:
        assert item["error"] is None and len(item["top"]) == CLASSES
        assert sum(c["probability"] for c in item["top"]) == pytest.approx(1, abs=1e-4)
        for c in item["top"]:
            assert (c["wnid"], c["words"]) == (by_index[c["index"]]["wnid"],
                                               by_index[c["index"]]["words"])  # fmt: skip


def test_the_checkpoint_can_be_chosen(stack):
    trainer, run = stack["services"]["trainer"], stack["run"]
    files = [("a.png", encode(picture(64, 64), "PNG"))]
    for name, file in (("final", "model.keras"), ("1", "epoch-0001.keras")):
        response = post(trainer, run["id"], files, checkpoint=name)
        assert response.status_code == 200, response.text
        assert response.json()["checkpoint"] == file


def test_the_limits_and_bad_requests_are_problems(stack):
    trainer, run = stack["services"]["trainer"], stack["run"]
    small = ("a.png", encode(picture(8, 8), "PNG"))
    body = problem(post(trainer, run["id"], [small] * 17), 422)
    assert body["errors"][0]["field"] == "body.images" and "at most 16" in body["detail"]
    big = ("big.bin", os.urandom(16 * 2**20))
    assert "larger than 16,777,216 bytes" in problem(post(trainer, run["id"], [big]), 413)["detail"]
    problem(post(trainer, "nosuchrun", [small]), 404)
    assert "no checkpoint epoch-0007" in problem(post(trainer, run["id"], [small], checkpoint="7"),
                                                 409)["detail"]  # fmt: skip
    problem(post(trainer, run["id"], [small], checkpoint="../model.keras"), 422)
    no_files = httpx.post(f"{trainer.url}/v1/runs/{run['id']}/predict", headers=trainer.headers,
                          data={"other": "x"}, timeout=60)  # fmt: skip
    problem(no_files, 422)
    anonymous = httpx.post(f"{trainer.url}/v1/runs/{run['id']}/predict", files=[("images", small)])
    problem(anonymous, 401)


def test_a_second_request_while_one_predicts_gets_429(stack):
    trainer, run = stack["services"]["trainer"], stack["run"]
    files = [("a.png", encode(picture(64, 64), "PNG"))]
    first: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: first.append(post(trainer, run["id"], files)))
    thread.start()
    try:
        # the first request holds the slot while its process starts (seconds)
        wait_for(lambda: any("classify" in " ".join(c.cmdline()) for c in children(trainer)),
                 timeout=60, interval=0.02)  # fmt: skip
        second = post(trainer, run["id"], files)
    finally:
        thread.join(300)
    assert first[0].status_code == 200
    body = problem(second, 429)
    assert second.headers["Retry-After"] and "another prediction is running" in body["detail"]


def children(service: Service):
    import psutil

    return psutil.Process(service.process.pid).children(recursive=True)


def test_a_run_still_training_is_not_disturbed(stack):
    trainer = stack["services"]["trainer"]
    with trainer.client() as client:
        busy = client.train(DATASET, epochs=500, **RUN)
        run_id = busy["id"]
        wait_for(lambda: client.get(run_id)["checkpoints"], timeout=300, interval=0.5)
        step = client.get(run_id)["training"]
        response = post(trainer, run_id, [("a.png", encode(picture(64, 64), "PNG"))])
        assert response.status_code == 200, response.text
        assert response.json()["checkpoint"] == "best.keras"
        # training went on through the prediction, and still does
        later = wait_for(
            lambda: (
                (t := client.get(run_id)["training"])["completed_epochs"] > step["completed_epochs"]
                and t
            ),
            timeout=300,
        )
        assert client.get(run_id)["state"] == "running" and later["completed_epochs"] >= 2
        client.cancel(run_id)
        ended = client.wait(run_id, timeout=300)
    assert ended["state"] == "cancelled"
    epochs = [row["epoch"] for row in client_history(trainer, run_id)]
    assert epochs == list(range(1, len(epochs) + 1))  # each epoch once


def client_history(service: Service, run_id: str) -> list[dict]:
    with service.client() as client:
        return client.history(run_id)


def test_the_api_process_never_loads_keras_tensorflow_or_jax(stack):
    # Every test above predicted through this process; its predictions ran in children.
    trainer = stack["services"]["trainer"]
    post(trainer, stack["run"]["id"], [("a.png", encode(picture(64, 64), "PNG"))])
    assert heavy_libraries(trainer.process.pid) == set()
    assert not any("classify" in " ".join(c.cmdline()) for c in children(trainer))


def tin(stack, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    trainer = stack["services"]["trainer"]
    env = {**os.environ, "TIN_TRAINER_URL": trainer.url, "API_TOKEN": TOKEN, "COLUMNS": "200"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "tin"), *map(str, args)],
        input=stdin, env=env, capture_output=True, timeout=600,
    )  # fmt: skip


def test_tin_predict_classifies_files_folders_and_stdin(stack, tmp_path):
    run_id = stack["run"]["id"]
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        picture(80, 60, i).save(folder / f"p{i}.jpg")
    (folder / ".hidden").write_bytes(b"x")
    single = tmp_path / "one.png"
    picture(64, 64, 9).save(single)
    stdin = encode(picture(64, 64, 10), "PNG")

    done = tin(stack, "predict", run_id, single, folder, "-", "--json", "--chunk", "2",
               stdin=stdin)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    answer = json.loads(done.stdout)
    assert [i["image"] for i in answer["items"]] == ["one.png", "p0.jpg", "p1.jpg", "p2.jpg",
                                                     "stdin"]  # fmt: skip
    assert all(len(item["top"]) == CLASSES for item in answer["items"])

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    done = tin(stack, "predict", run_id, single, notes, tmp_path / "missing.png")
    assert done.returncode == 1
    out = done.stdout.decode()
    assert out.startswith("one.png\n") and "%  n" in out
    assert "notes.txt\n  error: not an image" in out
    assert "missing.png\n  error: No such file or directory" in out
