"""The API with real workers: FIFO queue, live logs, cancel, a worker killed by a signal."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from datavolume import DataRoot
from tests.trainer.support import TINY, wait_for
from trainer_service.main import create_app
from trainer_service.runs import checkpoints
from trainer_service.settings import Settings


@pytest.fixture
def client(data_root: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_root=data_root, cancel_grace_s=30))
    with TestClient(app) as client:  # the lifespan starts the runner
        yield client


def get(client: TestClient, run_id: str) -> dict:
    response = client.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


def group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def test_queue_cancel_with_checkpoint_and_killed_worker(client: TestClient, data_root: Path):
    first = client.post("/v1/runs", json={**TINY, "epochs": 50}).json()
    # training has begun once a batch is reported
    wait_for(lambda: (get(client, first["id"])["training"]["step"] or 0) >= 1, timeout=120)

    second = client.post("/v1/runs", json={**TINY, "epochs": 1, "seed": 1})
    assert second.status_code == 202
    second = second.json()
    assert second["state"] == "queued" and second["queue_position"] == 1
    running = get(client, first["id"])
    assert running["state"] == "running" and running["progress"]["unit"] == "batches"
    assert running["training"]["epochs"] == 50 and running["training"]["steps_per_epoch"] == 16
    assert "runtime:" in client.get(f"/v1/runs/{first['id']}/logs").text  # live log
    assert client.post(f"/v1/runs/{first['id']}/resume").status_code == 409

    # cancel: SIGTERM, the worker saves a checkpoint and stops; its process tree ends
    pid = running["pid"]
    response = client.post(f"/v1/runs/{first['id']}/cancel")
    assert response.status_code in (200, 202)
    cancelled = wait_for(
        lambda: (run := get(client, first["id"]))["state"] == "cancelled" and run, timeout=60
    )
    assert cancelled["error"]["type"] == "cancelled"
    assert cancelled["result"]["stopped"] is True
    wait_for(lambda: not group_alive(pid), timeout=30)  # the worker records, then exits
    latest = checkpoints.read_latest(DataRoot(data_root).run(first["id"]))
    assert latest is not None and (data_root / cancelled["run_dir"] / "checkpoints").is_dir()
    assert any(c["latest"] for c in cancelled["checkpoints"])

    # the queued run starts next; a worker killed by a signal is reported as such
    started = wait_for(
        lambda: (run := get(client, second["id"]))["state"] == "running" and run["pid"] and run,
        timeout=30,
    )
    os.kill(started["pid"], signal.SIGKILL)
    failed = wait_for(
        lambda: (run := get(client, second["id"]))["state"] == "failed" and run, timeout=30
    )
    assert failed["error"]["type"] == "killed" and "SIGKILL" in failed["error"]["message"]


def test_a_cancel_during_the_setup_ends_the_run_well_within_the_grace(client: TestClient):
    """The worker is still importing Keras and TensorFlow (several seconds): the cancel ends it
    there, by itself, not by the SIGKILL that would come after the 30 s grace."""
    run = client.post("/v1/runs", json={**TINY, "epochs": 1}).json()
    wait_for(lambda: get(client, run["id"])["phase"] == "setup", timeout=60, interval=0.02)
    started = time.monotonic()
    assert client.post(f"/v1/runs/{run['id']}/cancel").status_code in (200, 202)
    ended = wait_for(
        lambda: (r := get(client, run["id"]))["state"] == "cancelled" and r, timeout=60
    )
    wait_for(lambda: not group_alive(ended["pid"]), timeout=30)
    assert time.monotonic() - started < 20
    assert ended["phase"] == "setup" and ended["result"] is None
    log = client.get(f"/v1/runs/{run['id']}/logs").text
    assert "SIGKILL" not in log and "cancelled (stop requested)" in log


def test_a_worker_killed_mid_epoch_resumes_by_itself(client: TestClient, data_root: Path):
    """``max_restarts``: SIGKILL the worker after its first epoch; the runner restarts the run
    from its latest checkpoint, and it finishes with each epoch recorded once."""
    run = client.post("/v1/runs", json={**TINY, "epochs": 5, "max_restarts": 1}).json()
    first = wait_for(
        lambda: (r := get(client, run["id"]))["training"]["completed_epochs"] >= 1
        and r["state"] == "running" and r,
        timeout=180,
    )  # fmt: skip
    os.kill(first["pid"], signal.SIGKILL)
    done = wait_for(
        lambda: (r := get(client, run["id"]))["state"] in ("succeeded", "failed") and r,
        timeout=300,
    )
    assert done["state"] == "succeeded", done["error"]
    assert done["restarts"] == 1
    assert done["restart_causes"] == ["killed: worker killed by signal SIGKILL"]
    assert done["result"]["resumed_from"]["epoch"] >= 1
    history = client.get(f"/v1/runs/{run['id']}/history").json()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]  # each epoch once
    assert (
        "restart 1/1 after: killed: worker killed by signal SIGKILL"
        in client.get(f"/v1/runs/{run['id']}/logs").text
    )
