"""``tin predict --local RUN_DIR``: classify images with a run folder on this machine, without
the service.

It runs the trainer's own classify command, ``python -m trainer_service.inference.classify``,
in one child process: the code that answers ``POST /v1/runs/{id}/predict`` in the service's
predictor (ONNX Runtime on the checkpoint's export, made on first use and kept in the run
folder), called there in-process. The client never imports the service (it speaks HTTP; the
packaging tests hold it to that), so this mode needs the ``trainer-service`` package installed
in the same Python environment as ``tin``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CLASSIFY_MODULE = "trainer_service.inference.classify"


class LocalFailed(Exception):
    """The local classification could not run; the message says why, for a person."""


def classify_locally(
    run_dir: str, images: list[tuple[str, bytes]], checkpoint: str | None = None
) -> dict[str, Any]:
    """The answer ``POST /v1/runs/{id}/predict`` would give for ``images`` ((name, bytes)
    pairs), from the run folder ``run_dir``; :class:`LocalFailed` when it cannot be had."""
    if importlib.util.find_spec("trainer_service") is None:
        raise LocalFailed(
            "--local needs the trainer-service package installed beside tin (it runs "
            f"python -m {CLASSIFY_MODULE})"
        )
    with tempfile.TemporaryDirectory(prefix="tin-predict-") as folder:
        paths = []
        for i, (name, data) in enumerate(images):
            path = Path(folder) / f"{i:04d}" / name  # its own folder: names may repeat
            path.parent.mkdir()
            path.write_bytes(data)
            paths.append(str(path))
        command = [sys.executable, "-m", CLASSIFY_MODULE, "--run-dir", run_dir, "--json",
                   "--checkpoint", checkpoint or "best", *paths]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        answer = None
    if done.returncode in (0, 1) and isinstance(answer, dict):
        return answer
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    raise LocalFailed(errors[-1] if errors else f"{CLASSIFY_MODULE} exited {done.returncode}")
