"""The README's main command as written (``./scripts/demo.sh``, with small options): it ends by
naming where the results are, and every path and command it names works."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT

SMALL = [
    "--classes", "3", "--train-per-class", "16", "--val-per-class", "4", "--test-images", "4",
    "--width", "8", "--levels", "1", "--epochs", "1", "--batch-size", "16",
]  # fmt: skip


@pytest.mark.slow
def test_the_demo_names_results_that_exist(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "API_TOKEN"}
    done = subprocess.run(
        ["./scripts/demo.sh", "--data-root", str(tmp_path / "data"), *SMALL],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("\nDone.\n", 1)[1]
    named = dict(re.findall(r"^  ([a-z ]+):\s+(.*)$", summary, re.M))
    run_dir = Path(named["run folder"])
    assert run_dir.is_absolute() and (run_dir / "config.json").is_file()
    for key in ("checkpoints", "predictions"):
        assert Path(named[key]).exists(), named[key]
    assert (run_dir / "MODEL.md").is_file() and "model.onnx" in named["model"]

    image = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
    command = shlex.split(named["classify"].replace("IMAGE...", str(image)))
    assert command[:3] == ["python", "-m", "trainer_service.inference.classify"]
    python = str(REPO_ROOT / ".venv" / "bin" / "python")
    classified = subprocess.run(
        [python, *command[1:]], capture_output=True, text=True, timeout=300,
        env={**env, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert classified.returncode == 0, classified.stderr[-3000:]
    assert classified.stdout.startswith("photo.png\n") and classified.stdout.count("%") == 3
