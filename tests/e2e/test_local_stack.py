"""The whole flow as ``docker compose up`` runs it, with processes instead of containers.

Both services start as real uvicorn processes on loopback with the environment the compose file
gives their containers, sharing one temporary folder as the volume; the README's main command
(scripts/run_local.py) drives exactly this code.
"""

from __future__ import annotations

import signal

import httpx
import pytest

from datavolume import DataRoot
from scripts.run_local import parse_args, run_pipeline, running_services
from shard_format.metadata import load_metadata

TOKEN = "e2e-s3cret-token"
SMALL = [
    "--classes", "4", "--train-per-class", "24", "--val-per-class", "6", "--test-images", "8",
    "--width", "16", "--levels", "1,1", "--epochs", "2", "--batch-size", "16",
    "--learning-rate", "0.05", "--timeout", "600",
]  # fmt: skip


@pytest.mark.slow
# With the token: the same pipeline the demo runs, plus the 401 checks (one run keeps CI short).
@pytest.mark.parametrize("token", [TOKEN], ids=["token"])
def test_prepare_train_and_collect_results(tmp_path, token):
    args = parse_args(["--data-root", str(tmp_path), *SMALL])
    with running_services(tmp_path, token) as services:
        if token:
            for service, path in (
                (services["dataset"], "/v1/jobs"),
                (services["trainer"], "/v1/runs"),
            ):
                assert httpx.get(service.url + path).status_code == 401
                wrong = {"Authorization": "Bearer not-the-token"}
                assert httpx.get(service.url + path, headers=wrong).status_code == 401
                assert httpx.get(service.url + path, headers=service.headers).status_code == 200
                assert httpx.get(service.url + "/healthz").status_code == 200
        out = run_pipeline(services, args)

    # Both services shut down cleanly on SIGTERM (uvicorn re-raises the signal once it is done).
    for service in services.values():
        assert service.process.returncode in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in service.log_path.read_text()

    assert (DataRoot(tmp_path).dataset(args.dataset) / "shard_format.json").is_file()
    run = out["run"]
    assert run["state"] == "succeeded"
    assert [row["epoch"] for row in out["history"]] == [1, 2]
    assert all(0.0 <= row["val_accuracy"] <= 1.0 for row in out["history"])
    assert len(out["checkpoints"]) >= 2

    run_dir = tmp_path / run["run_dir"]
    assert run["exports"] == {name: f"{run['run_dir']}/{file}" for name, file in
                              (("keras", "model.keras"), ("savedmodel", "savedmodel"),
                               ("onnx", "model.onnx"))}  # fmt: skip
    assert run["model_card"] == f"{run['run_dir']}/MODEL.md" and (run_dir / "MODEL.md").is_file()
    assert (run_dir / "history.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    predictions = (run_dir / "predictions.txt").read_text().splitlines()
    assert len(predictions) == 8
    wnids = set(load_metadata(DataRoot(tmp_path).dataset(args.dataset)).wnids())
    for line in predictions:
        file_name, wnid = line.split(" ")
        assert file_name.startswith("test_") and file_name.endswith(".JPEG")
        assert wnid in wnids
