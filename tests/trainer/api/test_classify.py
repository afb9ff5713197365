"""``POST /v1/runs/{id}/predict`` and ``tin predict`` against the real services (uvicorn
processes, as ``scripts/run_local.py`` starts them): images of any kind classified by a run's
checkpoint, a non-image answered among them, the limits as 4xx problems; the warm predictor
(a second request not loading again, a new best checkpoint picked up, idle models freed, a
predictor killed with SIGKILL replaced, a full queue answered 429), a run still training left
undisturbed, ``tin predict --local`` answering as the service does, and neither the API process
nor the predictor loading Keras, TensorFlow or JAX.

What the predictor did is read from the predictor itself (its ``stats`` request on its socket:
how many exports and model loads it made, which models it holds)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from datavolume.files import atomic_copy, atomic_write_json, read_json
from datavolume.runs import RunFolder
from scripts.run_local import Service, running_services
from tests.trainer.support import wait_for
from tests.utils.api_fuzz import heavy_libraries
from trainer_service.inference import wire

TOKEN = "predict-test-token"
DATASET = "predict-syn"
CLASSES = 4
RUN = {"width": 8, "levels": [1], "batch_size": 16, "learning_rate": 0.05,
       "export_savedmodel": False, "export_onnx": False}  # fmt: skip
#: The service's predictor settings here: a queue of two, models freed after 4 s unused.
MAX_QUEUE, IDLE_S = 2, 4


def encode(image: Image.Image, format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format)
    return out.getvalue()


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


ONE = [("a.png", encode(picture(64, 64), "PNG"))]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    """Both services on a fresh data root, a prepared synthetic dataset and a finished run."""
    root = tmp_path_factory.mktemp("predict") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINER_PREDICT_MAX_QUEUE", str(MAX_QUEUE))
        patch.setenv("TRAINER_PREDICT_IDLE_S", str(IDLE_S))
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
            yield {"services": services, "root": root, "run": run, "classes": classes,
                   "folder": RunFolder(root / run["run_dir"])}  # fmt: skip


def post(service: Service, run_id: str, files: list[tuple[str, bytes]], **params):
    return httpx.post(
        f"{service.url}/v1/runs/{run_id}/predict",
        files=[("images", (name, data, "application/octet-stream")) for name, data in files],
        params=params,
        headers=service.headers,
        timeout=300,
    )


def predict(stack, files=ONE, **params) -> dict:
    response = post(stack["services"]["trainer"], stack["run"]["id"], files, **params)
    assert response.status_code == 200, response.text
    return response.json()


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


def predictor_process(service: Service) -> psutil.Process:
    """The service's predictor process (started by its first predict request)."""
    found = [c for c in psutil.Process(service.process.pid).children(recursive=True)
             if "trainer_service.inference.server" in c.cmdline()]  # fmt: skip
    assert len(found) == 1, found
    return found[0]


def stats(service: Service) -> dict:
    """What the predictor did and holds, asked on its own socket."""
    command = predictor_process(service).cmdline()
    socket = Path(command[command.index("--socket") + 1])
    return wire.ask(socket, {"op": "stats"}, timeout_s=60)[0]


def test_images_of_every_kind_are_classified_and_a_non_image_answered(stack):
    files = [
        ("photo.jpg", encode(picture(640, 480, 1), "JPEG")),
        ("grey.png", encode(picture(64, 64, 2).convert("L"), "PNG")),
        ("notes.txt", b"not a picture"),
        ("print.jpg", encode(picture(100, 300, 3).convert("CMYK"), "JPEG")),
        ("../../etc/clip.png", encode(picture(50, 50, 4).convert("RGBA"), "PNG")),
    ]
    answer = predict(stack, files)
    assert answer["run"] == stack["run"]["id"] and answer["checkpoint"] == "best.keras"
    assert answer["epoch"] == read_json(stack["folder"].best_json)["epoch"]
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
    # served from the checkpoint's export, kept in the run folder
    assert stack["folder"].serving_export(stack["folder"].best).is_file()


def test_the_second_request_is_served_warm(stack):
    trainer = stack["services"]["trainer"]
    first = predict(stack)
    before = stats(trainer)
    started = time.perf_counter()
    second = predict(stack)
    seconds = time.perf_counter() - started
    after = stats(trainer)
    assert second["items"] == first["items"]
    assert after["pid"] == before["pid"] and after["requests"] == before["requests"] + 1
    assert (after["loads"], after["exports"]) == (before["loads"], before["exports"])  # warm
    assert [m["checkpoint"] for m in after["models"]] == ["best.keras"]
    assert seconds < 5  # not a process start, a Keras import and a checkpoint load


def test_the_checkpoint_can_be_chosen(stack):
    for name, file, epoch in (("final", "model.keras", None), ("1", "epoch-0001.keras", 1)):
        answer = predict(stack, checkpoint=name)
        assert (answer["checkpoint"], answer["epoch"]) == (file, epoch)


