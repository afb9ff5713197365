"""Run one of this package's commands in a process of its own and read its JSON answer (no
Keras here: the callers keep Keras, TensorFlow and JAX out of their own process); the export
command's name and environment, for the callers that start it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from typing import Any

from jobkit.errors import summary_line
from trainer_service import TENSORFLOW_ENV

#: The export command (``python -m``; Keras on TensorFlow: :mod:`.export`).
EXPORT_MODULE = "trainer_service.inference.export"
#: The export process's environment: Keras on TensorFlow, on the CPU.
EXPORT_ENV = {
    **TENSORFLOW_ENV,
    "KERAS_BACKEND": "tensorflow",
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


class ProcessFailed(Exception):
    """The process ran too long, or ended without its answer; the message says which."""


def run_json_process(
    command: list[str], env: Mapping[str, str], timeout_s: float, what: str
) -> dict[str, Any]:
    """Run ``command`` and return the JSON object on the last line of its output; raise
    :class:`ProcessFailed` naming ``what`` (e.g. "the export process") otherwise."""
    try:
        done = subprocess.run(
            command, env=dict(env), capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise ProcessFailed(f"{what} ran longer than {timeout_s:g} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        answer = None
    if isinstance(answer, dict):
        return answer
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    reason = summary_line(errors[-1]) if errors else "no output"
    raise ProcessFailed(f"{what} failed (exit {done.returncode}): {reason}")
