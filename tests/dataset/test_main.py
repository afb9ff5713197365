"""``python -m dataset_service`` serves the API with the environment's settings."""

import os
import signal
import socket
import subprocess
import sys

import httpx

from tests.dataset.support import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_module_serves_on_the_configured_port_and_stops_on_sigterm(data_root):
    port = _free_port()
    env = {
        **os.environ,
        "DATASET_DATA_ROOT": str(data_root),
        "DATASET_PORT": str(port),
        "DATASET_HOST": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataset_service"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def healthy():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stderr.read().decode()
            return False

    try:
        wait_for(healthy, timeout_s=60, interval_s=0.1)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        # the configured data root is the one in use (readyz names no path: it needs no token)
        assert ready["status"] == "ready" and str(data_root) not in ready["detail"]
        assert (data_root / "state" / "dataset-jobs.db").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in proc.stderr.read().decode()