def test_a_new_best_checkpoint_is_answered_at_once(stack):
    trainer, folder = stack["services"]["trainer"], stack["folder"]
    before = predict(stack)
    other = 2 if before["epoch"] == 1 else 1
    expected = predict(stack, checkpoint=str(other))
    counts = stats(trainer)
    # what training does when an epoch beats the best: copy its checkpoint, then best.json
    atomic_copy(folder.epoch_checkpoint(other), folder.best)
    atomic_write_json(folder.best_json, {"epoch": other, "val_accuracy": 1.0, "step": 0})
    after = predict(stack)
    assert (after["checkpoint"], after["epoch"]) == ("best.keras", other)
    assert after["items"] == expected["items"] and after["items"] != before["items"]
    now = stats(trainer)
    assert (now["exports"], now["loads"]) == (counts["exports"] + 1, counts["loads"] + 1)
    assert sum(m["checkpoint"] == "best.keras" for m in now["models"]) == 1  # the old one dropped


def test_idle_models_are_freed_and_loaded_again_from_their_export(stack):
    trainer = stack["services"]["trainer"]
    predict(stack)
    assert stats(trainer)["models"]
    freed = wait_for(lambda: (s := stats(trainer))["models"] == [] and s, timeout=IDLE_S + 30)
    predict(stack)
    again = stats(trainer)
    assert again["loads"] == freed["loads"] + 1 and again["exports"] == freed["exports"]


def test_a_killed_predictor_is_replaced_and_the_next_request_works(stack):
    trainer = stack["services"]["trainer"]
    predict(stack)
    victim = predictor_process(trainer)
    victim.send_signal(signal.SIGSTOP)  # the request below waits in it
    seen: list[httpx.Response] = []
    request = threading.Thread(target=lambda: seen.append(post(trainer, stack["run"]["id"], ONE)))
    request.start()
    time.sleep(2)
    victim.send_signal(signal.SIGKILL)
    request.join(60)
    body = problem(seen[0], 503)
    assert "predictor process ended (killed by SIGKILL)" in body["detail"], body
    answer = predict(stack)
    assert answer["items"][0]["top"]
    assert predictor_process(trainer).pid != victim.pid and not victim.is_running()
    assert stats(trainer)["exports"] == 0  # the new predictor loaded the export on disk


def test_a_full_queue_answers_429_with_retry_after(stack):
    trainer = stack["services"]["trainer"]
    predict(stack)
    predictor = predictor_process(trainer)
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(post(trainer, stack["run"]["id"], ONE))

    predictor.send_signal(signal.SIGSTOP)  # requests queue up in front of it
    try:
        threads = [threading.Thread(target=ask) for _ in range(MAX_QUEUE + 1)]
        for thread in threads:
            thread.start()
        wait_for(lambda: answers, timeout=60)  # one over the limit: refused at once
    finally:
        predictor.send_signal(signal.SIGCONT)
    for thread in threads:
        thread.join(60)
    assert sorted(a.status_code for a in answers) == [200] * MAX_QUEUE + [429]
    refused = next(a for a in answers if a.status_code == 429)
    body = problem(refused, 429)
    assert refused.headers["Retry-After"] == "1" and "predict_max_queue" in body["detail"]


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


def test_a_run_still_training_is_not_disturbed(stack):
    trainer = stack["services"]["trainer"]
    with trainer.client() as client:
        busy = client.train(DATASET, epochs=500, **RUN)
        run_id = busy["id"]
        # an epoch saved and indexed (latest.json: its checkpoint file shows a moment before)
        wait_for(lambda: client.get(run_id)["training"]["completed_epochs"] >= 1, timeout=300,
                 interval=0.5)  # fmt: skip
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


def test_neither_the_api_process_nor_the_predictor_loads_keras_tensorflow_or_jax(stack):
    # Every test above predicted through this process and its predictor.
    trainer = stack["services"]["trainer"]
    predict(stack)
    assert heavy_libraries(trainer.process.pid) == set()
    predictor = predictor_process(trainer)
    assert heavy_libraries(predictor.pid) == set()
    assert predictor.memory_info().rss < 300 * 2**20


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

    # --local: the same code on the run folder in one process here, the same answer
    local = tin(stack, "predict", "--local", stack["folder"].root, single, folder, "-", "--json",
                stdin=stdin)  # fmt: skip
    assert local.returncode == 0, local.stderr.decode()
    here = json.loads(local.stdout)
    assert {k: v for k, v in here.items() if k != "items"} == {k: v for k, v in answer.items()
                                                              if k != "items"}  # fmt: skip
    pairs = [[(i["image"], i["top"]) for i in a["items"]] for a in (here, answer)]
    assert pairs[0] == pairs[1]

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    done = tin(stack, "predict", run_id, single, notes, tmp_path / "missing.png")
    assert done.returncode == 1
    out = done.stdout.decode()
    assert out.startswith("one.png\n") and "%  n" in out
    assert "notes.txt\n  error: not an image" in out
    assert "missing.png\n  error: No such file or directory" in out
    local = tin(stack, "predict", "--local", stack["folder"].root, single, notes)
    assert local.returncode == 1
    assert local.stdout.decode() == out[: out.index(str(tmp_path / "missing.png"))]
    wrong = tin(stack, "predict", "--local", stack["folder"].root, single, "--checkpoint", "7")
    assert wrong.returncode == 2 and "no checkpoint epoch-0007.keras" in wrong.stderr.decode()
