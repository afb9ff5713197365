"""The trainer service as compose runs it (a uvicorn process), on a real small volume (a tmpfs):
a run whose volume fills mid-training ends ``failed``/``out_of_space`` in its status within
10 s while the volume stays full, its earlier checkpoints intact; once space is freed, a resume
finishes with each epoch in its history once."""

from __future__ import annotations

import time

import httpx
import pytest

from datavolume import DataRoot
from scripts.run_local import compose_config, start_service, stop_service
from tests.trainer.support import TINY, TOY, wait_for
from tests.utils.full_volume import Filler, MiB, digests, free_bytes, tmpfs

TOKEN = "full-volume-token"
EPOCHS = 5
#: Short epochs: the run writes at each epoch's end, so it meets the full volume within one.
CONFIG = {**TINY, "epochs": EPOCHS, "limit_train_steps": 4, "limit_val_steps": 1}


@pytest.mark.slow
def test_a_run_whose_volume_fills_ends_out_of_space_and_resumes(
    tmp_path, toy_dataset_dir, monkeypatch
):
    with tmpfs(tmp_path / "volume", 64 * MiB) as root:
        link = DataRoot(root).dataset(TOY)
        link.parent.mkdir(parents=True)
        link.symlink_to(toy_dataset_dir, target_is_directory=True)
        monkeypatch.setenv("TRAINER_MIN_FREE_BYTES", str(4 * MiB))
        service = start_service("trainer", compose_config(), root, TOKEN, tmp_path / "logs")
        client = httpx.Client(base_url=service.url, headers=service.headers, timeout=30)
        try:
            run_id = client.post("/v1/runs", json=CONFIG).json()["id"]

            def run() -> dict:
                return client.get(f"/v1/runs/{run_id}").json()

            wait_for(
                lambda: (
                    (r := run())["state"] == "running" and r["training"]["completed_epochs"] >= 1
                ),
                timeout=180,
                interval=0.02,
            )
            checkpoints = root / "runs" / run_id / "checkpoints"
            kept = digests(checkpoints)
            assert kept  # the first epoch's checkpoint

            filler = Filler(root / "filler").start()  # the volume fills mid-training
            try:
                full_at = time.monotonic()
                ended = wait_for(lambda: (r := run())["state"] != "running" and r, timeout=10)
                assert time.monotonic() - full_at < 10
                assert ended["state"] == "failed", ended
                assert ended["error"]["type"] == "out_of_space", ended["error"]
                assert ended["unrecorded_end"] is None  # recorded, not only shown
                assert free_bytes(root) == 0  # while the volume is still full
                after = digests(checkpoints)
                assert {name: after.get(name) for name in kept} == kept  # nothing kept is lost
            finally:
                filler.remove()  # space is freed

            # A resume waits for the failed worker's process to be gone (409 until then).
            resumed = wait_for(
                lambda: (r := client.post(f"/v1/runs/{run_id}/resume")).status_code != 409 and r,
                timeout=60,
                interval=0.5,
            )
            assert resumed.status_code == 202, resumed.text
            done = wait_for(lambda: (r := run())["state"] not in ("queued", "running") and r,
                            timeout=300)  # fmt: skip
            assert done["state"] == "succeeded", done["error"]
            history = client.get(f"/v1/runs/{run_id}/history").json()
            assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
        finally:
            client.close()
            stop_service(service)
