"""The API side of ``POST /v1/runs/{id}/predict``: classify uploaded images in a process of its
own (no Keras, TensorFlow or JAX here: the API process never loads them).

**One classification at a time, on the CPU, below training.** Each request's images go to a fresh
temporary folder (outside the data volume) and ``python -m trainer_service.inference.classify``
runs on them with Keras on ``predict_keras_backend``, ``JAX_PLATFORMS=cpu`` and no visible GPU
(a run training on the GPU keeps all of its memory), on ``predict_threads`` CPU threads, at
niceness ``predict_nice`` (so a training worker, at ``worker_nice``, goes first for the CPU), for
at most ``predict_timeout_s``. A request that finds the slot taken waits up to
``predict_wait_s``, then gets a 429. The process starts fresh each time (Keras and the
checkpoint load first: BENCHMARKS.md, section 7), so nothing stays in memory between requests
and a new checkpoint is always the one read.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_service.inference.process import ProcessFailed, run_json_process
from trainer_service.settings import Settings

#: The classify process's environment beyond the workers': CPU only, quiet.
CLASSIFY_ENV = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
_UNSAFE = re.compile(r"[^\w.\- ]")
_NAME_BYTES = 200


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave it and its bytes."""

    name: str
    data: bytes


class ClassifierBusy(Exception):
    """Another classification held the slot for longer than the wait allowed."""


class ClassificationFailed(Exception):
    """The classify process failed or ran too long; the message says which, for a person."""


def safe_name(name: str, index: int) -> str:
    """The client's file name, reduced to a harmless base name (what the answer calls it)."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip(" .")
    while len(base.encode()) > _NAME_BYTES:
        base = base[:-1]
    return base or f"image-{index + 1}"


class Classifier:
    """Runs the classify process for the API, one at a time (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._slot = threading.Lock()

    def environment(self) -> dict[str, str]:
        backend = {"KERAS_BACKEND": self.settings.predict_keras_backend}
        return {**os.environ, **self.settings.worker_env(), **CLASSIFY_ENV, **backend}

    def command(self, run_id: str, checkpoint: str, paths: list[Path]) -> list[str]:
        s = self.settings
        return [
            sys.executable, "-m", "trainer_service.inference.classify",
            "--data-root", str(s.data_root), "--run", run_id, "--checkpoint", checkpoint,
            "--json", "--threads", str(s.predict_threads), "--nice", str(s.predict_nice),
            *map(str, paths),
        ]  # fmt: skip

    def classify(self, run_id: str, checkpoint: str, uploads: list[Upload]) -> dict[str, Any]:
        """The classify module's answer for ``uploads`` (in their order, named as sent)."""
        if not self._slot.acquire(timeout=self.settings.predict_wait_s):
            wait = self.settings.predict_wait_s
            raise ClassifierBusy(f"another prediction is running; the slot stayed busy {wait:g} s")
        try:
            with tempfile.TemporaryDirectory(prefix="tin-predict-") as folder:
                paths = []
                for i, upload in enumerate(uploads):
                    path = Path(folder) / f"{i:04d}" / safe_name(upload.name, i)
                    path.parent.mkdir()
                    path.write_bytes(upload.data)
                    paths.append(path)
                return self._run(self.command(run_id, checkpoint, paths))
        finally:
            self._slot.release()

    def _run(self, command: list[str]) -> dict[str, Any]:
        timeout = self.settings.predict_timeout_s
        try:
            return run_json_process(command, self.environment(), timeout, "the predict process")
        except ProcessFailed as exc:
            raise ClassificationFailed(str(exc)) from None
