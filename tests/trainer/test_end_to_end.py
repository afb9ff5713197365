"""Through HTTP, with the service as a real process: train, crash during epoch 3, restart, resume.

1. A run of 4 epochs of a tiny ResNet on the toy dataset (``write_toy_dataset``).
2. During epoch 3 the whole service dies (SIGKILL to the server, then to the worker): after
   2 epochs the run folder has 2 history rows, 2 checkpoints and TensorBoard event files.
3. A new service process on the same data root marks the run ``interrupted``.
4. ``POST /resume``: the run finishes with every epoch recorded exactly once and the weights and
   optimizer step counter continuing from the epoch-2 checkpoint (not from scratch).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import keras
import psutil
import pytest

from datavolume import DataRoot
from tests.trainer.support import TINY, TOY_CLASSES, TOY_TRAIN_PER_CLASS, event_tags, wait_for
from trainer_service.engine.train import weights_digest
from trainer_service.runs import checkpoints
from trainer_service.runs.history import read_history

REPO_ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 4
STEPS = TOY_CLASSES * TOY_TRAIN_PER_CLASS // TINY["batch_size"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def service(data_root: Path) -> Iterator[tuple[httpx.Client, subprocess.Popen]]:
    """``python -m trainer_service`` on a free port; SIGTERM at the end if still alive."""
    port = free_port()
    env = {
        **os.environ,
        "TRAINER_DATA_ROOT": str(data_root),
        "TRAINER_PORT": str(port),
        "TRAINER_CANCEL_GRACE_S": "20",
        "PYTHONPATH": str(REPO_ROOT),
    }
    log = (data_root / f"service-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer_service"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def ready() -> bool:
        assert proc.poll() is None, f"service exited with {proc.returncode}"
        try:
            return client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, timeout=60, interval=0.2)
        yield client, proc
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        log.close()


def get(client: httpx.Client, run_id: str) -> dict:
    response = client.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_crash_during_epoch_3_then_restart_and_resume(data_root: Path):
    body = {**TINY, "epochs": EPOCHS, "learning_rate": 0.05}
    with service(data_root) as (client, server):
        response = client.post("/v1/runs", json=body)
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        run_id = response.json()["id"]

        def in_epoch_3():
            run = client.get(location).json()
            assert run["state"] in ("queued", "running"), run
            return run["training"]["epoch"] == 3 and run

        run = wait_for(in_epoch_3, timeout=180, interval=0.02)
        worker = psutil.Process(run["pid"])
        worker.suspend()  # hold it in epoch 3 while we look, then crash everything
        paths = DataRoot(data_root).run(run_id)
        assert checkpoints.read_latest(paths).epoch == 2, "the worker left epoch 3 too soon"
        server.kill()
        server.wait()
        worker.kill()
        worker.wait(timeout=10)

    # What two epochs left behind.
    assert [r["epoch"] for r in read_history(paths)] == [1, 2]
    assert list(checkpoints.epoch_files(paths)) == [1, 2]
    assert event_tags(paths.tensorboard / "train")["epoch_loss"] == [0, 1]
    assert event_tags(paths.tensorboard / "validation")["epoch_accuracy"] == [0, 1]
    checkpoint = keras.models.load_model(paths.epoch_checkpoint(2))
    expected_digest = weights_digest(checkpoint)
    assert int(checkpoint.optimizer.iterations) == 2 * STEPS

    with service(data_root) as (client, _):
        run = get(client, run_id)
        assert run["state"] == "interrupted", run
        assert "gone" in run["error"]["message"]
        assert run["training"]["completed_epochs"] == 2

        response = client.post(f"/v1/runs/{run_id}/resume")
        assert response.status_code == 202, response.text
        finished = wait_for(
            lambda: (r := get(client, run_id))["state"] not in ("queued", "running") and r,
            timeout=180,
            interval=0.2,
        )
        assert finished["state"] == "succeeded", finished
        history = client.get(f"/v1/runs/{run_id}/history").json()
        listed = client.get(f"/v1/runs/{run_id}/checkpoints").json()
        logs = client.get(f"/v1/runs/{run_id}/logs").text

    # Each epoch exactly once; the resumed run continued the epoch-2 state.
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["step"] for r in history] == [STEPS * e for e in range(1, 5)]
    resumed = finished["result"]["resumed_from"]
    assert (resumed["epoch"], resumed["file"], resumed["partial"]) == (2, "epoch-0002.keras", False)
    assert resumed["step"] == 2 * STEPS  # optimizer state (and schedule position) restored
    assert resumed["weights_sha256"] == expected_digest
    final = keras.models.load_model(paths.epoch_checkpoint(4))
    assert int(final.optimizer.iterations) == EPOCHS * STEPS
    assert event_tags(paths.tensorboard / "train")["epoch_loss"] == [0, 1, 2, 3]
    assert [c["epoch"] for c in listed if c["kind"] == "epoch"] == [1, 2, 3, 4]
    assert "resumed from" in logs
    assert finished["training"]["completed_epochs"] == EPOCHS
    evaluation = finished["result"]["evaluation"]
    assert evaluation["checkpoint"] == "best.keras" and 0 <= evaluation["val_accuracy"] <= 1
    assert len(paths.predictions.read_text().splitlines()) == evaluation["test_predictions"]
    assert paths.model.is_file()
